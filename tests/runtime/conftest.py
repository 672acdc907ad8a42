"""Shared fixtures for the runtime tests: configs and real trained runs.

``trained_run`` (session scope) is a factory that trains a real model once per distinct
argument set and returns a :class:`TrainedRun` (config, result, run folder, metadata).
The server tests use it to get models to serve::

    def test_something(trained_run):
        run = trained_run("iris")                      # RandomForestClassifier
        run = trained_run("diabetes")                  # Ridge regression
        run = trained_run("wine", estimator="LogisticRegression", params={"max_iter": 500})
        run.model_uri, run.sha256, run.run_dir, run.metadata.sample

``mixed_run`` is a LogisticRegression trained on a table with numeric, integer,
categorical and boolean columns and missing values (``mixed_frame``).

``make_train_config`` and ``champion_block`` hand out the config helpers below (test
modules cannot import this conftest under ``--import-mode=importlib``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from perennial_runtime.contract import ModelMetadata, TrainConfig, TrainResult
from testsupport import deadline, wait_until

# Small, fast defaults per dataset.
DATASET_TASKS = {
    "iris": "classification",
    "breast_cancer": "classification",
    "wine": "classification",
    "digits": "classification",
    "diabetes": "regression",
}
DEFAULT_ESTIMATOR = {"classification": "RandomForestClassifier", "regression": "Ridge"}
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "RandomForestClassifier": {"n_estimators": 20},
    "RandomForestRegressor": {"n_estimators": 20},
}


def make_config(
    *,
    run_name: str,
    artifact_uri: str,
    data_uri: str,
    target: str = "target",
    task: str = "classification",
    estimator: str | None = None,
    params: dict[str, Any] | None = None,
    columns: list[dict[str, Any]] | None = None,
    validation: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
    champion: dict[str, Any] | None = None,
    result_path: str | None = None,
) -> TrainConfig:
    """A TrainConfig built from its wire (camelCase) form, as the operator sends it."""
    estimator = estimator or DEFAULT_ESTIMATOR[task]
    data: dict[str, Any] = {"uri": data_uri, "target": target}
    if columns is not None:
        data["columns"] = columns
    raw: dict[str, Any] = {
        "runName": run_name,
        "pipelineName": "test-pipeline",
        "namespace": "default",
        "data": data,
        "model": {
            "task": task,
            "estimator": estimator,
            "params": DEFAULT_PARAMS.get(estimator, {}) if params is None else params,
        },
        "evaluation": {"topFeatures": 5, **(evaluation or {})},
        "validation": validation or {},
        "artifactUri": artifact_uri,
        "image": "ghcr.io/perennial-dev/perennial-runtime:test",
    }
    if champion is not None:
        raw["champion"] = champion
    if result_path is not None:
        raw["resultPath"] = result_path
    return TrainConfig.model_validate(raw)


def champion_of(result: TrainResult) -> dict[str, Any]:
    """The ``champion`` block of a TrainConfig pointing at a succeeded run."""
    assert result.artifact is not None, result.message
    run = result.artifact.uri.rstrip("/").rsplit("/", 1)[1]
    return {
        "run": run,
        "modelUri": result.artifact.model_uri,
        "sha256": result.artifact.sha256,
        "metrics": result.metrics,
    }


@dataclass(frozen=True)
class TrainedRun:
    config: TrainConfig
    result: TrainResult
    run_dir: Path  # local folder holding model.skops, metadata.json, MODEL_CARD.md

    @property
    def run_uri(self) -> str:
        return self.run_dir.as_uri()

    @property
    def model_path(self) -> Path:
        return self.run_dir / "model.skops"

    @property
    def model_uri(self) -> str:
        assert self.result.artifact is not None
        return self.result.artifact.model_uri

    @property
    def sha256(self) -> str:
        assert self.result.artifact is not None
        return self.result.artifact.sha256

    @property
    def metadata(self) -> ModelMetadata:
        raw = json.loads((self.run_dir / "metadata.json").read_text())
        return ModelMetadata.model_validate(raw)


TrainedRunFactory = Callable[..., TrainedRun]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainedRunFactory]:
    """Factory: ``trained_run(dataset, estimator=None, params=None, seed=42)``.

    Trains once per distinct arguments (cached for the session) into a session temp
    folder and fails the test if training fails. Do not modify the returned files; copy
    the run folder first if a test tampers with it.
    """
    from perennial_runtime.training.trainer import train

    root = tmp_path_factory.mktemp("trained-runs")
    cache: dict[str, TrainedRun] = {}

    def factory(
        dataset: str = "iris",
        estimator: str | None = None,
        params: dict[str, Any] | None = None,
        seed: int = 42,
    ) -> TrainedRun:
        task = DATASET_TASKS[dataset]
        key = json.dumps([dataset, estimator, params, seed], sort_keys=True)
        if key not in cache:
            run_name = f"{dataset.replace('_', '-')}-{len(cache) + 1}"
            config = make_config(
                run_name=run_name,
                artifact_uri=root.as_uri(),
                data_uri=f"sklearn://{dataset}",
                task=task,
                estimator=estimator,
                params=params,
                evaluation={"seed": seed},
            )
            result = train(config)
            assert result.status == "Succeeded", f"{result.reason}: {result.message}"
            cache[key] = TrainedRun(config=config, result=result, run_dir=root / run_name)
        return cache[key]

    yield factory


def mixed_frame(rows: int = 400, seed: int = 0) -> Any:
    """Numeric, integer, categorical (one rare category) and boolean columns, with gaps."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    color = rng.choice(["red", "green", "blue", "violet"], size=rows, p=[0.4, 0.3, 0.28, 0.02])
    flag = rng.choice([True, False], size=rows)
    x1 = rng.normal(size=rows)
    x2 = rng.integers(0, 10, size=rows)
    score = x1 + 0.2 * x2 + (color == "red") * 1.0 - flag * 0.8
    frame = pd.DataFrame(
        {
            "x1": x1,
            "x2": x2,
            "color": color,
            "flag": flag,
            "label": np.where(score > np.median(score), "yes", "no"),
        }
    )
    frame.loc[::17, "x1"] = np.nan
    frame.loc[::23, "color"] = None
    return frame


