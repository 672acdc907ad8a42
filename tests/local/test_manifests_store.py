"""Manifests in, objects on disk: the local runner's view of `kubectl apply` and etcd."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

from perennial.api.constants import TRAINING_PIPELINE
from perennial.local.manifests import ManifestError, load_manifests
from perennial.local.store import Event, StateError, StateStore

from .helpers import deadline

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_samples_load() -> None:
    found = load_manifests([ROOT / "manifests" / "samples"])
    assert ("default", "breast-cancer") in found.pipelines
    assert {("default", "breast-cancer"), ("default", "breast-cancer-pinned")} <= set(
        found.deployments
    )
    assert any("PersistentVolumeClaim" in s for s in found.skipped)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: TrainingPipeline\napiVersion: v1\nmetadata: {name: x}\nspec: {}\n", "apiVersion"),
        (
            "apiVersion: perennial.dev/v1alpha1\nkind: TrainingRun\nmetadata: {name: r}\n"
            "spec: {}\n",
            "creates runs itself",
        ),
        (
            "apiVersion: perennial.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: m}\n"
            "spec: {source: {}}\n",
            "set exactly one of pipelineRef",
        ),
        (
            "apiVersion: perennial.dev/v1alpha1\nkind: TrainingPipeline\nmetadata: {name: p}\n"
            "spec:\n  data: {uri: 'sklearn://iris', target: target}\n"
            "  model: {task: classification, estimator: Ridge}\n"
            "  artifacts: {uri: 'file:///tmp/x'}\n",
            "spec.model",
        ),
        ("apiVersion: perennial.dev/v1alpha1\nkind: ModelDeployment\n", "metadata.name"),
        ("[1, 2", "not valid YAML"),
        ("kind: ConfigMap\nmetadata: {name: c}\n", "no TrainingPipeline or ModelDeployment"),
    ],
)
def test_bad_manifests_name_the_file_and_the_fix(
    manifests_dir: Path, text: str, message: str
) -> None:
    path = manifests_dir / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ManifestError, match=message) as info:
        load_manifests([path])
    assert str(path) in str(info.value)


def test_duplicates_and_missing_files(manifests_dir: Path) -> None:
    doc = (ROOT / "manifests" / "samples" / "trainingpipeline.yaml").read_text()
    (manifests_dir / "a.yaml").write_text(doc + "\n---\n" + doc)
    with pytest.raises(ManifestError, match="defined twice"):
        load_manifests([manifests_dir])
    with pytest.raises(ManifestError, match="no such file"):
        load_manifests([manifests_dir / "nope.yaml"])


def _body(name: str) -> dict[str, object]:
    pipeline = load_manifests([ROOT / "manifests" / "samples" / "trainingpipeline.yaml"])
    obj = pipeline.pipelines[("default", "breast-cancer")].to_dict()
    obj["metadata"] = {"name": name, "namespace": "default", "uid": "u-1", "generation": 1}
    obj["status"] = {"runSequence": 3}
    return obj


def test_store_round_trip_and_validation(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    store.save(_body("p"))
    assert store.get(TRAINING_PIPELINE, "default", "p")["status"] == {"runSequence": 3}
    assert [b["metadata"]["name"] for b in store.list_objects(TRAINING_PIPELINE)] == ["p"]
    broken = _body("q")
    broken["status"] = {"runSequence": -1}
    with pytest.raises(StateError, match="invalid TrainingPipeline q"):
        store.save(broken)
    assert store.get(TRAINING_PIPELINE, "default", "q") is None
    assert store.delete(TRAINING_PIPELINE, "default", "p")
    leftovers = [p.name for p in (tmp_path / "state").rglob(".*") if p.is_file()]
    assert leftovers == []  # no temporary files left behind


def test_events_survive_a_cut_line(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    event = Event("2026-01-01T00:00:00Z", "TrainingRun", "default", "r", "Normal", "X", "m")
    store.append_event(event)
    with store.events_path.open("a") as fh:
        fh.write('{"time": "2026-')  # a crash in the middle of a write
    assert store.events() == [event]


def _hold(path: str, ready: Any, done: Any) -> None:
    store = StateStore(Path(path))
    store.lock()
    ready.set()
    done.wait(deadline())


def test_one_runner_per_state_dir(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    ready, done = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(str(tmp_path), ready, done))
    holder.start()
    try:
        assert ready.wait(deadline())
        with pytest.raises(StateError, match=f"in use by perennial local \\(pid {holder.pid}\\)"):
            StateStore(tmp_path).lock()
    finally:
        done.set()
        holder.join(deadline())
    store = StateStore(tmp_path)
    store.lock()  # free again once the holder is gone
    store.unlock()
    assert os.path.exists(tmp_path / "runner.lock")
