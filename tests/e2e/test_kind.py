"""End to end on a real cluster: kind, the real images, the shipped manifests and samples.

Needs a Docker engine and the `kind` binary; skipped cleanly elsewhere (as on the
development machines and CI, which have neither). Run with `pytest tests/e2e -m e2e`.
The cluster is created for the test and deleted afterwards unless PERENNIAL_E2E_KEEP=1.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from perennial.k8s.serving import model_name

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = os.environ.get("PERENNIAL_E2E_CLUSTER", "perennial-e2e")
VERSION = (ROOT / "operator" / "perennial" / "_version.py").read_text().split('"')[1]
IMAGES = (
    f"ghcr.io/perennial-dev/perennial-operator:{VERSION}",
    f"ghcr.io/perennial-dev/perennial-runtime:{VERSION}",
)

pytestmark = pytest.mark.e2e


def _docker_ready() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


if shutil.which("kind") is None or shutil.which("kubectl") is None or not _docker_ready():
    pytest.skip("needs a Docker engine, kind and kubectl", allow_module_level=True)


def run(*args: str, timeout: float = 900, check: bool = True) -> str:
    done = subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def kubectl(*args: str, timeout: float = 900) -> str:
    return run("kubectl", "--context", f"kind-{CLUSTER}", *args, timeout=timeout)


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    run("kind", "create", "cluster", "--name", CLUSTER, "--wait", "120s")
    try:
        run("make", "images")
        for image in IMAGES:
            run("kind", "load", "docker-image", image, "--name", CLUSTER)
        kubectl("apply", "--server-side", "-k", "manifests/")
        kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=120s")
        kubectl("-n", "perennial-system", "rollout", "status", "deployment", "--timeout=300s")
        yield
    finally:
        if os.environ.get("PERENNIAL_E2E_KEEP") != "1":
            run("kind", "delete", "cluster", "--name", CLUSTER, check=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_sample_pipeline_trains_blesses_and_serves(cluster: None) -> None:
    kubectl("apply", "-k", "manifests/samples")
    kubectl(
        "wait",
        "tr/breast-cancer-00001",
        "--for=jsonpath={.status.phase}=Succeeded",
        "--timeout=900s",
    )
    run_status = json.loads(kubectl("get", "tr/breast-cancer-00001", "-o", "json"))["status"]
    assert run_status["metrics"]["accuracy"] >= 0.9
    assert len(run_status["artifact"]["sha256"]) == 64
    kubectl(
        "wait", "md/breast-cancer", "--for=jsonpath={.status.phase}=Available", "--timeout=600s"
    )
    tp = json.loads(kubectl("get", "tp/breast-cancer", "-o", "json"))
    assert tp["status"]["champion"]["run"] == "breast-cancer-00001"

    port = free_port()
    forward = subprocess.Popen(
        [
            "kubectl",
            "--context",
            f"kind-{CLUSTER}",
            "port-forward",
            "svc/breast-cancer-serving",
            f"{port}:8080",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready") as r:
                    assert r.status == 200
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        name = model_name("breast-cancer")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/{name}") as r:
            meta = json.loads(r.read())
        width = len(meta["inputs"])  # one V2 input per feature
        body = json.dumps({"instances": [[0.0] * width]}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        answer = json.loads(urllib.request.urlopen(request).read())
        assert len(answer["predictions"]) == 1
    finally:
        forward.terminate()
        forward.wait(timeout=10)
