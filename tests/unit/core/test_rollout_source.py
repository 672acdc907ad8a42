"""What should serve: the pipeline's champion or a pinned run, spec.rollbackTo and the
rollback annotation (the operator never writes the spec)."""

from datetime import UTC, datetime
from typing import Any

import pytest

from perennial.api.constants import DEFAULT_RUNTIME_IMAGE
from perennial.core.model_source import (
    ManualPin,
    Revision,
    SourceModel,
    champion_source,
    desired_model,
    find_revision,
    model_of_run,
    pinned_source,
)
from perennial.core.rollout import ModelRef

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SHA1, SHA2, SHA3 = "a" * 64, "b" * 64, "c" * 64


def run(
    name: str, sha: str | None = SHA1, phase: str = "Succeeded", **status: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "ml"},
        "spec": {
            "pipelineSpec": {
                "runTemplate": {"image": "registry.example/perennial-runtime:1.2.3"},
                "artifacts": {
                    "uri": "file:///artifacts/iris",
                    "volume": {"claimName": "models", "mountPath": "/artifacts"},
                },
            }
        },
        "status": {"phase": phase, **status},
    }
    if sha:
        body["status"]["artifact"] = {
            "uri": f"file:///artifacts/iris/{name}",
            "modelUri": f"file:///artifacts/iris/{name}/model.skops",
            "sha256": sha,
            "size": 1234,
        }
    return body


def pipeline(champion: str | None, sha: str = SHA1) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if champion:
        status["champion"] = {
            "run": champion,
            "modelUri": f"s3://models/iris/{champion}/model.skops",
            "sha256": sha,
        }
    return {
        "metadata": {"name": "iris", "namespace": "ml"},
        "spec": {
            "runTemplate": {"image": "pipeline-image:2"},
            "artifacts": {"uri": "s3://models/iris", "secretRef": {"name": "s3-creds"}},
        },
        "status": status,
    }


def ref(name: str, sha: str) -> ModelRef:
    return ModelRef(name, f"file:///m/{name}/model.skops", sha)


V1, V2, V3 = ref("iris-00001", SHA1), ref("iris-00002", SHA2), ref("iris-00003", SHA3)
R1, R2 = Revision(V1, 1), Revision(V2, 2)


# --- sources -----------------------------------------------------------------------------


def test_model_of_a_run_carries_image_volume_and_digest() -> None:
    model = model_of_run(run("iris-00001"))
    assert model == ModelRef(
        run="iris-00001",
        model_uri="file:///artifacts/iris/iris-00001/model.skops",
        sha256=SHA1,
        image="registry.example/perennial-runtime:1.2.3",
        artifact_claim="models",
        artifact_mount_path="/artifacts",
    )
    assert model_of_run(run("iris-00001", sha=None)) is None


def test_champion_source_waits_clearly() -> None:
    missing = champion_source("iris", None)
    assert missing.model is None and missing.reason == "PipelineNotFound"
    assert "TrainingPipeline iris" in missing.message
    none_yet = champion_source("iris", pipeline(None))
    assert none_yet.model is None and none_yet.reason == "NoBlessedModel"
    assert "no champion yet" in none_yet.message and not none_yet.stalled


def test_champion_prefers_its_run_snapshot_and_falls_back_to_the_pipeline() -> None:
    from_run = champion_source("iris", pipeline("iris-00001"), run("iris-00001"))
    assert from_run.model is not None
    assert from_run.model.image == "registry.example/perennial-runtime:1.2.3"
    assert from_run.model.artifact_claim == "models"
    fallback = champion_source("iris", pipeline("iris-00001"), None)
    assert fallback.model == ModelRef(
        run="iris-00001",
        model_uri="s3://models/iris/iris-00001/model.skops",
        sha256=SHA1,
        image="pipeline-image:2",
        secret_name="s3-creds",
    )
    # A run snapshot of another run (the champion moved on meanwhile) is not used.
    other = champion_source("iris", pipeline("iris-00002", SHA2), run("iris-00001"))
    assert other.model is not None and other.model.run == "iris-00002"


def test_default_image_when_the_spec_has_none() -> None:
    body = run("iris-00001")
    del body["spec"]["pipelineSpec"]["runTemplate"]
    model = model_of_run(body)
    assert model is not None and model.image == DEFAULT_RUNTIME_IMAGE


