"""The trainer's compiled-inference step: export to ONNX, check parity, record the outcome.

Best effort by design: whatever goes wrong (no converter for a component, onnxruntime
cannot run the result, parity outside the tolerance, an unexpected exception) leaves
``model.skops`` as the only model and records why in ``metadata.json``, the model card
and the TrainResult. It never fails a run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from perennial_runtime.compiled.onnx_layout import (
    ARGMAX_CLASSIFIERS,
    MISSING_LABEL,
    input_columns,
    label_names,
    numeric_names,
)
from perennial_runtime.compiled.parity import measure, verdict
from perennial_runtime.contract import ColumnSchema, OnnxConfig, OnnxExport

log = logging.getLogger("perennial_runtime.training.trainer")

MAX_REASON = 300


@dataclass(frozen=True)
class CompiledOutcome:
    data: bytes | None  # model.onnx, when accepted
    report: OnnxExport


def compile_checked(
    pipeline: Any,
    features: Sequence[ColumnSchema],
    classifier: bool,
    x_holdout: pd.DataFrame,
    config: OnnxConfig,
) -> CompiledOutcome:
    """``model.onnx`` for ``pipeline`` if onnxruntime reproduces it on the holdout."""
    started = time.monotonic()
    if not config.enabled:
        return _skipped("disabled (onnx.enabled is false)", config, started)
    try:
        return _compile(
            pipeline,
            features=features,
            classifier=classifier,
            x_holdout=x_holdout,
            config=config,
            started=started,
        )
    except Exception as exc:  # best effort: never fails the run
        log.warning("ONNX export failed unexpectedly", exc_info=True)
        return _skipped(f"unexpected error: {type(exc).__name__}: {exc}", config, started)


def _compile(
    pipeline: Any,
    *,
    features: Sequence[ColumnSchema],
    classifier: bool,
    x_holdout: pd.DataFrame,
    config: OnnxConfig,
    started: float,
) -> CompiledOutcome:
    from perennial_runtime.compiled.onnx_export import (
        ExportUnsupportedError,
        export,
        precisions_for,
    )
    from perennial_runtime.compiled.onnx_model import OnnxModel, OnnxModelError, blocks

    numeric, labels = numeric_names(features), label_names(features)
    x_numeric, x_labels = blocks(x_holdout, numeric, labels)
    if classifier and not hasattr(pipeline, "predict_proba"):
        return _skipped(
            "the classifier has no predict_proba (the server needs probabilities)",
            config,
            started,
        )
    want_values = np.asarray(pipeline.predict(x_holdout))
    want_proba = np.asarray(pipeline.predict_proba(x_holdout)) if classifier else None
    problems: list[str] = []
    for precision in precisions_for(pipeline[-1]):
        try:
            data = export(pipeline, features, precision)
            model = OnnxModel(
                data, len(numeric), len(labels), classifier, argmax_classes_of(pipeline[-1])
            )
        except (ExportUnsupportedError, OnnxModelError) as exc:
            problems.append(f"{exc} ({precision} estimator inputs)")
            continue
        got_values, got_proba = model.predict(x_numeric, x_labels, classifier)
        parity = measure(classifier, want_values, got_values, want_proba, got_proba)
        problem = verdict(parity, config)
        if problem is None:
            reason = (
                f"onnxruntime reproduces scikit-learn on the {parity.rows} holdout rows "
                f"({precision} estimator inputs)"
            )
            log.info("model.onnx accepted: %s", reason)
            return CompiledOutcome(
                data,
                OnnxExport(
                    exported=True,
                    reason=reason,
                    parity=parity,
                    seconds=round(time.monotonic() - started, 3),
                    inputs=input_columns(features),
                    missing_label=MISSING_LABEL if labels else None,
                    tolerance=config,
                ),
            )
        outcome = _skipped(f"parity check failed on the holdout: {problem}", config, started)
        outcome.report.parity = parity
        return outcome
    return _skipped("; ".join(problems) or "no export attempted", config, started)


def argmax_classes_of(estimator: Any) -> Any:
    """The fitted classes when the estimator's labels are taken from its probabilities."""
    if type(estimator).__name__ in ARGMAX_CLASSIFIERS:
        return np.asarray(estimator.classes_)
    return None


def _skipped(reason: str, config: OnnxConfig, started: float) -> CompiledOutcome:
    if len(reason) > MAX_REASON:
        reason = reason[: MAX_REASON - 3] + "..."
    log.info("no model.onnx: %s", reason)
    return CompiledOutcome(
        None,
        OnnxExport(
            exported=False,
            reason=reason,
            seconds=round(time.monotonic() - started, 3),
            tolerance=config,
        ),
    )


def result_summary(report: OnnxExport) -> OnnxExport:
    """What the TrainResult carries: no input layout, no tolerance (metadata.json has them)."""
    return report.model_copy(update={"inputs": None, "missing_label": None, "tolerance": None})
