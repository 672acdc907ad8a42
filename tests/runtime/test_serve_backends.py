"""The server's backends (numpy, onnxruntime, sklearn) and the verification of model.onnx.

Every backend must answer what the pipeline answers; ``model.onnx`` is verified against
the sha256 recorded inside the verified ``model.skops`` (or ``--onnx-sha256``) before
onnxruntime parses it, and a tampered file means the model is never served.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes

from perennial_runtime import artifacts
from perennial_runtime.compiled.onnx_layout import EMBEDDED_SHA256_ATTRIBUTE
from perennial_runtime.serve.config import ServeConfig
from perennial_runtime.serve.embedded import EmbeddedServer
from testsupport import deadline

MODELS = {
    "logistic": (
        "breast_cancer",
        {"estimator": "LogisticRegression", "params": {"max_iter": 1000}},
    ),
    "forest": (
        "breast_cancer",
        {"estimator": "RandomForestClassifier", "params": {"n_estimators": 30}},
    ),
    "ridge": ("diabetes", {"estimator": "Ridge", "params": {}}),
}
# What ``--backend auto`` picks: numpy for linear pipelines, onnxruntime for the rest.
AUTO = {"logistic": "numpy", "forest": "onnxruntime", "ridge": "numpy", "mixed": "numpy"}


@pytest.fixture(scope="module")
def runs(trained_run: Any, mixed_run: Any) -> dict[str, Any]:
    out = {name: trained_run(dataset, **kwargs) for name, (dataset, kwargs) in MODELS.items()}
    out["mixed"] = mixed_run
    return out


def rows_of(name: str, run: Any) -> list[Any]:
    """The whole dataset as request rows (the mixed table: its CSV, missing values included)."""
    names = [f.name for f in run.metadata.features]
    if name == "mixed":
        frame = pd.read_csv(run.run_dir.parent.parent / "mixed.csv")
        frame = frame.astype(object).where(frame.notna(), None)
        return [list(r) for r in frame[names].itertuples(index=False)]
    loader = load_diabetes if name == "ridge" else load_breast_cancer
    data: pd.DataFrame = loader(as_frame=True).frame
    rows: list[Any] = data[names].to_numpy(dtype=float).tolist()
    return rows


def serve(run: Any, **overrides: Any) -> EmbeddedServer:
    config = ServeConfig(model_uri=run.model_uri, sha256=run.sha256, **overrides)
    return EmbeddedServer(config).start()


def answers(server: EmbeddedServer, run: Any, rows: list[Any]) -> dict[str, Any]:
    server.wait_ready(deadline())
    with httpx.Client(base_url=server.url, timeout=deadline()) as client:
        meta = client.get(f"/v2/models/{run.metadata.run}").json()["parameters"]
        batch = client.post("/predict", json={"instances": rows})
        assert batch.status_code == 200, batch.text
        single = [
            client.post("/predict", json={"instances": [row]}).json()["predictions"][0]
            for row in rows[:25]
        ]
        snapshot = client.get(f"/v2/models/{run.metadata.run}/monitoring").json()
    return {"meta": meta, "batch": batch.json(), "single": single, "snapshot": snapshot}


@pytest.mark.parametrize("name", ["logistic", "forest", "ridge", "mixed"])
def test_every_backend_answers_like_the_pipeline(runs: dict[str, Any], name: str) -> None:
    run = runs[name]
    rows = rows_of(name, run)
    got: dict[str, dict[str, Any]] = {}
    for backend in ("auto", "onnxruntime", "numpy", "sklearn"):
        server = serve(run, backend=backend)
        try:
            got[backend] = answers(server, run, rows)
        finally:
            server.stop()
    assert got["auto"]["meta"]["backend"] == AUTO[name]
    reference = got["sklearn"]
    for backend, answer in got.items():
        assert answer["meta"]["backend"] == (AUTO[name] if backend == "auto" else backend)
        assert answer["snapshot"]["backend"] == answer["meta"]["backend"]
        assert answer["meta"]["backend_reason"]
        want, have = reference["batch"], answer["batch"]
        if name == "ridge":
            np.testing.assert_allclose(have["predictions"], want["predictions"], rtol=1e-5)
        else:
            assert have["predictions"] == want["predictions"], backend
            np.testing.assert_allclose(have["probabilities"], want["probabilities"], atol=1e-5)
        if name == "ridge":
            np.testing.assert_allclose(answer["single"], have["predictions"][:25], rtol=1e-5)
        else:
            assert answer["single"] == have["predictions"][:25]
    onnx = got["onnxruntime"]["meta"]
    assert onnx["onnx_sha256"] == run.result.artifact.onnx_sha256
    assert onnx["backend_reason"].startswith("model.onnx verified and equal to the pipeline")


# --- verification of model.onnx -------------------------------------------------------------


@pytest.fixture
def forest_copy(runs: dict[str, Any], tmp_path: Path) -> Path:
    target: Path = tmp_path / "forest"
    shutil.copytree(runs["forest"].run_dir, target)
    return target


def refused(server: EmbeddedServer) -> str:
    with pytest.raises(RuntimeError) as failure:
        server.wait_ready(deadline())
    with httpx.Client(base_url=server.url, timeout=deadline()) as client:
        assert client.get("/v2/health/live").status_code == 200
        ready = client.get("/v2/health/ready")
        assert ready.status_code == 503 and ready.json()["state"] == "failed"
    return str(failure.value)


def backend_of(server: EmbeddedServer, run_name: str) -> dict[str, Any]:
    server.wait_ready(deadline())
    with httpx.Client(base_url=server.url, timeout=deadline()) as client:
        parameters: dict[str, Any] = client.get(f"/v2/models/{run_name}").json()["parameters"]
        metrics = client.get("/metrics").text
    info = [line for line in metrics.splitlines() if line.startswith("perennial_model_info{")]
    assert f'backend="{parameters["backend"]}"' in info[0]
    return parameters


def served(run_dir: Path, sha256: str, **overrides: Any) -> EmbeddedServer:
    config = ServeConfig(model_uri=(run_dir / "model.skops").as_uri(), sha256=sha256, **overrides)
    return EmbeddedServer(config).start()


def test_tampered_onnx_model_is_never_served(runs: dict[str, Any], forest_copy: Path) -> None:
    onnx = forest_copy / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0x01
    onnx.write_bytes(bytes(data))
    for backend in ("auto", "sklearn"):  # whatever the backend: the run folder was altered
        server = served(forest_copy, runs["forest"].sha256, backend=backend)
        try:
            reason = refused(server)
        finally:
            server.stop()
        assert "sha256 mismatch" in reason and "model.onnx" in reason


def test_onnx_sha256_must_agree_with_the_model_and_metadata(
    runs: dict[str, Any], forest_copy: Path
) -> None:
    run = runs["forest"]
    server = served(forest_copy, run.sha256, onnx_sha256="0" * 64)
    try:
        assert "differs from the model.onnx sha256 recorded in the verified" in refused(server)
    finally:
        server.stop()
    meta_path = forest_copy / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["onnx"]["sha256"] = "1" * 64
    meta_path.write_text(json.dumps(meta))
    server = served(forest_copy, run.sha256)
    try:
        assert "describes a different model.onnx" in refused(server)
    finally:
        server.stop()


def test_onnx_sha256_for_a_run_without_onnx_is_refused(
    runs: dict[str, Any], forest_copy: Path
) -> None:
    meta_path = forest_copy / "metadata.json"
    meta = json.loads(meta_path.read_text())
    del meta["onnx"]
    meta_path.write_text(json.dumps(meta))
    (forest_copy / "model.onnx").unlink()
    run = runs["forest"]
    server = served(forest_copy, run.sha256, onnx_sha256=run.result.artifact.onnx_sha256)
    try:
        assert "records no model.onnx" in refused(server)
    finally:
        server.stop()
    server = served(forest_copy, run.sha256, backend="onnxruntime")
    try:
        assert "--backend onnxruntime, but onnxruntime cannot serve" in refused(server)
    finally:
        server.stop()
    server = served(forest_copy, run.sha256)  # auto: the numpy path with the forest
    try:
        parameters = backend_of(server, run.metadata.run)
        assert parameters["backend"] == "numpy"
        assert "RandomForestClassifier called by scikit-learn" in parameters["backend_reason"]
    finally:
        server.stop()


def _resigned(run_dir: Path, onnx_sha256: str | None) -> str:
    """Re-store model.skops with another embedded model.onnx sha256; its new sha256."""
    model = artifacts.load_model((run_dir / "model.skops").read_bytes())
    if onnx_sha256 is None:
        delattr(model, EMBEDDED_SHA256_ATTRIBUTE)
    else:
        setattr(model, EMBEDDED_SHA256_ATTRIBUTE, onnx_sha256)
    data = artifacts.dump_model(model)
    (run_dir / "model.skops").write_bytes(data)
    sha = artifacts.sha256_hex(data)
    meta_path = run_dir / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["model"]["sha256"] = sha
    if onnx_sha256 is not None:
        meta["onnx"]["sha256"] = onnx_sha256
    meta_path.write_text(json.dumps(meta))
    return sha


def test_unverifiable_onnx_model_is_not_used(runs: dict[str, Any], forest_copy: Path) -> None:
    """A model.skops that records no model.onnx sha256: only --onnx-sha256 can vouch for it."""
    run = runs["forest"]
    sha = _resigned(forest_copy, None)
    server = served(forest_copy, sha)
    try:
        parameters = backend_of(server, run.metadata.run)
        assert parameters["backend"] == "numpy"
        assert "model.onnx cannot be verified" in parameters["backend_reason"]
    finally:
        server.stop()
    server = served(forest_copy, sha, onnx_sha256=run.result.artifact.onnx_sha256)
    try:
        assert backend_of(server, run.metadata.run)["backend"] == "onnxruntime"
    finally:
        server.stop()


def test_onnx_model_that_disagrees_with_the_pipeline_falls_back(
    runs: dict[str, Any], forest_copy: Path
) -> None:
    """A consistently signed model.onnx of another model: verified, but not equal -> numpy."""
    other = runs["logistic"]  # same features, other model
    shutil.copy(other.run_dir / "model.onnx", forest_copy / "model.onnx")
    sha = _resigned(forest_copy, other.result.artifact.onnx_sha256)
    server = served(forest_copy, sha)
    try:
        parameters = backend_of(server, runs["forest"].metadata.run)
        assert parameters["backend"] == "numpy"
        assert "model.onnx disagrees with the pipeline at start-up" in parameters["backend_reason"]
    finally:
        server.stop()
