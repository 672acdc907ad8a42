"""The manifests shown in README.md are valid: a tour that does not apply is worse than none."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from perennial import api

from .crd_support import api_server_errors

README = Path(__file__).resolve().parents[3] / "README.md"
MODELS = {"TrainingPipeline": api.TrainingPipeline, "ModelDeployment": api.ModelDeployment}


def readme_documents() -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S)
    return [doc for block in blocks for doc in yaml.safe_load_all(block) if doc]


DOCS = readme_documents()


def test_readme_has_a_pipeline_and_a_deployment() -> None:
    assert {d["kind"] for d in DOCS} >= {"TrainingPipeline", "ModelDeployment"}


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_readme_manifest_is_accepted(doc: dict[str, Any]) -> None:
    assert api_server_errors(doc) == []
    MODELS[doc["kind"]].model_validate(doc)
