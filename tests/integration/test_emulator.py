"""The emulator answers like an API server where the operator depends on it.

Every test talks HTTP to a running emulator: through the test's ``kube_api``, raw httpx (for
content types and watch streams), or the official ``kubernetes`` client.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import kubernetes.client
import kubernetes.config
import pytest

from .harness import ApiError, ApiServerEmulator, KubeApi, Kubectl, resource_path, wait_for
from .harness.tables import human_duration

REPO_ROOT = Path(__file__).resolve().parents[2]
NS = "emulator"
JOBS = "batch/v1/jobs"
TRAINING_RUNS = "perennial.dev/v1alpha1/trainingruns"


def job(name: str = "j", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
    }
    body.update(extra)
    return body


def training_run(name: str = "r") -> dict[str, Any]:
    return {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"pipelineRef": {"name": "p"}},
    }


async def test_create_stamps_server_metadata(
    kube_api: KubeApi, emulator: ApiServerEmulator
) -> None:
    first = await kube_api.create(job("a"))
    second = await kube_api.create(job("b"))
    meta = first["metadata"]
    assert meta["namespace"] == NS
    assert meta["generation"] == 1
    assert meta["creationTimestamp"].endswith("Z")
    assert len(meta["uid"]) == 36 and meta["uid"] != second["metadata"]["uid"]
    assert int(second["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    assert (first["apiVersion"], first["kind"]) == ("batch/v1", "Job")

    generated = await kube_api.create(
        {"apiVersion": "v1", "kind": "Event", "metadata": {"generateName": "ev-", "namespace": NS}}
    )
    assert generated["metadata"]["name"] == "ev-bbbbc"

    with pytest.raises(ApiError) as conflict:
        await kube_api.create(job("a"))
    assert (conflict.value.status, conflict.value.reason) == (409, "AlreadyExists")
    with pytest.raises(ApiError) as unnamed:
        await kube_api.create(
            {"apiVersion": "batch/v1", "kind": "Job", "metadata": {}}, namespace=NS
        )
    assert unnamed.value.status == 422


async def test_generation_follows_spec_and_status_lives_in_its_subresource(
    kube_api: KubeApi, emulator: ApiServerEmulator
) -> None:
    await kube_api.create(training_run())
    labelled = await kube_api.patch(TRAINING_RUNS, "r", NS, {"metadata": {"labels": {"a": "b"}}})
    assert labelled["metadata"]["generation"] == 1
    with_status = await kube_api.patch_status(TRAINING_RUNS, "r", NS, {"phase": "Training"})
    assert with_status["metadata"]["generation"] == 1
    assert with_status["status"] == {"phase": "Training"}
    changed = await kube_api.patch(TRAINING_RUNS, "r", NS, {"spec": {"pipelineRef": {"name": "q"}}})
    assert changed["metadata"]["generation"] == 2

    # A real server drops status written to the main endpoint; so does the emulator, and it
    # records the write so the fixture fails the test unless the test expected it.
    dropped = await kube_api.patch(TRAINING_RUNS, "r", NS, {"status": {"phase": "Failed"}})
    assert dropped["status"] == {"phase": "Training"}
    assert [(w.endpoint, w.name) for w in emulator.ignored_writes] == [("main", "r")]
    emulator.ignored_writes.clear()

    # A no-op write changes nothing: same resourceVersion, no watch event.
    again = await kube_api.patch_status(TRAINING_RUNS, "r", NS, {"phase": "Training"})
    assert again["metadata"]["resourceVersion"] == dropped["metadata"]["resourceVersion"]


async def test_failed_json_patch_test_is_422_and_stale_resource_version_is_409(
    kube_api: KubeApi,
) -> None:
    created = await kube_api.create(job())
    stale = created["metadata"]["resourceVersion"]
    await kube_api.patch(JOBS, "j", NS, {"metadata": {"labels": {"x": "1"}}})
    with pytest.raises(ApiError) as failed_test:
        await kube_api.patch(
            JOBS,
            "j",
            NS,
            [
                {"op": "test", "path": "/metadata/resourceVersion", "value": stale},
                {"op": "add", "path": "/metadata/finalizers", "value": ["f"]},
            ],
        )
    assert failed_test.value.status == 422
    with pytest.raises(ApiError) as conflict:
        await kube_api.patch(JOBS, "j", NS, {"metadata": {"resourceVersion": stale, "labels": {}}})
    assert conflict.value.status == 409


async def test_finalizers_hold_deletion_until_released(kube_api: KubeApi) -> None:
    await kube_api.create(job(metadata={"name": "j", "namespace": NS, "finalizers": ["x/y"]}))
    marked = await kube_api.delete(JOBS, "j", NS)
    assert marked["metadata"]["deletionTimestamp"]
    assert marked["metadata"]["generation"] == 2
    assert (await kube_api.get(JOBS, "j", NS))["metadata"]["deletionTimestamp"]
    with pytest.raises(ApiError) as forbidden:
        await kube_api.patch(JOBS, "j", NS, {"metadata": {"finalizers": ["x/y", "new/one"]}})
    assert forbidden.value.status == 422
    await kube_api.patch(JOBS, "j", NS, {"metadata": {"finalizers": []}})
    assert await kube_api.get_or_none(JOBS, "j", NS) is None

    await kube_api.create(job("plain"))
    await kube_api.delete(JOBS, "plain", NS)
    assert await kube_api.get_or_none(JOBS, "plain", NS) is None


async def test_lists_carry_kind_and_the_collection_resource_version(
    kube_api: KubeApi, emulator: ApiServerEmulator
) -> None:
    await kube_api.create(job("b"))
    await kube_api.create(job("a"))
    async with httpx.AsyncClient(base_url=emulator.base_url) as client:
        listed = (await client.get(resource_path(JOBS, NS))).json()
    assert (listed["apiVersion"], listed["kind"]) == ("batch/v1", "JobList")
    assert listed["metadata"]["resourceVersion"] == str(emulator.revision)
    assert [item["metadata"]["name"] for item in listed["items"]] == ["a", "b"]


async def test_watch_from_a_resource_version_replays_what_followed(
    kube_api: KubeApi, emulator: ApiServerEmulator
) -> None:
    await kube_api.create(job("before"))
    since = str(emulator.revision)
    await kube_api.create(job("after"))
    await kube_api.patch(JOBS, "before", NS, {"metadata": {"labels": {"x": "y"}}})
    await kube_api.delete(JOBS, "after", NS)

    seen: list[tuple[str, str]] = []
    async with (
        httpx.AsyncClient(base_url=emulator.base_url) as client,
        client.stream(
            "GET", resource_path(JOBS), params={"watch": "true", "resourceVersion": since}
        ) as stream,
    ):
        async for line in stream.aiter_lines():
            if line:
                event = json.loads(line)
                seen.append((event["type"], event["object"]["metadata"]["name"]))
            if len(seen) == 3:
                break
    assert seen == [("ADDED", "after"), ("MODIFIED", "before"), ("DELETED", "after")]


async def test_supported_field_selectors_filter_and_the_rest_is_refused(
    emulator: ApiServerEmulator, kube_api: KubeApi
) -> None:
    await kube_api.create(job("a"))
    await kube_api.create(job("b"))
    async with httpx.AsyncClient(base_url=emulator.base_url) as client:
        path = resource_path(JOBS, NS)
        by_name = await client.get(path, params={"fieldSelector": "metadata.name=b"})
        assert [i["metadata"]["name"] for i in by_name.json()["items"]] == ["b"]
        not_a = await client.get(path, params={"fieldSelector": "metadata.name!=a"})
        assert [i["metadata"]["name"] for i in not_a.json()["items"]] == ["b"]

        unknown = await client.get(path, params={"fieldSelector": "status.succeeded=1"})
        assert unknown.status_code == 400
        assert "answer_selectors_unfiltered" in unknown.json()["message"]

        emulator.answer_selectors_unfiltered()
        unfiltered = await client.get(path, params={"fieldSelector": "status.succeeded=1"})
    assert len(unfiltered.json()["items"]) == 2  # NOT filtered: a real server returns none
    assert emulator.selector_requests[-1] == f"GET {path}?fieldSelector=status.succeeded%3D1"


@pytest.mark.parametrize(
    ("selector", "names"),
    [
        ("app=x", ["a", "b"]),
        ("app==x,tier=web", ["a"]),
        ("tier!=web", ["b", "c"]),  # != also matches objects without the key
        ("tier", ["a", "b"]),
        ("!tier", ["c"]),
        ("tier in (web, db)", ["a", "b"]),
        ("tier notin (web)", ["b", "c"]),
        ("app=x,tier in (db),!other", ["b"]),
        ("app=nothing", []),
    ],
)
async def test_label_selectors_filter_as_a_real_server(
    emulator: ApiServerEmulator, kube_api: KubeApi, selector: str, names: list[str]
) -> None:
    for name, labels in (("a", {"app": "x", "tier": "web"}), ("b", {"app": "x", "tier": "db"}),
                         ("c", {"app": "y"})):  # fmt: skip
        body = job(name)
        body["metadata"]["labels"] = labels
        await kube_api.create(body)
    async with httpx.AsyncClient(base_url=emulator.base_url) as client:
        found = await client.get(resource_path(JOBS, NS), params={"labelSelector": selector})
        assert found.status_code == 200, found.text
        assert sorted(i["metadata"]["name"] for i in found.json()["items"]) == names
        bad = await client.get(resource_path(JOBS, NS), params={"labelSelector": "app=(x"})
    assert bad.status_code == 400 and "app=(x" in bad.json()["message"]


async def test_custom_resources_refuse_strategic_merge_patch(
    emulator: ApiServerEmulator, kube_api: KubeApi
) -> None:
    await kube_api.create(training_run())
    async with httpx.AsyncClient(base_url=emulator.base_url) as client:
        answer = await client.patch(
            resource_path(TRAINING_RUNS, NS, "r"),
            content=json.dumps({"metadata": {"labels": {"a": "b"}}}),
            headers={"Content-Type": "application/strategic-merge-patch+json"},
        )
    assert answer.status_code == 415


async def test_injected_failures_answer_without_changing_state(
    emulator: ApiServerEmulator, kube_api: KubeApi
) -> None:
    emulator.fail_requests("POST", JOBS, status=503)
    with pytest.raises(ApiError) as unavailable:
        await kube_api.create(job())
    assert unavailable.value.status == 503
    assert await kube_api.get_or_none(JOBS, "j", NS) is None
    await kube_api.create(job())  # only the first request failed


async def test_project_crds_are_served(emulator: ApiServerEmulator) -> None:
    for kind in ("TrainingPipeline", "TrainingRun", "ModelDeployment"):
        resource = emulator.resource_for("perennial.dev/v1alpha1", kind)
        assert "status" in emulator.info(resource).subresources


async def test_kubernetes_client_creates_reads_and_patches_status(
    kubernetes_client: kubernetes.client.Configuration,
) -> None:
    batch = kubernetes.client.BatchV1Api()
    body = kubernetes.client.V1Job(
        metadata=kubernetes.client.V1ObjectMeta(name="k8s-client"),
        spec=kubernetes.client.V1JobSpec(
            template=kubernetes.client.V1PodTemplateSpec(
                spec=kubernetes.client.V1PodSpec(
                    restart_policy="Never",
                    containers=[kubernetes.client.V1Container(name="c", image="i")],
                )
            )
        ),
    )
    # The client blocks: run it off the event loop that serves the emulator.
    created = await asyncio.to_thread(batch.create_namespaced_job, NS, body)
    assert created.metadata.uid and created.metadata.resource_version
    read = await asyncio.to_thread(batch.read_namespaced_job, "k8s-client", NS)
    assert read.metadata.uid == created.metadata.uid
    patched = await asyncio.to_thread(
        batch.patch_namespaced_job_status, "k8s-client", NS, {"status": {"active": 1}}
    )
    assert patched.status.active == 1
    assert patched.metadata.generation == 1

    with pytest.raises(kubernetes.client.ApiException) as missing:
        await asyncio.to_thread(batch.read_namespaced_job, "absent", NS)
    assert missing.value.status == 404


async def test_kubectl_shows_printer_columns_waits_and_applies(
    emulator: ApiServerEmulator, kube_api: KubeApi, kubectl: Kubectl
) -> None:
    await kube_api.create(training_run("r1"))
    await kube_api.create(training_run("r2"))
    await kube_api.patch_status(TRAINING_RUNS, "r1", NS, {"phase": "Training"})

    async def finish_later() -> None:
        await kube_api.patch_status(TRAINING_RUNS, "r2", NS, {"phase": "Failed"})
        await kube_api.patch_status(TRAINING_RUNS, "r1", NS, {"phase": "Succeeded"})

    waiting = asyncio.create_task(
        kubectl("wait", "tr/r1", "-n", NS, "--for=jsonpath={.status.phase}=Succeeded")
    )
    await wait_for(lambda: any("watch=true" in r for r in emulator.selector_requests))
    await finish_later()
    assert "condition met" in await waiting

    header, *rows = (await kubectl("get", "tr", "-n", NS)).splitlines()
    assert header.split()[:4] == ["NAME", "PIPELINE", "TRIGGER", "PHASE"]
    assert [row.split()[:3] for row in rows] == [["r1", "p", "Succeeded"], ["r2", "p", "Failed"]]

    sample = REPO_ROOT / "manifests" / "samples" / "trainingpipeline.yaml"
    if sample.exists():
        applied = await kubectl("apply", "--validate=false", "-n", NS, "-f", str(sample))
        assert "created" in applied


def test_human_durations_match_kubernetes() -> None:
    assert [human_duration(s) for s in (0, 59, 119, 150, 600, 3 * 3600 + 60)] == [
        "0s",
        "59s",
        "119s",
        "2m30s",
        "10m",
        "3h1m",
    ]
    assert human_duration(3 * 86400) == "3d" and human_duration(-5) == "<invalid>"


async def test_code_that_loads_a_kubeconfig_reaches_the_emulator(
    kubernetes_client: kubernetes.client.Configuration, kube_api: KubeApi
) -> None:
    await kube_api.create(job("from-kubeconfig"))

    def read_with_loaded_config() -> str:
        config = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(client_configuration=config)
        batch = kubernetes.client.BatchV1Api(kubernetes.client.ApiClient(config))
        return str(batch.read_namespaced_job("from-kubeconfig", NS).metadata.uid)

    assert await asyncio.to_thread(read_with_loaded_config)
