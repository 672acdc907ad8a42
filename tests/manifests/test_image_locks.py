"""The images' lock files pin every dependency pyproject.toml declares, within its range.

A dependency added to an extra without `make locks` would be installed unpinned in the
image (or, with -c, make the image build fail); this catches it before an image build.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LOCKS = {
    "runtime": ROOT / "trainer-image" / "requirements.lock",
    "operator": ROOT / "operator" / "requirements.lock",
}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, Version]:
    out: dict[str, Version] = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, version = line.partition("==")
        assert version, f"{path.name}: {line!r} is not an exact pin"
        out[canonical(name)] = Version(version)
    return out


@pytest.mark.parametrize("extra", sorted(LOCKS))
def test_every_declared_dependency_is_pinned_within_its_range(extra: str) -> None:
    locked = pins(LOCKS[extra])
    declared = [Requirement(r) for r in PYPROJECT["dependencies"]]
    declared += [Requirement(r) for r in PYPROJECT["optional-dependencies"][extra]]
    for req in declared:
        name = canonical(req.name)
        assert name in locked, f"{req.name} is not in {LOCKS[extra].name}: run `make locks`"
        assert req.specifier.contains(locked[name], prereleases=True), (
            f"{LOCKS[extra].name} pins {req.name}=={locked[name]}, outside {req}: run `make locks`"
        )


@pytest.mark.parametrize(
    ("dockerfile", "lock"),
    [
        ("trainer-image/Dockerfile", "trainer-image/requirements.lock"),
        ("operator/Dockerfile", "operator/requirements.lock"),
    ],
)
def test_images_install_with_their_lock(dockerfile: str, lock: str) -> None:
    text = (ROOT / dockerfile).read_text()
    assert f"COPY {lock} {lock}" in text
    assert f"pip install -c {lock} " in text
