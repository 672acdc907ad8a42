"""The watch-fed state the reconcilers read: indexes plus the overlay of our own writes."""

from __future__ import annotations

from typing import Any

import pytest

from perennial.k8s import client
from perennial.k8s.cluster_state import (
    DEPLOYMENTS,
    PIPELINES,
    RUNS,
    RUNS_OF,
    ClusterState,
    caught_up,
)


class FakeIndex(dict[Any, list[Any]]):
    """What kopf hands to handlers: key -> a collection of values."""


def body(name: str, rv: str, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ml", "resourceVersion": rv},
        "status": status,
    }


def test_reads_come_from_the_indexes_as_copies() -> None:
    pipelines = FakeIndex({("ml", "p"): [body("p", "3", phase="Ready")]})
    state = ClusterState({PIPELINES: pipelines})
    read = state.pipeline("ml", "p")
    assert read is not None and read["status"]["phase"] == "Ready"
    read["status"]["phase"] = "Changed"  # a reconcile may change what it read...
    assert pipelines[("ml", "p")][0]["status"]["phase"] == "Ready"  # ...not the index
    assert state.pipeline("ml", "other") is None


def test_a_fresh_write_is_read_until_the_watch_delivers_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipelines = FakeIndex({("ml", "p"): [body("p", "3", phase="Ready")]})
    state = ClusterState({PIPELINES: pipelines})
    written = body("p", "7", phase="Stalled")
    monkeypatch.setattr(client, "patch", lambda *a, **k: written)
    state.write_status(client.PIPELINE_STATUS, body("p", "3"), {"phase": "Stalled"})
    assert state.pipeline("ml", "p")["status"]["phase"] == "Stalled"  # type: ignore[index]
    pipelines[("ml", "p")] = [body("p", "5", phase="Ready")]  # an older event arrives
    assert state.pipeline("ml", "p")["status"]["phase"] == "Stalled"  # type: ignore[index]
    pipelines[("ml", "p")] = [body("p", "8", phase="Reconciling")]  # newer than our write
    assert state.pipeline("ml", "p")["status"]["phase"] == "Reconciling"  # type: ignore[index]


def test_a_created_run_is_listed_before_its_watch_event(monkeypatch: pytest.MonkeyPatch) -> None:
    run = {
        "metadata": {"name": "p-00002", "namespace": "ml", "resourceVersion": "9"},
        "spec": {"pipelineRef": {"name": "p"}},
    }
    monkeypatch.setattr(client, "create_if_absent", lambda *a, **k: (run, True))
    old = {"metadata": {"name": "p-00001", "namespace": "ml", "resourceVersion": "2"}}
    state = ClusterState(
        {
            RUNS: FakeIndex({("ml", "p-00001"): [old]}),
            RUNS_OF: FakeIndex({("ml", "p"): ["p-00001"]}),
        }
    )
    state.create_if_absent(client.TRAINING_RUNS_RESOURCE, run, "ml")
    assert [r["metadata"]["name"] for r in state.runs_of("ml", "p")] == ["p-00001", "p-00002"]


def test_a_deleted_object_reads_as_gone_until_the_index_drops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client, "delete", lambda *a, **k: True)
    deployments = FakeIndex({("ml", "md"): [body("md", "4")], ("ml",): [body("md", "4")]})
    state = ClusterState({DEPLOYMENTS: deployments})
    state.delete(client.MODEL_DEPLOYMENTS_RESOURCE, "md", "ml")
    assert state.deployment("ml", "md") is None
    del deployments[("ml", "md")]
    assert state.deployment("ml", "md") is None
    deployments[("ml", "md")] = [body("md", "12")]  # created again later
    assert state.deployment("ml", "md") is not None


def test_resource_versions_compare_as_numbers_when_they_are() -> None:
    assert caught_up(body("x", "10"), body("x", "9"))
    assert not caught_up(body("x", "9"), body("x", "10"))
    assert caught_up(body("x", "abc"), body("x", "abc"))
    assert not caught_up(body("x", "abd"), body("x", "abc"))
