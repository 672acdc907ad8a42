"""The repository, its distribution and both images carry the Apache License 2.0 text."""

from __future__ import annotations

import fnmatch
import hashlib
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LICENCE = ROOT / "LICENSE"
DOCKERFILES = [ROOT / "operator" / "Dockerfile", ROOT / "trainer-image" / "Dockerfile"]

# sha256 of https://www.apache.org/licenses/LICENSE-2.0.txt, unmodified (202 lines; the same
# bytes ship as LICENSE in yarl, skl2onnx, s3transfer, onnx, ...).
APACHE_2_0_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


def test_licence_is_the_unmodified_apache_2_0_text() -> None:
    text = LICENCE.read_bytes()
    assert hashlib.sha256(text).hexdigest() == APACHE_2_0_SHA256, (
        "LICENSE differs from the standard Apache License 2.0 text; restore it from "
        "https://www.apache.org/licenses/LICENSE-2.0.txt"
    )
    assert b"Version 2.0, January 2004" in text


def test_pyproject_declares_the_licence_file() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "Apache-2.0"
    assert pyproject["project"]["license-files"] == ["LICENSE"]
    assert "LICENSE" in pyproject["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_images_carry_the_licence(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]
    assert len(stages) == 2, f"{dockerfile}: expected a build stage and a final stage"
    build, final = stages
    # In the build context of `pip install .`: the wheel's dist-info gets licenses/LICENSE.
    assert re.search(r"^COPY [^\n]*\bLICENSE\b[^\n]* \./$", build, re.MULTILINE), build
    # In the final image, at the conventional path.
    assert re.search(r"^COPY LICENSE /licenses/LICENSE$", final, re.MULTILINE), final
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in final


def test_dockerignore_keeps_the_licence_in_the_build_context() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    excluded = False
    for pattern in patterns:  # later patterns win; `!` re-includes
        negate = pattern.startswith("!")
        if fnmatch.fnmatch("LICENSE", pattern.lstrip("!").lstrip("/")):
            excluded = not negate
    assert not excluded, ".dockerignore excludes LICENSE; the images could not copy it"
