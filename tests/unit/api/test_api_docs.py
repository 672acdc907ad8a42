"""docs/api.md is generated from the models and up to date."""

from __future__ import annotations

from pathlib import Path

from perennial import api
from perennial.api.docgen import main, render_reference

from .crd_support import ROOT, openapi, walk

DOC = ROOT / "docs" / "api.md"


def test_docs_are_up_to_date() -> None:
    assert DOC.read_text() == render_reference(), "run: python -m perennial.api.docgen"
    assert main(["--check", "-o", str(DOC)]) == 0


def test_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "api.md"
    stale.write_text("# old\n")
    assert main(["--check", "-o", str(stale)]) == 1
    assert main(["-o", str(stale)]) == 0
    assert main(["--check", "-o", str(stale)]) == 0


def test_docs_cover_every_pipeline_and_deployment_field_and_the_annotations() -> None:
    text = DOC.read_text()
    for kind in ("TrainingPipeline", "ModelDeployment"):
        for path, _ in walk(openapi(kind)["properties"]["spec"]):
            if path and not path.endswith(("[]", "{}")):
                assert f"`{path.replace('{}', '.*')}`" in text, path
    assert api.RETRAIN_ANNOTATION in text and api.ROLLBACK_ANNOTATION in text
