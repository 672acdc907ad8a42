"""An exported model run by onnxruntime: one session, the ``onnx_layout`` inputs.

Used by the trainer (parity on the holdout, read-back) and by the server (its
``onnxruntime`` backend). The session runs on the calling thread only
(``intra_op_num_threads=1``, sequential execution): the server scales with one worker
process per core, and single-row calls gain nothing from a thread pool but its wake-up
cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from perennial_runtime.compiled.onnx_layout import (
    LABEL_INPUT,
    LABEL_TIE,
    NUMERIC_INPUT,
    label_block,
)

AnyArray = npt.NDArray[Any]
FloatMatrix = npt.NDArray[np.float64]


class OnnxModelError(Exception):
    """onnxruntime cannot run the file, or its inputs/outputs are not the expected ones."""


def session_options() -> Any:
    import onnxruntime as ort  # type: ignore[import-untyped]

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: no per-session warnings in the log
    return options


class OnnxModel:
    """``predict(numeric, labels, proba) -> (values, probabilities | None)``.

    ``numeric``: float64 ``(rows, n_numeric)``, NaN missing; ``labels``: object
    ``(rows, n_labels)``, ``str`` or ``None``/NaN missing. Labels come back as the label
    output's array (classes as the classifier stores them) or, with ``argmax_classes``
    (the fitted ``classes_`` of an ``onnx_layout.ARGMAX_CLASSIFIERS`` estimator), as the
    first class whose probability is within ``LABEL_TIE`` of the largest; regression
    values as float64 ``(rows,)``; probabilities as float64 ``(rows, n_classes)``.
    """

    def __init__(
        self,
        data: bytes,
        n_numeric: int,
        n_labels: int,
        classifier: bool,
        argmax_classes: AnyArray | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise OnnxModelError(f"onnxruntime is not installed ({exc})") from exc
        try:
            self.session = ort.InferenceSession(
                data, session_options(), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise OnnxModelError(
                f"onnxruntime cannot load the model: {type(exc).__name__}: {exc}"
            ) from exc
        inputs = {i.name: i for i in self.session.get_inputs()}
        want: dict[str, tuple[str, int]] = {}
        if n_numeric:
            want[NUMERIC_INPUT] = ("tensor(double)", n_numeric)
        if n_labels:
            want[LABEL_INPUT] = ("tensor(string)", n_labels)
        got = {
            name: (i.type, i.shape[1] if len(i.shape) == 2 else None) for name, i in inputs.items()
        }
        if got != want:
            raise OnnxModelError(f"the model's inputs are {got}, expected {want}")
        self.has_numeric = bool(n_numeric)
        self.has_labels = bool(n_labels)
        outputs = [o.name for o in self.session.get_outputs()]
        self.classifier = classifier
        if classifier and len(outputs) < 2:
            raise OnnxModelError(f"a classifier needs label and probability outputs, got {outputs}")
        self._label_only = outputs[:1]
        self._all = outputs[:2] if classifier else outputs[:1]
        self._argmax_classes = argmax_classes if classifier else None

    def feed(self, numeric: FloatMatrix, labels: AnyArray) -> dict[str, AnyArray]:
        feed: dict[str, AnyArray] = {}
        if self.has_numeric:
            feed[NUMERIC_INPUT] = np.ascontiguousarray(numeric, dtype=np.float64)
        if self.has_labels:
            feed[LABEL_INPUT] = label_block(labels)
        return feed

    def predict(
        self, numeric: FloatMatrix, labels: AnyArray, proba: bool
    ) -> tuple[AnyArray, FloatMatrix | None]:
        feed = self.feed(numeric, labels)
        if not self.classifier:
            (values,) = self.session.run(self._label_only, feed)
            return np.asarray(values, dtype=np.float64).reshape(-1), None
        if self._argmax_classes is not None:
            probabilities = np.asarray(self.session.run(self._all, feed)[1], dtype=np.float64)
            top = probabilities.max(axis=1, keepdims=True)
            first = np.argmax(probabilities >= top - LABEL_TIE, axis=1)
            return self._argmax_classes.take(first), (probabilities if proba else None)
        if not proba:
            (labels_out,) = self.session.run(self._label_only, feed)
            return labels_out, None
        labels_out, probabilities = self.session.run(self._all, feed)
        return labels_out, np.asarray(probabilities, dtype=np.float64)


def blocks(frame: Any, names: Sequence[str], label_names: Sequence[str]) -> tuple[Any, Any]:
    """The ``numeric`` and ``labels`` blocks of a coerced DataFrame (trainer side)."""
    rows = len(frame)
    numeric = (
        frame[list(names)].to_numpy(dtype=np.float64)
        if names
        else np.empty((rows, 0), dtype=np.float64)
    )
    labels = (
        frame[list(label_names)].to_numpy(dtype=object)
        if label_names
        else np.empty((rows, 0), dtype=object)
    )
    return numeric, labels
