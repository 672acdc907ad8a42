"""The samples are valid for the API server (schema + CEL) and for the models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from perennial import api
from perennial.api.base import ApiModel

from .crd_support import SAMPLES_DIR, api_server_errors, apply_defaults, load_samples, openapi

MODELS: dict[str, type[BaseModel]] = {
    "TrainingPipeline": api.TrainingPipeline,
    "TrainingRun": api.TrainingRun,
    "ModelDeployment": api.ModelDeployment,
}
SAMPLES = load_samples()
OURS = [d for d in SAMPLES if d["apiVersion"] == api.API_VERSION]


def _id(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def test_kustomization_lists_every_sample() -> None:
    kustomization = yaml.safe_load((SAMPLES_DIR / "kustomization.yaml").read_text())
    files = sorted(p.name for p in SAMPLES_DIR.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kustomization["resources"]) == files
    for name in kustomization["resources"]:
        assert (SAMPLES_DIR / name).is_file()


def test_samples_cover_the_brief() -> None:
    kinds = sorted(d["kind"] for d in SAMPLES)
    assert kinds == [
        "ModelDeployment",
        "ModelDeployment",
        "PersistentVolumeClaim",
        "TrainingPipeline",
    ]
    (tp,) = (
        api.TrainingPipeline.model_validate(d) for d in OURS if d["kind"] == "TrainingPipeline"
    )
    triggers = tp.spec.triggers
    assert triggers.schedule is not None
    assert triggers.drift is not None and triggers.performance_decay is not None
    assert tp.spec.gates.metrics and tp.spec.gates.beat_champion.enabled
    assert tp.spec.artifacts.uri.startswith("file:///artifacts")
    assert tp.spec.artifacts.volume is not None
    pvc = next(d for d in SAMPLES if d["kind"] == "PersistentVolumeClaim")
    assert tp.spec.artifacts.volume.claim_name == pvc["metadata"]["name"]

    deployments = [
        api.ModelDeployment.model_validate(d) for d in OURS if d["kind"] == "ModelDeployment"
    ]
    by_source = {("pipeline" if d.spec.source.pipeline_ref else "run"): d for d in deployments}
    follower, pinned = by_source["pipeline"], by_source["run"]
    assert follower.spec.strategy.type is api.RolloutStrategyType.CANARY
    assert follower.spec.source.pipeline_ref is not None
    assert follower.spec.source.pipeline_ref.name == tp.metadata.name
    assert pinned.spec.strategy.type is api.RolloutStrategyType.ROLLING_UPDATE
    # the pipeline's drift and decay triggers watch the deployment that follows it
    assert triggers.drift.deployment_ref.name == follower.metadata.name
    assert triggers.performance_decay.deployment_ref.name == follower.metadata.name


@pytest.mark.parametrize("doc", OURS, ids=_id)
def test_sample_is_accepted_by_the_crd(doc: dict[str, Any]) -> None:
    assert api_server_errors(doc) == []


@pytest.mark.parametrize("doc", OURS, ids=_id)
def test_sample_parses_and_round_trips(doc: dict[str, Any]) -> None:
    model = MODELS[doc["kind"]]
    parsed = model.model_validate(doc)
    again = model.model_validate(parsed.model_dump(mode="json", by_alias=True, exclude_none=True))
    assert again == parsed


@pytest.mark.parametrize("doc", OURS, ids=_id)
def test_api_server_defaults_equal_model_defaults(doc: dict[str, Any]) -> None:
    """What the API server stores after defaulting is what the model assumes."""
    spec_model = MODELS[doc["kind"]].model_fields["spec"].annotation
    assert isinstance(spec_model, type) and issubclass(spec_model, ApiModel)
    schema = openapi(doc["kind"])["properties"]["spec"]
    server_side = apply_defaults(schema, doc["spec"])
    assert server_side == spec_model.model_validate(doc["spec"]).to_dict()


def test_samples_are_plain_yaml_files() -> None:
    for path in Path(SAMPLES_DIR).glob("*.yaml"):
        text = path.read_text()
        assert "\t" not in text and text.endswith("\n"), path.name
        assert all(d for d in yaml.safe_load_all(text)), path.name