MIXED_COLUMNS: list[dict[str, Any]] = [
    {"name": "x1", "type": "numeric"},
    {"name": "x2", "type": "integer", "nullable": False},
    {"name": "color", "type": "categorical"},
    {"name": "flag", "type": "boolean"},
]


@pytest.fixture(scope="session")
def mixed_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """A real training run on :func:`mixed_frame` (LogisticRegression, run name ``mixed``)."""
    from perennial_runtime.training.trainer import train

    root = tmp_path_factory.mktemp("mixed")
    mixed_frame().to_csv(root / "mixed.csv", index=False)
    config = make_config(
        run_name="mixed",
        artifact_uri=(root / "artifacts").as_uri(),
        data_uri=str(root / "mixed.csv"),
        target="label",
        estimator="LogisticRegression",
        params={},
        columns=MIXED_COLUMNS,
        result_path=str(root / "result.json"),
    )
    result = train(config)
    assert result.status == "Succeeded", f"{result.reason}: {result.message}"
    return TrainedRun(config=config, result=result, run_dir=root / "artifacts" / "mixed")


@pytest.fixture(scope="session")
def make_train_config() -> Callable[..., TrainConfig]:
    """:func:`make_config`: keyword arguments in, a validated TrainConfig out."""
    return make_config


@pytest.fixture(scope="session")
def champion_block() -> Callable[[TrainResult], dict[str, Any]]:
    """:func:`champion_of`: the ``champion`` config block for a succeeded result."""
    return champion_of


@pytest.fixture
def artifact_root(tmp_path: Path) -> Path:
    root = tmp_path / "artifacts"
    root.mkdir()
    return root


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 (free port), for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


_S3_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN")


@pytest.fixture
def s3_bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh bucket on the moto server; the environment points fsspec/s3fs at it.

    Sets fake credentials and ``PERENNIAL_S3_ENDPOINT_URL`` for the test (undone after).
    """
    import uuid

    import boto3

    for name in _S3_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("PERENNIAL_S3_ENDPOINT_URL", moto_endpoint)
    bucket = f"perennial-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    yield bucket


# --- a real MLflow tracking server (tests of perennial_runtime.tracking) ---------------

# Longer than the one deadline: schema migrations on a busy 2-core machine took ~55 s.
MLFLOW_START_SECONDS = 180.0  # times $PERENNIAL_TEST_TIMEOUT_FACTOR


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 (sqlite backend store, local artifact root, one
    worker), started once per session; yields its tracking URI."""
    import os
    import socket
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    pytest.importorskip("mlflow", reason="the dev extra installs mlflow (the server)")
    root = tmp_path_factory.mktemp("mlflow-server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    log_file = (root / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", str(root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=root,
        # No background job runner (its huey consumers are half a dozen processes the
        # tests never use).
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        start_new_session=True,  # its uvicorn child is in the same group: stop both
    )  # fmt: skip

    def healthy() -> bool:
        if process.poll() is not None:
            pytest.fail(f"mlflow server exited: {(root / 'server.log').read_text()[-2000:]}")
        with urllib.request.urlopen(f"{uri}/health", timeout=deadline()) as response:
            return bool(response.status == 200)

    try:
        try:
            wait_until(
                healthy,
                what="mlflow server healthy",
                timeout=MLFLOW_START_SECONDS,
                ignoring=(urllib.error.URLError, OSError),
            )
        except AssertionError as exc:
            pytest.fail(f"{exc}: {(root / 'server.log').read_text()[-2000:]}")
        yield uri
    finally:
        import signal

        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=deadline())
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log_file.close()
