"""Hostile request bodies against a real server on 127.0.0.1 (issue 12, items 2, 3 and 8).

Mis-nested V2 tensors, values beyond what a model computes with, non-finite outputs,
deep nesting and malformed feedback ids: each is a 4xx naming what is wrong, never a 200
with a wrong or null answer and never a 500; and a row's answer does not depend on the
batch it is sent in.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

from perennial_runtime.serve.config import ServeConfig
from perennial_runtime.serve.embedded import EmbeddedServer
from testsupport import deadline

LOGISTIC = {"estimator": "LogisticRegression", "params": {"max_iter": 1000}}


def serve(run: Any, **overrides: Any) -> EmbeddedServer:
    server = EmbeddedServer(ServeConfig(model_uri=run.model_uri, sha256=run.sha256, **overrides))
    server.start()
    server.wait_ready(deadline())
    return server


@pytest.fixture(scope="module")
def iris_run(trained_run: Any) -> Any:
    return trained_run("iris")  # RandomForestClassifier: onnxruntime


@pytest.fixture(scope="module")
def iris(iris_run: Any) -> Iterator[tuple[httpx.Client, str]]:
    server = serve(iris_run)
    with httpx.Client(base_url=server.url, timeout=deadline()) as client:
        yield client, f"/v2/models/{iris_run.metadata.run}/infer"
    server.stop()


def matrix(data: Any, shape: list[int], name: str = "x") -> dict[str, Any]:
    return {"inputs": [{"name": name, "shape": shape, "datatype": "FP64", "data": data}]}


# --- item 2: nested data must match the shape -----------------------------------------------


def test_a_mis_nested_tensor_is_refused_not_reshaped(iris: tuple[httpx.Client, str]) -> None:
    client, url = iris
    rows = load_iris().data[[0, 60, 120]][:2]  # two rows of 4 features
    right = client.post(url, json=matrix(rows.tolist(), [2, 4]))
    assert right.status_code == 200, right.text
    flat = client.post(url, json=matrix(rows.ravel().tolist(), [2, 4]))
    assert flat.json()["outputs"] == right.json()["outputs"]

    feature_by_feature = rows.T.tolist()  # 4 lists of 2: the same 8 numbers, mis-nested
    response = client.post(url, json=matrix(feature_by_feature, [2, 4]))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == (
        "inputs[0] ('x'): data is nested as [4, 2] but shape is [2, 4]; nest data exactly "
        "as the shape (2 x 4) or send it flat (8 values, row-major)"
    )


MIS_NESTED: list[tuple[str, Any, list[int], str]] = [
    ("ragged", [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3]], [2, 4], "data[1] is a list of 3 where"),
    ("row is a value", [[5.1, 3.5, 1.4, 0.2], 6.2], [2, 4], "data[1] is number 6.2 where"),
    ("too deep", [[[5.1], [3.5], [1.4], [0.2]]], [1, 4], "data is nested as [1, 4, 1]"),
    ("list among values", [5.1, [3.5], 1.4, 0.2], [1, 4], "data is nested as [4]"),
    ("value among lists", [[5.1, 3.5, [1.4], 0.2]], [1, 4], "data[0][2] is a list where"),
]


@pytest.mark.parametrize(
    ("data", "shape", "message"), [c[1:] for c in MIS_NESTED], ids=[c[0] for c in MIS_NESTED]
)
def test_nesting_other_than_the_shape_is_a_400(
    iris: tuple[httpx.Client, str], data: Any, shape: list[int], message: str
) -> None:
    client, url = iris
    response = client.post(url, json=matrix(data, shape))
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_a_feature_tensor_nested_unlike_its_shape_is_a_400(
    iris: tuple[httpx.Client, str], iris_run: Any
) -> None:
    client, url = iris
    names = [f.name for f in iris_run.metadata.features]
    x = load_iris().data[:2]

    def columns(nest: bool, shape: list[int]) -> dict[str, Any]:
        return {
            "inputs": [
                {
                    "name": name,
                    "shape": shape,
                    "datatype": "FP64",
                    "data": [[v] for v in x[:, j]] if nest else x[:, j].tolist(),
                }
                for j, name in enumerate(names)
            ]
        }

    assert client.post(url, json=columns(nest=True, shape=[2, 1])).status_code == 200
    assert client.post(url, json=columns(nest=False, shape=[2, 1])).status_code == 200
    assert client.post(url, json=columns(nest=False, shape=[2])).status_code == 200
    response = client.post(url, json=columns(nest=True, shape=[2]))  # [2, 1] data, shape [2]
    assert response.status_code == 400, response.text
    assert "data is nested as [2, 1] but shape is [2]" in response.json()["error"]


def test_deeply_nested_data_is_a_400(iris: tuple[httpx.Client, str], iris_run: Any) -> None:
    client, url = iris
    deep = b"[" * 1000 + b"]" * 1000
    body = b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": %s}]}'
    response = client.post(url, content=body % deep)
    assert response.status_code == 400, response.text
    assert (
        "data is nested as [1, 1, 1, 1, 1, 1, 1, 1, ...] but shape is [1, 4]"
        in (response.json()["error"])
    )
    first = iris_run.metadata.features[0].name.encode()
    body = b'{"inputs": [{"name": "%s", "shape": [1], "datatype": "FP64", "data": %s}]}'
    response = client.post(url, content=body % (first, deep))
    assert response.status_code == 400, response.text
    for instances in (deep, b"[[" + deep + b", 1, 2, 3]]"):
        response = client.post("/predict", content=b'{"instances": %s}' % instances)
        assert response.status_code == 400, response.text
    deeper = b"[" * 100_000 + b"]" * 100_000  # past the JSON parser's own depth limit
    response = client.post("/predict", content=b'{"instances": %s}' % deeper)
    assert response.status_code == 400
    assert "depth limit exceeded" in response.json()["error"]


# --- item 3: values the model cannot compute with, non-finite outputs --------------------------


@pytest.fixture(scope="module")
def cancer_run(trained_run: Any) -> Any:
    return trained_run("breast_cancer", **LOGISTIC)


@pytest.mark.parametrize("backend", ["auto", "sklearn"])
def test_values_beyond_single_precision_are_a_422_alone_or_in_a_batch(
    cancer_run: Any, iris_run: Any, backend: str
) -> None:
    for run in (cancer_run, iris_run):  # numpy / onnxruntime under auto
        rows = [list(r) for r in run.metadata.sample.instances[:5]]
        rows[3][1] = 1e308
        names = [f.name for f in run.metadata.features]
        server = serve(run, backend=backend)
        try:
            with httpx.Client(base_url=server.url, timeout=deadline()) as client:
                batch = client.post("/predict", json={"instances": rows})
                alone = client.post("/predict", json={"instances": [rows[3]]})
                v2 = client.post(
                    f"/v2/models/{run.metadata.run}/infer", json=matrix(rows, [5, len(names)])
                )
        finally:
            server.stop()
        assert batch.status_code == alone.status_code == v2.status_code == 422, batch.text
        assert batch.json()["error"] == (
            f"instances[3]: feature {names[1]!r} is 1e+308, beyond the largest magnitude the "
            "server accepts, 3.403e+38 (the single-precision range tree and ONNX models "
            "compute in)"
        )
        assert alone.json()["error"].startswith(f"instances[0]: feature {names[1]!r}")
        assert v2.json()["error"].startswith(f"row 3 of the inputs: feature {names[1]!r}")


def test_a_row_gets_the_same_answer_alone_and_in_a_batch(cancer_run: Any, trained_run: Any) -> None:
    """Bit for bit: a BLAS matrix product sums in an order that depends on the batch."""
    rng = np.random.default_rng(7)
    cases = [
        (cancer_run, load_breast_cancer().data),
        (trained_run("diabetes"), load_diabetes().data),  # Ridge
    ]
    for run, data in cases:
        x = data[rng.choice(len(data), size=40, replace=False)]
        x = x * rng.uniform(0.5, 2.0, size=x.shape)  # rows the model never saw
        server = serve(run)
        try:
            with httpx.Client(base_url=server.url, timeout=deadline()) as client:
                batch = client.post("/predict", json={"instances": x.tolist()}).json()
                for i, row in enumerate(x.tolist()):
                    alone = client.post("/predict", json={"instances": [row]}).json()
                    assert alone["predictions"] == batch["predictions"][i : i + 1], i
                    if "probabilities" in batch:
                        assert alone["probabilities"] == batch["probabilities"][i : i + 1], i
        finally:
            server.stop()


@pytest.fixture(scope="module")
def tiny_scale_run(tmp_path_factory: pytest.TempPathFactory, make_train_config: Any) -> Any:
    """Ridge on a target of magnitude ~1e300: its coefficients are ~1e300, so an input of
    1e30 (well inside single precision) overflows the prediction."""
    from perennial_runtime.training.trainer import train

    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(3)
    x1 = rng.normal(size=300)
    tiny = rng.normal(size=300)
    frame = pd.DataFrame({"x1": x1, "tiny": tiny, "y": (2 * x1 + tiny) * 1e300})
    frame.to_csv(root / "tiny.csv", index=False)
    config = make_train_config(
        run_name="tiny",
        artifact_uri=(root / "artifacts").as_uri(),
        data_uri=str(root / "tiny.csv"),
        target="y",
        task="regression",
        estimator="Ridge",
        params={},
    )
    result = train(config)
    assert result.status == "Succeeded", f"{result.reason}: {result.message}"
    return result


@pytest.mark.parametrize("backend", ["auto", "sklearn"])
def test_a_non_finite_output_is_a_422_naming_the_row_and_feature(
    tiny_scale_run: Any, backend: str
) -> None:
    assert tiny_scale_run.artifact is not None
    config = ServeConfig(
        model_uri=tiny_scale_run.artifact.model_uri,
        sha256=tiny_scale_run.artifact.sha256,
        backend=backend,
    )
    server = EmbeddedServer(config).start()
    server.wait_ready(deadline())
    try:
        with httpx.Client(base_url=server.url, timeout=deadline()) as client:
            fine = client.post("/predict", json={"instances": [[0.5, 1.0]]})
            assert fine.status_code == 200, fine.text
            rows = [[0.5, 1.0], [0.1, 1e30], [0.2, -1e30]]
            response = client.post("/predict", json={"instances": rows})
            alone = client.post("/predict", json={"instances": [rows[1]]})
            infer = client.post("/v2/models/tiny/infer", json=matrix(rows, [3, 2]))
            metrics = client.get("/metrics").text
    finally:
        server.stop()
    assert response.status_code == alone.status_code == infer.status_code == 422, response.text
    error = response.json()["error"]
    assert error.startswith("instances[1]: the model's ")
    assert "not finite (NaN or infinity) (feature 'tiny' is 1e+30 (training bins span " in error
    assert error.endswith("; 2 of 3 rows are affected")
    assert alone.json()["error"].startswith("instances[0]: the model's ")
    assert infer.json()["error"].startswith("row 1 of the inputs: the model's ")
    # a client error, not a model error: it must not count against a canary
    assert 'perennial_requests_total{endpoint="predict",outcome="server_error"} 0.0' in metrics
    assert 'perennial_requests_total{endpoint="predict",outcome="client_error"} 2.0' in metrics


# --- item 8: feedback ids ------------------------------------------------------------------


def test_malformed_feedback_ids_are_a_400(iris: tuple[httpx.Client, str], iris_run: Any) -> None:
    client, _ = iris
    served = client.post("/predict", json={"instances": iris_run.metadata.sample.instances[:1]})
    pid = served.json()["ids"][0]
    sha8, process, made, seq, row, value, tag = pid.split(".")
    head = f"{sha8}.{process}.{made}"
    label = served.json()["predictions"][0]
    for bad in (
        f"{head}.{seq}.\u00b2.{value}.{tag}",  # a non-ASCII digit
        f"{head}.\u0663.{row}.{value}.{tag}",
        f"{head}.{'1' * 5000}.{row}.{value}.{tag}",  # thousands of digits
        f"{head}.{seq}.{row}.{value}.{tag[:-1]}",  # a truncated tag
        pid[: len(pid) // 2],  # a truncated id
        f"{head}.{seq}.{row}.c{'x' * 5000}.{tag}",  # an oversized value
        "x",
    ):
        response = client.post("/feedback", json={"ids": [bad], "targets": [label]})
        assert response.status_code == 400, (bad[:40], response.text)
        assert (
            "ids[0]: expects a prediction id as returned by /predict or infer"
            in (response.json()["error"])
        )
    # well-formed but not scorable: an id of a server before signed ids, a forged tag
    forged = f"{head}.{seq}.{row}.{value}.{'A' * len(tag)}"
    for unknown in ("0badc0de-1-0", forged):
        stale = client.post("/feedback", json={"ids": [unknown], "targets": [label]})
        assert stale.status_code == 200 and stale.json()["unknown"] == 1, stale.text
    good = client.post("/feedback", json={"ids": [pid], "targets": [label]})
    assert good.status_code == 200 and good.json()["accepted"] == 1


# --- every malformed request is a 4xx -----------------------------------------------------------

ODD_VALUES: list[Any] = [
    *(None, True, 0, -1, 1.5, 3.5e38, -1e300, 2**63, "", "x", "\u00b2", "a" * 5000),
    *([], [[]], {}, {"a": 1}, [None], [1, "a"], [[1, 2], [3]], [[[[[1]]]]]),
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value[:4]):
            yield from _paths(item, (*prefix, i))


def _mutated(body: Any, rng: np.random.Generator) -> Any:
    """``body`` with one to three of its parts replaced, dropped or extended."""
    import copy

    body = copy.deepcopy(body)
    paths = list(_paths(body))[1:]
    for _ in range(int(rng.integers(1, 4))):
        path = paths[int(rng.integers(len(paths)))]
        parent = body
        try:
            for key in path[:-1]:
                parent = parent[key]
            odd = copy.deepcopy(ODD_VALUES[int(rng.integers(len(ODD_VALUES)))])
            roll = rng.random()
            if roll < 0.7:
                parent[path[-1]] = odd
            elif isinstance(parent, dict):
                parent.pop(path[-1], None)
            elif isinstance(parent, list):
                parent.append(odd)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier change moved this part
    return body


@pytest.mark.parametrize("which", ["cancer", "mixed"])
def test_mutated_requests_are_never_a_5xx(which: str, cancer_run: Any, mixed_run: Any) -> None:
    """400 seeded mutations of valid bodies on every POST endpoint: each answer is a 200
    or a 4xx with an error message (a 5xx counts as a model error in canary analysis)."""
    run = cancer_run if which == "cancer" else mixed_run
    sample = run.metadata.sample.instances[:3]
    names = [f.name for f in run.metadata.features]
    columns = [[row[j] for row in sample] for j in range(len(names))]
    server = serve(run)
    try:
        with httpx.Client(base_url=server.url, timeout=deadline()) as client:
            served = client.post("/predict", json={"instances": sample}).json()
            infer = f"/v2/models/{run.metadata.run}/infer"
            datatype = "FP64" if which == "cancer" else "BYTES"
            valid = [
                ("/predict", {"instances": sample}),
                ("/predict", {"instances": [dict(zip(names, r, strict=True)) for r in sample]}),
                (
                    infer,
                    {
                        "id": "r",
                        "inputs": [
                            {"name": "x", "shape": [3, len(names)], "datatype": datatype}
                            | {"data": sample}
                        ],
                        "outputs": [{"name": "predict"}],
                    },
                ),
                (
                    infer,
                    {
                        "inputs": [
                            {"name": n, "shape": [3], "datatype": "BYTES", "data": c}
                            for n, c in zip(names, columns, strict=True)
                        ]
                    },
                ),
                ("/feedback", {"ids": served["ids"], "targets": served["predictions"]}),
                ("/feedback", {"instances": sample, "targets": served["predictions"]}),
            ]
            for path, body in valid:
                assert client.post(path, json=body).status_code == 200, (path, body)
            rng = np.random.default_rng(12)
            statuses: dict[int, int] = {}
            for _ in range(400):
                path, body = valid[int(rng.integers(len(valid)))]
                mutated = _mutated(body, rng)
                response = client.post(path, json=mutated)
                status = response.status_code
                statuses[status] = statuses.get(status, 0) + 1
                assert status < 500, (path, mutated, response.text)
                if status >= 400:
                    assert response.json()["error"], (path, mutated)
    finally:
        server.stop()
    assert statuses.get(400, 0) > 200  # the mutations did reach the validation
