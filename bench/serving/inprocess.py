"""Per-call cost of each predictor, in process: ``python -m bench.serving.inprocess RUN...``.

For every run folder: the scikit-learn pipeline, the numpy fast path and onnxruntime,
each predicting the same single row (labels and probabilities), timed in rounds; the
median round is reported in microseconds per call, as JSON on stdout. The caller pins
this process to one core.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROUNDS = 7
BUDGET_SECONDS = 0.3  # per round and predictor


def per_call_us(call: Callable[[], Any]) -> float:
    for _ in range(20):
        call()
    rounds = []
    for _ in range(ROUNDS):
        n, started = 0, time.perf_counter()
        while True:  # bounded by time and count
            call()
            n += 1
            elapsed = time.perf_counter() - started
            if elapsed > BUDGET_SECONDS or n >= 100_000:
                break
        rounds.append(elapsed / n * 1e6)
    return statistics.median(rounds)


def measure(run_dir: Path) -> dict[str, float]:
    import numpy as np

    from perennial_runtime import artifacts
    from perennial_runtime.compiled.onnx_layout import ARGMAX_CLASSIFIERS
    from perennial_runtime.compiled.onnx_model import OnnxModel
    from perennial_runtime.serve.fastpath import compile_pipeline
    from perennial_runtime.serve.predictors import PipelinePredictor
    from perennial_runtime.serve.schema import FeatureSchema

    meta = artifacts.read_metadata(str(run_dir))
    model = artifacts.load_model(
        artifacts.fetch_verified(str(run_dir / "model.skops"), meta.model.sha256)
    )
    schema = FeatureSchema(meta.features)
    batch = schema.from_rows(meta.sample.instances[:1])
    out: dict[str, float] = {}
    pipeline = PipelinePredictor(model, schema)
    out["sklearn pipeline"] = per_call_us(lambda: pipeline.predict(batch, True))
    fast = compile_pipeline(model, schema)
    label = "numpy fast path" if fast.linear else "numpy preprocessing + sklearn estimator"
    out[label] = per_call_us(lambda: fast.predict(batch, True))
    if meta.onnx is not None:
        argmax = np.asarray(model.classes_) if meta.estimator in ARGMAX_CLASSIFIERS else None
        onnx = OnnxModel((run_dir / "model.onnx").read_bytes(), schema.width, 0, True, argmax)
        out["onnxruntime"] = per_call_us(lambda: onnx.predict(batch.numeric, batch.labels, True))
    return out


def main(argv: list[str]) -> int:
    warnings.simplefilter("ignore")
    print(json.dumps({Path(a).name: measure(Path(a)) for a in argv}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
