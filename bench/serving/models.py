"""The benchmark's models, trained by our trainer, and MLServer's copy of each.

Both models are trained on breast_cancer (30 numeric features) by ``perennial_runtime``
itself: a LogisticRegression and a 100-tree RandomForestClassifier, each behind the
trainer's preprocessing (median imputation + standard scaling). Our server loads the
run folder (``model.skops`` and, when exported, ``model.onnx``).

MLServer's scikit-learn runtime loads a joblib/pickle file and passes a V2 tensor to
``predict`` as a numpy array, so the benchmark writes ``model.joblib`` **for MLServer
only**, from the same fitted pipeline read back from ``model.skops``: the preprocessing
selects its columns by position instead of by name (the same columns, in the same order)
and forgets the training frame's column names (else scikit-learn warns on every call).
Every fitted number is shared; the script checks that both servers return the same
labels for the benchmark's requests before it measures anything.
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "LR": ("LogisticRegression", {"max_iter": 1000}),
    "RF": ("RandomForestClassifier", {"n_estimators": 100}),
}


@dataclass(frozen=True)
class BenchModel:
    key: str  # "LR" / "RF"
    estimator: str
    run_dir: Path
    model_uri: str
    sha256: str
    onnx_exported: bool
    onnx_reason: str
    mlserver_dir: Path


def train_all(root: Path) -> list[BenchModel]:
    from perennial_runtime.contract import TrainConfig
    from perennial_runtime.training.trainer import train

    out = []
    for key, (estimator, params) in MODELS.items():
        config = TrainConfig.model_validate(
            {
                "runName": f"bench-{key.lower()}",
                "data": {"uri": "sklearn://breast_cancer", "target": "target"},
                "model": {"task": "classification", "estimator": estimator, "params": params},
                "evaluation": {"topFeatures": 0},
                "artifactUri": (root / "runs").as_uri(),
                "resultPath": str(root / f"result-{key.lower()}.json"),
            }
        )
        result = train(config)
        if result.status != "Succeeded" or result.artifact is None:
            raise SystemExit(f"training {estimator} failed: {result.reason}: {result.message}")
        report = result.onnx_export
        run_dir = root / "runs" / config.run_name
        mlserver_dir = root / "mlserver-models" / key.lower()
        _export_for_mlserver(run_dir, result.artifact.sha256, key.lower(), mlserver_dir)
        out.append(
            BenchModel(
                key=key,
                estimator=estimator,
                run_dir=run_dir,
                model_uri=result.artifact.model_uri,
                sha256=result.artifact.sha256,
                onnx_exported=bool(report and report.exported),
                onnx_reason=report.reason if report else "",
                mlserver_dir=mlserver_dir,
            )
        )
    return out


def _export_for_mlserver(run_dir: Path, sha256: str, name: str, target: Path) -> None:
    import joblib  # type: ignore[import-untyped]
    import numpy as np
    from sklearn.pipeline import Pipeline

    from perennial_runtime import artifacts

    pipeline = artifacts.load_model(artifacts.fetch_verified(str(run_dir / "model.skops"), sha256))
    meta = artifacts.read_metadata(str(run_dir))
    pre, estimator = pipeline.steps[0][1], pipeline.steps[1][1]
    names = [f.name for f in meta.features]
    positioned = copy.copy(pre)
    positioned.transformers_ = [
        (label, transformer, [names.index(c) for c in columns] if label != "remainder" else columns)
        for label, transformer, columns in pre.transformers_
    ]
    for fitted in _fitted_parts(positioned):  # this copy was loaded for MLServer alone
        if "feature_names_in_" in vars(fitted):  # Pipeline only forwards its first step's
            del fitted.feature_names_in_
    copy_for_mlserver = Pipeline([("preprocess", positioned), ("model", estimator)])

    rows = np.asarray(meta.sample.instances, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no per-call warning may remain
        again = copy_for_mlserver.predict(rows).tolist()
    if again != meta.sample.predictions:
        raise SystemExit(f"the MLServer copy of {run_dir.name} does not reproduce its sample")
    target.mkdir(parents=True, exist_ok=True)
    joblib.dump(copy_for_mlserver, target / "model.joblib")
    settings = {
        "name": name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "v1"},
    }
    (target / "model-settings.json").write_text(json.dumps(settings))


def _fitted_parts(transformer: Any) -> list[Any]:
    """The transformer and every fitted step inside it (column branches, pipelines)."""
    parts = [transformer]
    for _, inner, _ in getattr(transformer, "transformers_", []):
        if not isinstance(inner, str):
            parts += _fitted_parts(inner)
    for _, step in getattr(transformer, "steps", []):
        parts += _fitted_parts(step)
    return parts


def request_body(run_dir: Path, rows: int) -> bytes:
    """V2 infer: one FP64 tensor [rows, 30] (holdout sample rows, repeated), predict only."""
    from perennial_runtime import artifacts

    sample = artifacts.read_metadata(str(run_dir)).sample.instances
    data = [sample[i % len(sample)] for i in range(rows)]
    return json.dumps(
        {
            "inputs": [
                {"name": "input-0", "shape": [rows, len(data[0])], "datatype": "FP64", "data": data}
            ],
            "outputs": [{"name": "predict"}],
        }
    ).encode()


def labels_of(answer: bytes) -> list[Any]:
    """The ``predict`` output of a V2 response (MLServer nests it as [rows, 1])."""
    doc = json.loads(answer)
    for output in doc["outputs"]:
        if output["name"] == "predict":
            data: list[Any] = output["data"]
            return data
    raise ValueError(f"no predict output in {doc}")
