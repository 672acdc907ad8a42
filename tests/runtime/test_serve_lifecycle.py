"""Start-up, verification and refusal: the server never becomes ready on a bad model.

One test runs ``python -m perennial_runtime serve`` in a subprocess end to end (and one
with ``--workers 2``); the others run the same app in a thread for speed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from perennial_runtime.serve import main
from perennial_runtime.serve.config import ConfigError, ServeConfig, available_cores, parse_args
from perennial_runtime.serve.embedded import EmbeddedServer
from perennial_runtime.serve.model import load
from testsupport import deadline, wait_until

LOGISTIC = {"estimator": "LogisticRegression", "params": {"max_iter": 1000}}


@pytest.fixture(scope="module")
def cancer_run(trained_run: Any) -> Any:
    return trained_run("breast_cancer", **LOGISTIC)


@pytest.fixture
def run_copy(cancer_run: Any, tmp_path: Path) -> Path:
    """A private copy of the run folder that a test may tamper with."""
    target: Path = tmp_path / cancer_run.run_dir.name
    shutil.copytree(cancer_run.run_dir, target)
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(predicate: Any, what: str) -> None:
    """Poll until ``predicate`` holds (a refused connection means not yet)."""
    wait_until(predicate, what=what, ignoring=(httpx.TransportError,))


def client_of(url: str) -> httpx.Client:
    """A client whose requests may take up to the one deadline (a loaded machine)."""
    return httpx.Client(base_url=url, timeout=deadline())


@pytest.fixture
def subprocess_server(cancer_run: Any) -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []

    def start(*extra: str, env: dict[str, str] | None = None) -> tuple[str, subprocess.Popen[str]]:
        port = free_port()
        cmd = [sys.executable, "-m", "perennial_runtime", "serve", "--port", str(port)]
        cmd += ["--host", "127.0.0.1", *extra]
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        procs.append(proc)
        return f"http://127.0.0.1:{port}", proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=deadline())
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_serve_command_end_to_end(cancer_run: Any, subprocess_server: Any) -> None:
    url, proc = subprocess_server(
        env={
            "PERENNIAL_MODEL_URI": cancer_run.model_uri,
            "PERENNIAL_MODEL_SHA256": cancer_run.sha256,
            "PERENNIAL_MODEL_NAME": "cancer",
        }
    )
    with client_of(url) as client:
        wait_for(lambda: client.get("/v2/health/live").status_code == 200, "liveness")
        wait_for(lambda: client.get("/v2/health/ready").status_code == 200, "readiness")
        assert client.get("/v2/models/cancer/ready").status_code == 200
        sample = cancer_run.metadata.sample
        body = {
            "inputs": [
                {"name": "x", "shape": [2, 30], "datatype": "FP64", "data": sample.instances[:2]}
            ]
        }
        response = client.post("/v2/models/cancer/infer", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["model_name"] == "cancer"
        assert response.json()["model_version"] == cancer_run.metadata.run
        assert response.json()["outputs"][0]["data"] == sample.predictions[:2]
        assert "perennial_requests_total" in client.get("/metrics").text
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=deadline())
    # uvicorn shuts down gracefully, then re-raises SIGTERM (exit status 143 in a pod)
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert "smoke test passed on 20 sample rows" in output


def test_serve_with_two_workers(cancer_run: Any, subprocess_server: Any) -> None:
    url, proc = subprocess_server(
        "--model-uri", cancer_run.model_uri, "--sha256", cancer_run.sha256, "--workers", "2"
    )

    def every_worker_ready() -> bool:
        # a fresh connection per probe, so the probes reach both worker processes
        probes = (httpx.get(f"{url}/v2/health/ready", timeout=deadline()) for _ in range(20))
        return all(probe.status_code == 200 for probe in probes)

    wait_for(every_worker_ready, "both workers to be ready")
    rows = cancer_run.metadata.sample.instances[:3]
    for _ in range(10):
        response = httpx.post(f"{url}/predict", json={"instances": rows}, timeout=deadline())
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == cancer_run.metadata.sample.predictions[:3]
    assert proc.poll() is None


def refused(server: EmbeddedServer, client: httpx.Client) -> str:
    """Assert the model never became ready; returns the reason in the readiness body."""
    with pytest.raises(RuntimeError) as failure:
        server.wait_ready(deadline())
    assert client.get("/v2/health/live").status_code == 200  # the process stays up
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 503
    body = ready.json()
    assert body["ready"] is False and body["state"] == "failed"
    assert body["error"] == str(failure.value)
    assert client.get("/metrics").status_code == 200
    return str(body["error"])


def test_tampered_model_never_becomes_ready(
    cancer_run: Any, run_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = run_copy / "model.skops"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    config = ServeConfig(model_uri=model.as_uri(), sha256=cancer_run.sha256)
    with (
        caplog.at_level(logging.ERROR, logger="perennial_runtime.serve"),
        EmbeddedServer(config) as server,
        client_of(server.url) as client,
    ):
        reason = refused(server, client)
        assert "sha256 mismatch" in reason and "refusing to load it" in reason
        infer = client.post(f"/v2/models/{cancer_run.metadata.run}/infer", json={"inputs": []})
        assert infer.status_code == 503
        assert "sha256 mismatch" in infer.json()["error"]
        assert client.post("/predict", json={"instances": [[0.0] * 30]}).status_code == 503
        metrics = client.get("/metrics").text
        assert "perennial_model_ready 0.0" in metrics
    assert any("MODEL REFUSED" in r.getMessage() for r in caplog.records)


def test_truncated_model_never_becomes_ready(cancer_run: Any, run_copy: Path) -> None:
    model = run_copy / "model.skops"
    model.write_bytes(model.read_bytes()[:1000])
    config = ServeConfig(model_uri=model.as_uri(), sha256=cancer_run.sha256)
    with EmbeddedServer(config) as server, client_of(server.url) as client:
        assert "(1000 bytes)" in refused(server, client)


def test_metadata_of_another_model_is_refused(cancer_run: Any, run_copy: Path) -> None:
    meta_path = run_copy / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["model"]["sha256"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    config = ServeConfig(model_uri=(run_copy / "model.skops").as_uri(), sha256=cancer_run.sha256)
    with EmbeddedServer(config) as server, client_of(server.url) as client:
        assert "describes a different model file" in refused(server, client)


def test_failed_smoke_test_never_becomes_ready(cancer_run: Any, run_copy: Path) -> None:
    meta_path = run_copy / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["sample"]["predictions"][3] = 1 - meta["sample"]["predictions"][3]
    meta_path.write_text(json.dumps(meta))
    config = ServeConfig(model_uri=(run_copy / "model.skops").as_uri(), sha256=cancer_run.sha256)
    with EmbeddedServer(config) as server, client_of(server.url) as client:
        reason = refused(server, client)
        assert "smoke test failed: 1 of 20 sample rows differ" in reason
        assert "row 3" in reason


def test_ready_only_after_loading_and_smoke_test(cancer_run: Any) -> None:
    gate = threading.Event()
    smoke_done = threading.Event()

    def gated_load(config: ServeConfig) -> Any:
        gate.wait(timeout=deadline())
        served = load(config)  # the real verification, load and smoke test
        smoke_done.set()
        return served

    config = ServeConfig(
        model_uri=cancer_run.model_uri, sha256=cancer_run.sha256, model_name="cancer"
    )
    with (
        EmbeddedServer(config, loader=gated_load) as server,
        client_of(server.url) as client,
    ):
        assert client.get("/v2/health/live").status_code == 200  # listening while loading
        ready = client.get("/v2/health/ready")
        assert ready.status_code == 503
        assert ready.json()["state"] == "loading"
        assert client.get("/v2/models/cancer/ready").status_code == 503
        assert client.get("/v2/models/other/ready").status_code == 404  # name known upfront
        assert client.post("/predict", json={"instances": [[0.0] * 30]}).status_code == 503
        assert not smoke_done.is_set()
        gate.set()
        server.wait_ready(deadline())
        assert smoke_done.is_set()
        assert client.get("/v2/health/ready").status_code == 200
        assert client.get("/v2/models/cancer/ready").json() == {"name": "cancer", "ready": True}


def test_missing_artifacts_are_retried(cancer_run: Any, tmp_path: Path) -> None:
    """Storage errors are transient: the server keeps trying until the files appear."""
    folder = tmp_path / "later"
    config = ServeConfig(model_uri=(folder / "model.skops").as_uri(), sha256=cancer_run.sha256)
    with EmbeddedServer(config) as server, client_of(server.url) as client:
        wait_for(lambda: "retrying" in client.get("/v2/health/ready").text, "a retry")
        assert client.get("/v2/health/ready").json()["state"] == "loading"
        shutil.copytree(cancer_run.run_dir, folder)
        server.wait_ready(deadline())
        assert client.get("/v2/health/ready").status_code == 200


def test_insecure_skip_verify_still_checks_metadata(cancer_run: Any, run_copy: Path) -> None:
    model = run_copy / "model.skops"
    ok = ServeConfig(model_uri=model.as_uri(), sha256=None, insecure_skip_verify=True)
    with EmbeddedServer(ok) as server:
        server.wait_ready(deadline())
    model.write_bytes(model.read_bytes()[:-10])
    with EmbeddedServer(ok) as server, client_of(server.url) as client:
        assert "sha256 mismatch" in refused(server, client)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {}, "--model-uri is required"),
        (["--model-uri", "file:///m/model.skops"], {}, "--sha256 is required"),
        (["--model-uri", "m", "--sha256", "abc"], {}, "--sha256 must be 64 hex characters"),
        (
            ["--model-uri", "m", "--insecure-skip-verify", "--drift-window", "10"],
            {},
            "--drift-window must be at least 100",
        ),
        (["--insecure-skip-verify"], {"PERENNIAL_MODEL_URI": "m", "PERENNIAL_SERVE_PORT": "x"}, ""),
        (
            ["--model-uri", "m", "--insecure-skip-verify", "--onnx-sha256", "xyz"],
            {},
            "--onnx-sha256 must be 64 hex characters",
        ),
        (
            ["--model-uri", "m", "--insecure-skip-verify"],
            {"PERENNIAL_SERVE_BACKEND": "gpu"},
            "PERENNIAL_SERVE_BACKEND must be one of auto, numpy, onnxruntime, sklearn",
        ),
    ],
)
def test_invalid_options_exit_2(
    argv: list[str],
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in (
        "PERENNIAL_MODEL_URI",
        "PERENNIAL_MODEL_SHA256",
        "PERENNIAL_SERVE_PORT",
        "PERENNIAL_SERVE_BACKEND",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    if not message:
        assert "PERENNIAL_SERVE_PORT must be an integer" in err


def test_backend_pin_and_workers_options() -> None:
    sha = "ab" * 32
    env = {"PERENNIAL_ONNX_SHA256": sha.upper(), "PERENNIAL_SERVE_BACKEND": "onnxruntime"}
    config = parse_args(["--model-uri", "m", "--insecure-skip-verify"], env)
    assert config.onnx_sha256 == sha and config.backend == "onnxruntime"
    assert config.workers == available_cores() >= 1  # default: one worker per core
    assert (
        parse_args(["--model-uri", "m", "--insecure-skip-verify", "--workers", "3"], {}).workers
        == 3
    )
    flags = ["--model-uri", "m", "--insecure-skip-verify", "--backend", "sklearn"]
    assert parse_args(flags, env).backend == "sklearn"  # flags win


def test_feedback_key_from_a_file_or_the_environment_else_generated(tmp_path: Path) -> None:
    base = ["--model-uri", "m", "--insecure-skip-verify"]
    key = "k" * 64
    from_env = parse_args(base, {"PERENNIAL_FEEDBACK_KEY": key})
    assert (from_env.feedback_key, from_env.feedback_key_generated) == (key, False)
    assert key not in repr(from_env)  # never logged with the config
    key_file = tmp_path / "feedback.key"
    key_file.write_text("f" * 64 + "\n")
    env = {"PERENNIAL_FEEDBACK_KEY": key, "PERENNIAL_FEEDBACK_KEY_FILE": "/nonexistent"}
    from_file = parse_args([*base, "--feedback-key-file", str(key_file)], env)  # flags win
    assert from_file.feedback_key == "f" * 64
    generated = parse_args(base, {})
    assert generated.feedback_key_generated and len(generated.feedback_key) == 64
    assert parse_args(base, {}).feedback_key != generated.feedback_key
    with pytest.raises(ConfigError, match="a feedback key needs at least 32"):
        parse_args(base, {"PERENNIAL_FEEDBACK_KEY": "short"})
    with pytest.raises(ConfigError, match="--feedback-key-file /nonexistent cannot be read"):
        parse_args(base, {"PERENNIAL_FEEDBACK_KEY_FILE": "/nonexistent"})
