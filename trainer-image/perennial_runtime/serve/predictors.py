"""Predictors: the fitted scikit-learn pipeline, or its ONNX export run by onnxruntime.

:class:`OnnxPredictor` is the fast one: a single-row call costs ~10 us (a 100-tree
forest included) against 2-20 ms for the pipeline, which validates feature names, dtypes
and array namespaces on every call (docs/serving.md, "Performance"). It is used only
after :func:`disagreement` found it equal to the pipeline, within the tolerance the
trainer recorded, on the model's sample rows plus synthetic rows drawn around the
reference statistics (:func:`probe_batch`: bin edges, midpoints, out of range, missing
values, unseen categories). :class:`PipelinePredictor` is the reference and the
fallback.
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from perennial_runtime.contract import FeatureReference, OnnxConfig
from perennial_runtime.onnx_model import OnnxModel
from perennial_runtime.parity import measure, verdict
from perennial_runtime.serve.schema import Batch, FeatureSchema, FloatMatrix

AnyArray = npt.NDArray[Any]
ONNXRUNTIME = "onnxruntime"
SKLEARN = "sklearn"
# An unseen category for the probes (never a training label).
_UNSEEN = "perennial-unseen-category"


class NotFiniteError(Exception):
    """The preprocessed rows ``rows`` hold NaN or infinity (an input beyond what the
    preprocessing can represent); scikit-learn estimators would raise a ValueError."""

    def __init__(self, rows: AnyArray) -> None:
        super().__init__(f"{len(rows)} rows are not finite after preprocessing")
        self.rows = rows


def check_finite(x: Any) -> None:
    """:class:`NotFiniteError` when the dense float matrix ``x`` holds NaN or infinity."""
    if isinstance(x, np.ndarray) and x.dtype.kind == "f" and not np.isfinite(x).all():
        finite = np.isfinite(x)
        raise NotFiniteError(np.flatnonzero(~finite.all(axis=1) if x.ndim == 2 else ~finite))


class Predictor(Protocol):
    kind: str  # ONNXRUNTIME or SKLEARN

    def predict(self, batch: Batch, proba: bool) -> tuple[AnyArray, FloatMatrix | None]:
        """Predictions ``(rows,)`` and, for classifiers when asked, probabilities."""
        ...


class PipelinePredictor:
    """Calls the fitted model on the DataFrame the trainer would have built.

    For a Pipeline, the preprocessing runs once and the final estimator's ``predict`` and
    ``predict_proba`` share its output.
    """

    kind = SKLEARN

    def __init__(self, model: Any, schema: FeatureSchema) -> None:
        self.model = model
        self.schema = schema
        steps = getattr(model, "steps", None)
        if steps is not None and len(steps) > 1:
            self._pre: Any = model[:-1]
            self._final: Any = model[-1]
        else:
            self._pre = None
            self._final = model

    def predict(self, batch: Batch, proba: bool) -> tuple[AnyArray, FloatMatrix | None]:
        x = self.schema.to_frame(batch)
        if self._pre is not None:
            x = self._pre.transform(x)
            check_finite(x)
        values = np.asarray(self._final.predict(x))
        probabilities = np.asarray(self._final.predict_proba(x)) if proba else None
        return values, probabilities


class OnnxPredictor:
    """``model.onnx`` on onnxruntime, fed the batch's numeric and label blocks as they are."""

    kind = ONNXRUNTIME

    def __init__(self, model: OnnxModel) -> None:
        self.model = model

    def predict(self, batch: Batch, proba: bool) -> tuple[AnyArray, FloatMatrix | None]:
        return self.model.predict(batch.numeric, batch.labels, proba)


def disagreement(
    candidate: Predictor,
    reference: Predictor,
    batch: Batch,
    classifier: bool,
    tolerance: OnnxConfig,
) -> str | None:
    """None when ``candidate`` reproduces ``reference`` on ``batch``, else how it differs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want_values, want_proba = reference.predict(batch, classifier)
        got_values, got_proba = candidate.predict(batch, classifier)
    return verdict(measure(classifier, want_values, got_values, want_proba, got_proba), tolerance)


def probe_batch(
    schema: FeatureSchema,
    references: dict[str, FeatureReference],
    sample: Batch | None,
    rows: int = 256,
    seed: int = 0,
) -> Batch:
    """Synthetic rows around the reference bins (edges, midpoints, beyond, missing, unseen)."""
    rng = np.random.default_rng(seed)
    numeric, labels = schema.empty(rows)
    for j, name in enumerate(schema.numeric_names):
        candidates = _numeric_candidates(references.get(name), sample, j)
        if schema.slot_of[name].nullable:
            candidates.append(np.nan)
        numeric[:, j] = rng.choice(np.asarray(candidates, dtype=np.float64), size=rows)
    for j, name in enumerate(schema.label_names):
        pool: list[str | None] = [_UNSEEN]
        ref = references.get(name)
        if ref is not None:
            pool += list(ref.categories)
        if sample is not None:
            pool += [v for v in sample.labels[:, j] if v is not None]
        if schema.slot_of[name].nullable:
            pool.append(None)
        picks = rng.integers(0, len(pool), size=rows)
        labels[:, j] = [pool[k] for k in picks]
    return Batch(rows, numeric, labels)


def _numeric_candidates(ref: FeatureReference | None, sample: Batch | None, j: int) -> list[float]:
    values: list[float] = []
    if ref is not None and ref.edges:
        edges = np.asarray(ref.edges, dtype=np.float64)
        span = float(edges[-1] - edges[0]) or 1.0
        values += list(edges)
        values += list((edges[1:] + edges[:-1]) / 2)
        values += [float(edges[0] - span), float(edges[-1] + span)]
    if sample is not None:
        column = sample.numeric[:, j]
        values += [float(v) for v in column if not np.isnan(v)]
    return values or [0.0, 1.0, -1.0]