@pytest.mark.parametrize(
    ("body", "reason", "stalled"),
    [
        (None, "RunNotFound", False),
        (run("iris-00001", phase="Training", sha=None), "RunNotFinished", False),
        (
            run("iris-00001", phase="Rejected", sha=None, message="accuracy 0.61 < 0.9"),
            "RunNotBlessed",
            True,
        ),
        (run("iris-00001", phase="Failed", sha=None), "RunNotBlessed", True),
        (run("iris-00001"), "PinnedRun", False),
    ],
)
def test_pinned_source(body: dict[str, Any] | None, reason: str, stalled: bool) -> None:
    source = pinned_source("iris-00001", body)
    assert source.reason == reason and source.stalled is stalled
    assert (source.model is not None) is (reason == "PinnedRun")
    if reason == "RunNotBlessed" and body and body["status"].get("message"):
        assert "accuracy 0.61 < 0.9" in source.message and "runRef" in source.message


# --- manual overrides --------------------------------------------------------------------


def src(model: ModelRef | None) -> SourceModel:
    return SourceModel(model, "ChampionAvailable" if model else "NoBlessedModel", "x")


def desired(**kw: Any) -> Any:
    args: dict[str, Any] = dict(
        source=src(V2),
        rollback_to=None,
        annotation=None,
        last_token=None,
        pin=None,
        current=R2,
        history=[R1],
        now=T0,
    )
    args.update(kw)
    return desired_model(**args)


def test_find_revision_by_run_or_number() -> None:
    assert find_revision("iris-00001", R2, [R1]) == R1
    assert find_revision("1", R2, [R1]) == R1
    assert find_revision(" 2 ", R2, [R1]) == R2
    assert find_revision("iris-00009", R2, [R1]) is None


def test_source_is_followed_by_default() -> None:
    d = desired()
    assert d.model == V2 and not d.manual and d.pin is None and d.token is None


def test_rollback_to_pins_a_revision_while_set() -> None:
    d = desired(rollback_to="iris-00001", source=src(V3))
    assert d.model == V1 and d.manual and d.reason == "RollbackToSet"
    unknown = desired(rollback_to="iris-00042")
    assert unknown.stalled and unknown.reason == "RollbackTargetUnknown"
    assert unknown.model == V2  # keeps what serves
    assert "iris-00001 (revision 1)" in unknown.message


def test_annotation_pins_until_a_new_model_is_blessed() -> None:
    first = desired(annotation="iris-00001")
    assert first.model == V1 and first.manual and first.token == "iris-00001"
    assert first.pin == ManualPin("iris-00001", "iris-00002", T0)
    # The same annotation value is not acted on again, but the pin holds.
    again = desired(annotation="iris-00001", last_token="iris-00001", pin=first.pin)
    assert again.model == V1 and again.pin == first.pin
    # After the rollback V1 is current and V2 in the history: still pinned.
    after = desired(
        annotation="iris-00001",
        last_token="iris-00001",
        pin=first.pin,
        current=Revision(V1, 3),
        history=[R2, R1],
    )
    assert after.model == V1
    # A new champion ends the pin.
    newer = desired(source=src(V3), annotation="iris-00001", last_token="iris-00001", pin=first.pin)
    assert newer.model == V3 and newer.pin is None and not newer.manual
    assert [n.reason for n in newer.notices] == ["ManualRollbackEnded"]


def test_annotation_by_revision_number_and_unknown_targets() -> None:
    assert desired(annotation="1").model == V1
    bad = desired(annotation="nope")
    assert bad.model == V2 and bad.token == "nope" and bad.pin is None
    (notice,) = bad.notices
    assert notice.type == "Warning" and notice.reason == "RollbackTargetUnknown"
    assert "perennial.dev/rollback=nope" in notice.message


def test_rollback_to_takes_precedence_over_the_annotation() -> None:
    d = desired(rollback_to="iris-00002", annotation="iris-00001")
    assert d.model == V2 and d.token == "iris-00001"
    assert [n.reason for n in d.notices] == ["RollbackIgnored"]


def test_pin_holds_while_the_source_has_nothing() -> None:
    pin = ManualPin("iris-00001", "iris-00002", T0)
    d = desired(source=src(None), pin=pin, last_token="iris-00001")
    assert d.model == V1 and d.manual
