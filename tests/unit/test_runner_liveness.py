"""Liveness reflects API reachability: the pure verdict, and the check against a real server."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator

import kmock
import pytest
from kubernetes import client

from perennial.controllers.liveness import ApiHeartbeat, assess_liveness, check_api

STALE = 180.0


def test_healthy_while_recent_success() -> None:
    verdict = assess_liveness(
        now=1000.0, started_at=0.0, last_success=900.0, last_error=None, stale_after=STALE
    )
    assert verdict.healthy
    assert verdict.seconds_since_success == 100.0


def test_unhealthy_once_success_is_stale_and_says_why() -> None:
    verdict = assess_liveness(
        now=1000.0,
        started_at=0.0,
        last_success=700.0,
        last_error="ReadTimeoutError: timed out",
        stale_after=STALE,
    )
    assert not verdict.healthy
    assert "300s" in verdict.reason and "ReadTimeoutError" in verdict.reason


def test_grace_period_after_start_then_unhealthy_without_any_success() -> None:
    starting = assess_liveness(
        now=100.0, started_at=0.0, last_success=None, last_error="boom", stale_after=STALE
    )
    assert starting.healthy and starting.seconds_since_success is None
    never = assess_liveness(
        now=500.0, started_at=0.0, last_success=None, last_error="boom", stale_after=STALE
    )
    assert not never.healthy
    assert "since start-up" in never.reason and "boom" in never.reason


def test_a_transient_failure_does_not_undo_a_recent_success() -> None:
    heartbeat = ApiHeartbeat(started_at=0.0)
    heartbeat.record_success(now=50.0)
    heartbeat.record_failure("ConnectionResetError")
    assert heartbeat.verdict(now=60.0, stale_after=STALE).healthy
    assert not heartbeat.verdict(now=300.0, stale_after=STALE).healthy


@pytest.fixture
async def api_client(kmock: kmock.KubernetesEmulator) -> AsyncIterator[client.ApiClient]:
    configuration = client.Configuration(host=str(kmock.url).rstrip("/"))
    api = client.ApiClient(configuration)
    yield api
    api.close()


async def test_check_api_records_success_against_a_real_api_server(
    kmock: kmock.KubernetesEmulator, api_client: client.ApiClient
) -> None:
    kmock.resources["perennial.dev/v1alpha1/trainingpipelines"] = kmock_info()
    heartbeat = ApiHeartbeat(started_at=0.0)

    await check_api(heartbeat, ["ml"], api_client=api_client)

    assert heartbeat.last_success is not None
    paths = [str(request.url) for request in kmock]
    assert any(
        "/apis/perennial.dev/v1alpha1/namespaces/ml/trainingpipelines" in p and "limit=1" in p
        for p in paths
    ), paths


async def test_check_api_records_a_missing_crd_as_a_failure_with_a_hint(
    kmock: kmock.KubernetesEmulator, api_client: client.ApiClient
) -> None:
    heartbeat = ApiHeartbeat(started_at=0.0)

    await check_api(heartbeat, [], api_client=api_client)

    assert heartbeat.last_success is None
    assert heartbeat.last_error is not None
    assert "CRD installed" in heartbeat.last_error


def kmock_info() -> kmock.ResourceInfo:
    return kmock.ResourceInfo(
        namespaced=True,
        kind="TrainingPipeline",
        singular="trainingpipeline",
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
        subresources={"status"},
    )


async def test_probe_raises_once_the_api_has_been_unreachable_for_too_long(
    kmock: kmock.KubernetesEmulator, api_client: client.ApiClient
) -> None:
    import kopf

    from perennial.controllers import liveness
    from perennial.k8s import client as k8s_client

    saved = dataclasses.replace(liveness.HEARTBEAT)
    k8s_client.configure(api_client.configuration)  # the emulator serves no TrainingPipelines
    try:
        liveness.HEARTBEAT.started_at = time.monotonic() - 1000
        liveness.HEARTBEAT.last_success = time.monotonic() - 900
        with pytest.raises(kopf.PermanentError, match="CRD installed"):
            await liveness.probe_api(memo=kopf.Memo(namespaces=("ml",)))

        kmock.resources["perennial.dev/v1alpha1/trainingpipelines"] = kmock_info()
        answer = await liveness.probe_api(memo=kopf.Memo(namespaces=("ml",)))
        assert answer["healthy"] is True and answer["scope"] == ["ml"]
    finally:
        k8s_client.configure(None)
        liveness.HEARTBEAT.__dict__.update(saved.__dict__)
