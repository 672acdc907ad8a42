"""The model server over real HTTP on 127.0.0.1, serving models the real trainer produced.

Servers run in a thread of the test process (``EmbeddedServer``: the same ASGI app and
uvicorn settings as ``perennial-runtime serve``); test_serve_lifecycle.py starts the
command itself in a subprocess.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_breast_cancer, load_diabetes

from perennial_runtime.contract import MonitoringSnapshot
from perennial_runtime.drift import MIN_DRIFT_SAMPLES
from perennial_runtime.serve.config import ServeConfig
from perennial_runtime.serve.embedded import EmbeddedServer
from testsupport import deadline

LOGISTIC = {"estimator": "LogisticRegression", "params": {"max_iter": 1000}}


def config_for(run: Any, **overrides: Any) -> ServeConfig:
    return ServeConfig(model_uri=run.model_uri, sha256=run.sha256, **overrides)


def serve(config: ServeConfig) -> EmbeddedServer:
    server = EmbeddedServer(config).start()
    server.wait_ready(deadline())
    return server


@pytest.fixture(scope="module")
def cancer_run(trained_run: Any) -> Any:
    return trained_run("breast_cancer", **LOGISTIC)


@pytest.fixture(scope="module")
def cancer(cancer_run: Any) -> Iterator[httpx.Client]:
    server = serve(config_for(cancer_run, max_rows=50, max_body_bytes=64 * 1024))
    with httpx.Client(base_url=server.url, timeout=deadline()) as client:
        yield client
    server.stop()


@pytest.fixture(scope="module")
def cancer_data() -> pd.DataFrame:
    frame: pd.DataFrame = load_breast_cancer(as_frame=True).frame
    return frame


def features_of(run: Any) -> list[str]:
    return [f.name for f in run.metadata.features]


def metric_values(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").text
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


# --- V2 metadata and inference ---------------------------------------------------------------


def test_server_and_model_metadata(cancer: httpx.Client, cancer_run: Any) -> None:
    server = cancer.get("/v2").json()
    assert server["name"] == "perennial"
    assert cancer.get("/v2/health/live").status_code == 200
    assert cancer.get("/v2/health/ready").json() == {"ready": True}
    name = cancer_run.metadata.run
    assert cancer.get(f"/v2/models/{name}/ready").status_code == 200

    meta = cancer.get(f"/v2/models/{name}").json()
    assert meta["name"] == name
    assert meta["versions"] == [name]
    assert meta["platform"] == "sklearn"
    assert [i["name"] for i in meta["inputs"]] == features_of(cancer_run)
    assert {i["datatype"] for i in meta["inputs"]} == {"FP64"}
    assert meta["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]},
    ]
    assert meta["parameters"]["sha256"] == cancer_run.sha256
    assert meta["parameters"]["backend"] == "numpy"  # linear: the verified fast path
    assert "linear pipeline compiled to numpy" in meta["parameters"]["backend_reason"]
    versioned = cancer.get(f"/v2/models/{name}/versions/{name}").json()
    assert versioned == meta


def test_infer_with_one_2d_tensor(cancer: httpx.Client, cancer_run: Any) -> None:
    sample = cancer_run.metadata.sample
    rows = sample.instances[:5]
    body = {
        "id": "req-1",
        "inputs": [
            {"name": "input-0", "shape": [5, 30], "datatype": "FP64", "data": rows},  # nested
        ],
    }
    response = cancer.post(f"/v2/models/{cancer_run.metadata.run}/infer", json=body)
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["model_name"] == doc["model_version"] == cancer_run.metadata.run
    assert doc["id"] == "req-1"
    outputs = {o["name"]: o for o in doc["outputs"]}
    assert outputs["predict"]["shape"] == [5]
    assert outputs["predict"]["datatype"] == "INT64"
    assert outputs["predict"]["data"] == sample.predictions[:5]
    proba = outputs["predict_proba"]
    assert proba["shape"] == [5, 2] and len(proba["data"]) == 10
    assert np.allclose(np.asarray(proba["data"]).reshape(5, 2).sum(axis=1), 1.0)
    assert len(doc["parameters"]["ids"]) == 5


def test_infer_with_one_tensor_per_feature(cancer: httpx.Client, cancer_run: Any) -> None:
    sample = cancer_run.metadata.sample
    rows = np.asarray(sample.instances[:3], dtype=float)
    inputs = [
        {"name": name, "shape": [3], "datatype": "FP64", "data": rows[:, j].tolist()}
        for j, name in enumerate(features_of(cancer_run))
    ]
    body = {"inputs": inputs[::-1], "outputs": [{"name": "predict"}]}  # any order
    response = cancer.post(f"/v2/models/{cancer_run.metadata.run}/infer", json=body)
    assert response.status_code == 200, response.text
    doc = response.json()
    assert [o["name"] for o in doc["outputs"]] == ["predict"]  # only what was asked
    assert doc["outputs"][0]["data"] == sample.predictions[:3]


def test_predict_with_lists_and_objects(cancer: httpx.Client, cancer_run: Any) -> None:
    sample = cancer_run.metadata.sample
    names = features_of(cancer_run)
    as_lists = cancer.post("/predict", json={"instances": sample.instances[:4]}).json()
    objects = [dict(zip(names, row, strict=True)) for row in sample.instances[:4]]
    as_objects = cancer.post("/predict", json={"instances": objects}).json()
    assert as_lists["predictions"] == as_objects["predictions"] == sample.predictions[:4]
    assert as_lists["probabilities"] == as_objects["probabilities"]
    assert as_lists["classes"] == [0, 1]
    assert as_lists["model"] == as_lists["run"] == cancer_run.metadata.run
    assert len(set(as_lists["ids"] + as_objects["ids"])) == 8
    # integers and booleans are numbers too; null is a missing value (imputed)
    mixed: list[int | None] = [int(v) for v in sample.instances[0]]
    mixed[1] = None
    response = cancer.post("/predict", json={"instances": [mixed]})
    assert response.status_code == 200, response.text
    assert response.headers["server-timing"].startswith("app;dur=")


BAD_PREDICT_BODIES: list[tuple[str, Any, int, str]] = [
    ("not JSON", b"{instances: nope", 400, "not valid JSON"),
    ("empty body", b"", 400, "body is empty"),
    ("array body", [1, 2], 400, "must be a JSON object"),
    ("no instances", {"rows": []}, 400, "'instances' is missing"),
    ("instances not a list", {"instances": "x"}, 400, "instances must be a list"),
    ("no rows", {"instances": []}, 400, "instances is empty"),
    ("short row", {"instances": [[1.0, 2.0, 3.0]]}, 400, "instances[0]: expected 30 values"),
    ("row is a number", {"instances": [7]}, 400, "instances[0]: a row must be a list"),
]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [case[1:] for case in BAD_PREDICT_BODIES],
    ids=[case[0] for case in BAD_PREDICT_BODIES],
)
def test_bad_predict_bodies(cancer: httpx.Client, body: Any, status: int, message: str) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = cancer.post("/predict", content=content)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_bad_values_name_row_and_feature(cancer: httpx.Client, cancer_run: Any) -> None:
    rows = [list(r) for r in cancer_run.metadata.sample.instances[:3]]
    rows[2][3] = "abc"
    response = cancer.post("/predict", json={"instances": rows})
    assert response.status_code == 400
    assert response.json()["error"] == (
        "instances[2]: feature 'mean area' expects a number, got string 'abc'"
    )

    names = features_of(cancer_run)
    row = dict(zip(names, cancer_run.metadata.sample.instances[0], strict=True))
    missing = {k: v for k, v in row.items() if k != "mean radius"}
    response = cancer.post("/predict", json={"instances": [row, missing]})
    assert response.status_code == 400
    assert response.json()["error"] == "instances[1]: feature 'mean radius' is missing"

    response = cancer.post("/predict", json={"instances": [{**row, "bogus": 1}]})
    assert response.status_code == 400
    assert "instances[0]: unknown feature(s) 'bogus'" in response.json()["error"]

    response = cancer.post("/predict", json={"instances": [[[1.0]] * 30]})
    assert response.status_code == 400
    assert "feature 'mean radius' expects a number, got a list" in response.json()["error"]


def test_limits_and_routing_errors(cancer: httpx.Client, cancer_run: Any) -> None:
    row = cancer_run.metadata.sample.instances[0]
    too_many = cancer.post("/predict", json={"instances": [row] * 51})
    assert too_many.status_code == 413
    assert "51 rows, more than the limit of 50" in too_many.json()["error"]

    oversized = cancer.post("/predict", content=b'{"instances": [' + b" " * 70_000 + b"]}")
    assert oversized.status_code == 413
    assert "exceeds the limit of 65536 bytes" in oversized.json()["error"]

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted while reading
        yield b'{"instances": ['
        for _ in range(10):
            yield b" " * 10_000
        yield b"]}"

    streamed = cancer.post("/predict", content=chunked())
    assert streamed.status_code == 413
    assert "exceeds the limit of 65536 bytes" in streamed.json()["error"]

    unknown = cancer.post("/v2/models/no-such-model/infer", json={"inputs": []})
    assert unknown.status_code == 404
    assert "unknown model 'no-such-model'" in unknown.json()["error"]
    assert cancer.get("/v2/models/no-such-model").status_code == 404
    run = cancer_run.metadata.run
    assert cancer.get(f"/v2/models/{run}/versions/other").status_code == 404
    assert cancer.get("/nowhere").status_code == 404
    wrong_method = cancer.get("/predict")
    assert wrong_method.status_code == 405
    assert "use POST" in wrong_method.json()["error"]
    assert wrong_method.headers["allow"] == "POST"
    # the server is still fine
    assert cancer.post("/predict", json={"instances": [row]}).status_code == 200


BAD_INFER: list[tuple[str, dict[str, Any], str]] = [
    ("no inputs", {"inputs": []}, "'inputs' must be a non-empty list"),
    (
        "wrong width",
        {"inputs": [{"name": "x", "shape": [1, 29], "datatype": "FP64", "data": [0.0] * 29}]},
        "expected a 2-D tensor [rows, 30]",
    ),
    (
        "shape and data disagree",
        {"inputs": [{"name": "x", "shape": [2, 30], "datatype": "FP64", "data": [0.0] * 30}]},
        "shape [2, 30] holds 60 values but data has 30",
    ),
    (
        "strings in FP64",
        {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64", "data": ["a"] * 30}]},
        "datatype FP64 but data[0] is string 'a'",
    ),
    (
        "not a datatype",
        {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "DOUBLE", "data": [0.0] * 30}]},
        "is not a V2 datatype",
    ),
    (
        "tensor without data",
        {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64"}]},
        "inputs[0]: 'data' is missing",
    ),
    (
        "one feature only",
        {"inputs": [{"name": "mean radius", "shape": [1], "datatype": "FP64", "data": [1.0]}]},
        "feature 'mean texture' is missing from the inputs (and 28 more)",
    ),
    (
        "unknown output",
        {
            "inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64", "data": [0.0] * 30}],
            "outputs": [{"name": "embedding"}],
        },
        "unknown output string 'embedding'",
    ),
]


@pytest.mark.parametrize(
    ("body", "message"), [c[1:] for c in BAD_INFER], ids=[c[0] for c in BAD_INFER]
)
def test_bad_infer_requests(
    cancer: httpx.Client, cancer_run: Any, body: dict[str, Any], message: str
) -> None:
    response = cancer.post(f"/v2/models/{cancer_run.metadata.run}/infer", json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


# --- metrics, drift, feedback, monitoring ------------------------------------------------------


def test_metrics_move(cancer: httpx.Client, cancer_run: Any) -> None:
    before = metric_values(cancer)
    rows = cancer_run.metadata.sample.instances[:7]
    assert cancer.post("/predict", json={"instances": rows}).status_code == 200
    assert cancer.post("/predict", json={"instances": "bad"}).status_code == 400
    after = metric_values(cancer)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("perennial_requests_total", endpoint="predict", outcome="ok") == 1
    assert delta("perennial_requests_total", endpoint="predict", outcome="client_error") == 1
    assert delta("perennial_request_duration_seconds_count", endpoint="predict") == 2
    assert delta("perennial_rows_predicted_total") == 7
    predicted = sum(delta("perennial_predictions_total", **{"class": str(c)}) for c in (0, 1))
    assert predicted == 7
    info = (
        "perennial_model_info",
        tuple(
            sorted(
                {
                    "model": cancer_run.metadata.run,
                    "run": cancer_run.metadata.run,
                    "sha256": cancer_run.sha256,
                    "backend": "numpy",
                }.items()
            )
        ),
    )
    assert after[info] == 1.0
    assert after["perennial_model_ready", ()] == 1.0


def test_drift_score_rises_for_a_shifted_feature(
    cancer_run: Any, cancer_data: pd.DataFrame
) -> None:
    names = features_of(cancer_run)
    rows = cancer_data[names].to_numpy(dtype=float)
    window = len(rows)
    server = serve(config_for(cancer_run, drift_window=window))
    try:
        with httpx.Client(base_url=server.url, timeout=deadline()) as client:
            run = cancer_run.metadata.run
            few = client.post("/predict", json={"instances": rows[:50].tolist()})
            assert few.status_code == 200
            early = MonitoringSnapshot.model_validate(
                client.get(f"/v2/models/{run}/monitoring").json()
            )
            assert early.drift_samples == 50 < MIN_DRIFT_SAMPLES
            assert early.drift_scores == {}  # no verdict below the minimum sample size

            for start in range(50, window, 40):  # in requests of <= 40 rows
                chunk = rows[start : start + 40].tolist()
                assert client.post("/predict", json={"instances": chunk}).status_code == 200
            stable = MonitoringSnapshot.model_validate(
                client.get(f"/v2/models/{run}/monitoring").json()
            )
            assert stable.drift_samples == window
            assert set(stable.drift_scores) == set(names)
            assert stable.max_drift_score is not None and stable.max_drift_score < 0.1

            shifted = rows.copy()
            shifted[:, names.index("mean radius")] *= 1.6
            for start in range(0, window, 200):
                chunk = shifted[start : start + 200].tolist()
                inputs = [{"name": "x", "shape": [len(chunk), 30], "datatype": "FP64"}]
                inputs[0]["data"] = chunk
                response = client.post(f"/v2/models/{run}/infer", json={"inputs": inputs})
                assert response.status_code == 200
            drifted = MonitoringSnapshot.model_validate(
                client.get(f"/v2/models/{run}/monitoring").json()
            )
            assert drifted.drift_samples == window  # the window slid: all shifted rows now
            assert drifted.drift_scores["mean radius"] > 0.25
            others = {k: v for k, v in drifted.drift_scores.items() if k != "mean radius"}
            assert max(others.values()) < 0.1
            assert drifted.max_drift_score == drifted.drift_scores["mean radius"]

            gauges = metric_values(client)
            radius = gauges["perennial_feature_drift_psi", (("feature", "mean radius"),)]
            assert radius == pytest.approx(drifted.drift_scores["mean radius"])
            assert gauges["perennial_drift_window_rows", ()] == window
    finally:
        server.stop()


def test_live_accuracy_from_feedback(cancer_run: Any, cancer_data: pd.DataFrame) -> None:
    names = features_of(cancer_run)
    server = serve(config_for(cancer_run, feedback_window=100))
    try:
        with httpx.Client(base_url=server.url, timeout=deadline()) as client:
            x = cancer_data[names].to_numpy(dtype=float)
            y = cancer_data["target"].to_numpy()
            first = client.post("/predict", json={"instances": x[:100].tolist()}).json()
            right = client.post(
                "/feedback", json={"ids": first["ids"], "targets": y[:100].tolist()}
            )
            assert right.status_code == 200, right.text
            assert right.json()["accepted"] == 100
            assert right.json()["liveAccuracy"] >= 0.9

            again = client.post("/feedback", json={"ids": first["ids"][:3], "targets": [0, 0, 0]})
            assert again.json()["accepted"] == 0 and again.json()["duplicates"] == 3
            stale = client.post("/feedback", json={"ids": ["nope-1-0"], "targets": [1]})
            assert stale.json()["unknown"] == 1

            second = client.post("/predict", json={"instances": x[100:200].tolist()}).json()
            wrong = (1 - np.asarray(second["predictions"])).tolist()
            response = client.post("/feedback", json={"ids": second["ids"], "targets": wrong})
            assert response.json()["liveAccuracy"] == 0.0  # the window holds only these

            by_rows = client.post(
                "/feedback",
                json={"instances": x[200:250].tolist(), "targets": y[200:250].tolist()},
            )
            assert by_rows.status_code == 200 and by_rows.json()["accepted"] == 50

            snapshot = MonitoringSnapshot.model_validate(
                client.get(f"/v2/models/{cancer_run.metadata.run}/monitoring").json()
            )
            assert snapshot.feedback_samples == 100
            # The snapshot names the model it measured: the run and its model file's sha256.
            assert snapshot.run == cancer_run.metadata.run
            assert snapshot.sha256 == cancer_run.metadata.model.sha256
            assert snapshot.live_accuracy is not None and 0.35 <= snapshot.live_accuracy <= 0.55
            assert snapshot.live_rmse is None
            assert snapshot.requests == 2 and snapshot.errors == 0
            assert snapshot.rows_predicted == 200
            assert set(snapshot.prediction_distribution) == {"0", "1"}
            assert snapshot.latency_p99_ms is not None and snapshot.latency_p99_ms > 0
            gauges = metric_values(client)
            assert gauges["perennial_live_accuracy", ()] == pytest.approx(snapshot.live_accuracy)
    finally:
        server.stop()


BAD_FEEDBACK: list[tuple[str, dict[str, Any], str]] = [
    ("neither", {"targets": [1]}, "send either"),
    ("both", {"ids": ["a"], "instances": [[0.0] * 30], "targets": [1]}, "send either"),
    ("no targets", {"ids": ["a"]}, "'targets' must be a non-empty list"),
    ("lengths differ", {"ids": ["a", "b"], "targets": [1]}, "as long as 'targets' (1), got 2"),
    ("unknown class", {"ids": ["a"], "targets": [7]}, "targets[0]: number 7 is not one of"),
    ("id not a string", {"ids": [3], "targets": [1]}, "ids[0]: expects a prediction id"),
]


@pytest.mark.parametrize(
    ("body", "message"), [c[1:] for c in BAD_FEEDBACK], ids=[c[0] for c in BAD_FEEDBACK]
)
def test_bad_feedback(cancer: httpx.Client, body: dict[str, Any], message: str) -> None:
    response = cancer.post("/feedback", json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


# --- regression ---------------------------------------------------------------------------------


def test_regression_model(trained_run: Any) -> None:
    run = trained_run("diabetes")  # Ridge
    data = load_diabetes(as_frame=True).frame
    names = features_of(run)
    server = serve(config_for(run, feedback_window=200))
    try:
        with httpx.Client(base_url=server.url, timeout=deadline()) as client:
            meta = client.get(f"/v2/models/{run.metadata.run}").json()
            assert [o["name"] for o in meta["outputs"]] == ["predict"]
            assert meta["parameters"]["backend"] == "numpy"
            sample = run.metadata.sample
            body = {"instances": sample.instances}
            predicted = client.post("/predict", json=body).json()
            assert "probabilities" not in predicted
            assert np.allclose(predicted["predictions"], sample.predictions, rtol=1e-9)

            x = data[names].to_numpy(dtype=float)[:200]
            y = data["target"].to_numpy(dtype=float)[:200]
            served = client.post("/predict", json={"instances": x.tolist()}).json()
            fb = client.post("/feedback", json={"ids": served["ids"], "targets": y.tolist()})
            expected = float(np.sqrt(np.mean((np.asarray(served["predictions"]) - y) ** 2)))
            assert fb.json()["liveRmse"] == pytest.approx(expected)
            bad = client.post("/feedback", json={"ids": served["ids"][:1], "targets": ["high"]})
            assert bad.status_code == 400
            assert "targets[0]: expects a number" in bad.json()["error"]

            snapshot = MonitoringSnapshot.model_validate(
                client.get(f"/v2/models/{run.metadata.run}/monitoring").json()
            )
            assert snapshot.live_rmse == pytest.approx(expected)
            assert snapshot.live_accuracy is None
            assert set(snapshot.prediction_distribution) == {"mean", "std", "p10", "p50", "p90"}
            assert snapshot.drift_samples == 220
            families = {f.name for f in text_string_to_metric_families(client.get("/metrics").text)}
            assert "perennial_prediction_value" in families
            assert "perennial_live_rmse" in families

            # a large batch is predicted off the event loop, with the same results
            big = np.tile(x, (8, 1))  # 1600 rows
            response = client.post("/predict", json={"instances": big.tolist()})
            assert response.status_code == 200
            assert np.allclose(response.json()["predictions"], served["predictions"] * 8)
    finally:
        server.stop()


# --- categorical and boolean features -------------------------------------------------------------


def test_categorical_and_boolean_features(mixed_run: Any) -> None:
    server = serve(config_for(mixed_run))
    try:
        with httpx.Client(base_url=server.url, timeout=deadline()) as client:
            meta = client.get("/v2/models/mixed").json()
            assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
                ("x1", "FP64"),
                ("x2", "INT64"),
                ("color", "BYTES"),
                ("flag", "BOOL"),
            ]
            assert meta["parameters"]["backend"] == "numpy"
            assert meta["outputs"][0]["datatype"] == "BYTES"
            rows = [
                [0.5, 3, "red", True],
                {"x1": None, "x2": 7, "color": "never-seen", "flag": "false"},
                [-1.0, 0, None, 0],
            ]
            response = client.post("/predict", json={"instances": rows})
            assert response.status_code == 200, response.text
            assert set(response.json()["predictions"]) <= {"yes", "no"}

            columns = [
                {"name": "x1", "shape": [2], "datatype": "FP64", "data": [0.5, None]},
                {"name": "x2", "shape": [2, 1], "datatype": "INT64", "data": [[3], [7]]},
                {"name": "color", "shape": [2], "datatype": "BYTES", "data": ["red", "blue"]},
                {"name": "flag", "shape": [2], "datatype": "BOOL", "data": [True, False]},
            ]
            infer = client.post("/v2/models/mixed/infer", json={"inputs": columns})
            assert infer.status_code == 200, infer.text
            labels = infer.json()["outputs"][0]["data"]
            assert labels[0] == response.json()["predictions"][0]

            bad_cases = [
                ([[0.5, 3, "red", "maybe"]], "feature 'flag' expects a boolean (true/false)"),
                ([[0.5, None, "red", True]], "feature 'x2' must not be null"),
                ([[0.5, 3, ["red"], True]], "feature 'color' expects a category label"),
            ]
            for instances, message in bad_cases:
                bad = client.post("/predict", json={"instances": instances})
                assert bad.status_code == 400, bad.text
                assert message in bad.json()["error"]
            feedback = client.post(
                "/feedback", json={"ids": response.json()["ids"], "targets": ["yes", "no", "no"]}
            )
            assert feedback.status_code == 200 and feedback.json()["accepted"] == 3
    finally:
        server.stop()


def test_late_regression_labels_are_scored_with_the_earlier_models_exact_predictions(
    trained_run: Any, cancer_run: Any
) -> None:
    """Two regressors and a classifier sharing a feedback key (in-process servers): a
    label for model A's prediction sent to model B is scored with A's own value."""
    key = "k" * 64
    data = load_diabetes(as_frame=True).frame
    model_a = trained_run("diabetes")  # Ridge
    model_b = trained_run("diabetes", "Ridge", {"alpha": 10.0})
    assert model_a.sha256 != model_b.sha256
    servers = [
        serve(config_for(run, feedback_key=key, feedback_window=50))
        for run in (model_a, model_b, cancer_run)
    ]
    try:
        a, b, classifier = (httpx.Client(base_url=s.url, timeout=deadline()) for s in servers)
        x = data[features_of(model_a)].to_numpy(dtype=float)[:80]
        y = data["target"].to_numpy(dtype=float)[:80]
        served = a.post("/predict", json={"instances": x.tolist()}).json()
        late = b.post("/feedback", json={"ids": served["ids"], "targets": y.tolist()}).json()
        assert late["accepted"] == 80 and late["earlierModels"] == 80
        assert late["feedbackSamples"] == 0 and "liveRmse" not in late
        snapshot = MonitoringSnapshot.model_validate(
            b.get(f"/v2/models/{model_b.metadata.run}/monitoring").json()
        )
        (earlier,) = snapshot.earlier_models
        last = np.asarray(served["predictions"][-50:]) - y[-50:]  # the 50 newest predictions
        assert earlier.sha256_prefix == model_a.sha256[:8]
        assert earlier.live_rmse == pytest.approx(float(np.sqrt(np.mean(last**2))), rel=1e-12)
        assert earlier.live_accuracy is None and snapshot.live_rmse is None

        # A classifier's id at a regressor (or the reverse) cannot be scored: unknown.
        label_ids = classifier.post(
            "/predict", json={"instances": [cancer_run.metadata.sample.instances[0]]}
        ).json()["ids"]
        other_kind = b.post("/feedback", json={"ids": label_ids, "targets": [1]}).json()
        assert other_kind["accepted"] == 0 and other_kind["unknown"] == 1
        assert "unverified" not in other_kind  # genuine, just not a regression prediction
        for client in (a, b, classifier):
            client.close()
    finally:
        for server in servers:
            server.stop()
