"""`python -m perennial run` as a real process against an emulated API server.

The operator process starts kopf, serves /healthz (answered by our probe, which lists
TrainingPipelines in the watched namespace) and /metrics, and exits cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import kmock
import pytest

from testsupport import deadline

NAMESPACE = "perennial-test"
DISCOVERY = re.compile(r"/api|/apis|/api/v1|/apis/[^/?]+/[^/?]+")
STARTUP_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _kubeconfig(path: Path, server: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": {"token": "test-token"}}],
        "contexts": [
            {
                "name": "emulator",
                "context": {"cluster": "emulator", "user": "tester", "namespace": NAMESPACE},
            }
        ],
        "current-context": "emulator",
    }
    path.write_text(json.dumps(config))
    return path


async def _get_when_up(
    session: aiohttp.ClientSession, url: str, process: asyncio.subprocess.Process
) -> tuple[int, str]:
    deadline = asyncio.get_running_loop().time() + STARTUP_TIMEOUT
    while True:
        if process.returncode is not None:
            raise AssertionError(f"operator exited early with {process.returncode}")
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
                return response.status, await response.text()
        except aiohttp.ClientConnectionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


def _declare_resources(emulator: kmock.KubernetesEmulator) -> None:
    emulator.resources.load_bundled()
    emulator.resources["perennial.dev/v1alpha1/trainingpipelines"] = kmock.ResourceInfo(
        namespaced=True,
        kind="TrainingPipeline",
        singular="trainingpipeline",
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
        subresources={"status"},
    )


async def _start_operator(
    emulator: kmock.KubernetesEmulator, tmp_path: Path, *args: str
) -> tuple[asyncio.subprocess.Process, int, int]:
    liveness_port, metrics_port = _free_port(), _free_port()
    server = str(emulator.url).rstrip("/")
    env = {
        **os.environ,
        "KUBECONFIG": str(_kubeconfig(tmp_path / "kubeconfig", server)),
        "POD_NAME": "perennial-operator-test",
    }
    env.pop("KUBERNETES_SERVICE_HOST", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "perennial",
        "run",
        *args,
        f"--liveness=http://127.0.0.1:{liveness_port}/healthz",
        f"--metrics-port={metrics_port}",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    return process, liveness_port, metrics_port


async def _stop(process: asyncio.subprocess.Process) -> str:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=deadline())
    except TimeoutError:
        process.kill()
        raise
    return output.decode(errors="replace")


@pytest.mark.timeout(90)
async def test_operator_process_serves_liveness_and_metrics_and_stops_on_sigterm(
    kmock: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    _declare_resources(kmock)
    process, liveness_port, metrics_port = await _start_operator(
        kmock, tmp_path, f"--namespace={NAMESPACE}"
    )
    try:
        async with aiohttp.ClientSession() as session:
            status, text = await _get_when_up(
                session, f"http://127.0.0.1:{liveness_port}/healthz", process
            )
            assert status == 200, text
            probe = json.loads(text)["api"]
            assert probe["healthy"] is True
            assert probe["scope"] == [NAMESPACE]

            status, text = await _get_when_up(
                session, f"http://127.0.0.1:{metrics_port}/metrics", process
            )
            assert status == 200
            assert 'perennial_build_info{version="' in text
            assert "# TYPE perennial_runs_started_total counter" in text

        # The probe listed one pipeline in the watched namespace; apart from API discovery,
        # nothing outside that namespace was touched (a namespaced operator needs no
        # cluster-scoped permission).
        paths = [request.url.path_qs for request in kmock]
        assert f"/apis/perennial.dev/v1alpha1/namespaces/{NAMESPACE}/trainingpipelines?limit=1" in (
            paths
        )
        outside = [
            p for p in paths if not DISCOVERY.fullmatch(p) and f"/namespaces/{NAMESPACE}/" not in p
        ]
        assert not outside, outside
    finally:
        log = await _stop(process)
    assert process.returncode == 0, log
    assert "handler modules loaded: perennial.controllers.settings" in log
    assert "kopf settings applied" in log and "namespaced scope" in log


@pytest.mark.timeout(90)
async def test_cluster_wide_operator_watches_crds_with_bounded_requests(
    kmock: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    _declare_resources(kmock)
    process, liveness_port, _ = await _start_operator(kmock, tmp_path)
    try:
        async with aiohttp.ClientSession() as session:
            status, text = await _get_when_up(
                session, f"http://127.0.0.1:{liveness_port}/healthz", process
            )
        assert status == 200, text
        assert json.loads(text)["api"]["scope"] == "cluster"
        # kopf's cluster scanning watches CRDs; with our settings every list is chunked and
        # every watch request is bounded server-side, so none can hang forever.
        deadline = asyncio.get_running_loop().time() + STARTUP_TIMEOUT
        while True:
            crd_requests = [
                r.url.query for r in kmock if r.url.path.endswith("/customresourcedefinitions")
            ]
            if any(q.get("watch") == "true" for q in crd_requests):
                break
            assert asyncio.get_running_loop().time() < deadline, crd_requests
            await asyncio.sleep(0.1)
        watches = [q for q in crd_requests if q.get("watch") == "true"]
        lists = [q for q in crd_requests if q.get("watch") != "true"]
        assert all(q.get("timeoutSeconds") == "300" for q in watches), watches
        assert all(q.get("limit") == "500" for q in lists), lists
    finally:
        log = await _stop(process)
    assert process.returncode == 0, log
    assert "cluster-wide scope" in log
