"""Micro-benchmark of the per-request cost of prediction ids (in process, no HTTP).

``python -m bench.serving.ids_micro [--rounds N]`` trains a breast_cancer
LogisticRegression and a diabetes Ridge with our trainer, then times:

- a single-row ``POST /predict`` through the whole ASGI app (routing, JSON, predict, ids,
  response), median over rounds of the mean of 500 calls;
- ``Monitor.record`` alone (the ids of one request) for 1, 100 and 10,000 rows;
- ``POST /feedback`` of 100 ids.

Run it with PYTHONPATH pointing at another checkout to compare two versions of the server
(it uses only the app, the monitor and ``model.load``, which both have).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from sklearn.datasets import load_breast_cancer, load_diabetes

from perennial_runtime.contract import TrainConfig
from perennial_runtime.serve.app import ServingApp
from perennial_runtime.serve.config import ServeConfig
from perennial_runtime.serve.model import load
from perennial_runtime.training.trainer import train


def _train(root: Path, dataset: str, task: str, estimator: str) -> ServeConfig:
    raw: dict[str, Any] = {
        "runName": f"{dataset.replace('_', '-')}-1",
        "pipelineName": "bench",
        "namespace": "default",
        "data": {"uri": f"sklearn://{dataset}", "target": "target"},
        "model": {"task": task, "estimator": estimator, "params": {}},
        "evaluation": {"topFeatures": 5},
        "validation": {},
        "artifactUri": root.as_uri(),
    }
    result = train(TrainConfig.model_validate(raw))
    assert result.status == "Succeeded", result.message
    assert result.artifact is not None
    return ServeConfig(model_uri=result.artifact.model_uri, sha256=result.artifact.sha256)


async def _call(app: ServingApp, path: str, body: bytes) -> bytes:
    scope = {"type": "http", "method": "POST", "path": path, "headers": []}
    sent: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.append(message["body"])

    await app(scope, receive, send)
    return sent[0]


def _time(fn: Any, calls: int, rounds: int) -> float:
    """Median over ``rounds`` of the mean seconds per call."""
    means = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        means.append((time.perf_counter() - start) / calls)
    return statistics.median(means)


def measure(config: ServeConfig, rows: np.ndarray[Any, Any], rounds: int) -> dict[str, float]:
    served = load(config)
    app = ServingApp(config)
    app._ready(served)
    loop = asyncio.new_event_loop()
    one = orjson.dumps({"instances": rows[:1].tolist()})
    out: dict[str, float] = {}
    out["predict_1_row_us"] = 1e6 * _time(
        lambda: loop.run_until_complete(_call(app, "/predict", one)), 500, rounds
    )
    for n in (1, 100, 10_000):
        batch = served.schema.from_rows(np.resize(rows, (n, rows.shape[1])).tolist())
        prediction = served.predict(batch, False, "instances[{row}]")
        calls = max(1, 2000 // n)
        out[f"record_{n}_rows_us"] = 1e6 * _time(
            lambda b=batch, p=prediction: app.monitor.record(b, p), calls, rounds
        )
        app.monitor._pending.clear()
        app.monitor._pending_rows = 0
    answer = json.loads(
        loop.run_until_complete(
            _call(app, "/predict", orjson.dumps({"instances": rows[:100].tolist()}))
        )
    )
    feedback = orjson.dumps({"ids": answer["ids"], "targets": answer["predictions"]})
    out["feedback_100_ids_us"] = 1e6 * _time(
        lambda: loop.run_until_complete(_call(app, "/feedback", feedback)), 20, rounds
    )
    loop.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serving.ids_micro")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cases = {
            "LogisticRegression": (
                _train(root, "breast_cancer", "classification", "LogisticRegression"),
                load_breast_cancer().data,
            ),
            "Ridge": (_train(root, "diabetes", "regression", "Ridge"), load_diabetes().data),
        }
        for name, (config, rows) in cases.items():
            figures = measure(config, rows, args.rounds)
            print(name, " ".join(f"{k}={v:.1f}" for k, v in figures.items()), flush=True)


if __name__ == "__main__":
    main()
