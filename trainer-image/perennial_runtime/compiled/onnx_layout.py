"""How ``model.onnx`` takes its input: two tensors, grouped by feature type.

- ``numeric``: float64 ``[rows, n]``, the numeric and integer features in schema order,
  NaN for a missing value;
- ``labels``: string ``[rows, m]``, the categorical and boolean features in schema order
  (the labels ``preprocessing.coerce_features`` produces), :data:`MISSING_LABEL` for a
  missing value (an ONNX string tensor has no null).

A tensor is left out when the model has no feature of its kind. One tensor per feature
would be the more literal layout, but onnxruntime charges about a microsecond per input
per call (30 inputs: ~35 us per single-row call instead of ~9 us; docs/serving.md), and
the server already holds a request as exactly these two blocks (``serve.schema.Batch``).

Light on purpose (numpy only): the trainer, the server and the tests share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from perennial_runtime.training.preprocessing import NUMERIC_TYPES, ColumnSpec

NUMERIC_INPUT = "numeric"
LABEL_INPUT = "labels"
# Stands for a missing label in the string tensor; a NUL character never occurs in a label
# read from CSV or Parquet, and the converter maps it to the imputer's fill value.
MISSING_LABEL = "\x00"
# The trainer stores model.onnx's sha256 as this attribute of the fitted pipeline inside
# model.skops, so the one sha256 the server is given (of model.skops) pins both files.
EMBEDDED_SHA256_ATTRIBUTE = "perennial_onnx_sha256_"
# Classifiers whose scikit-learn ``predict`` is the argmax of ``predict_proba`` (the first
# class on an exact tie). onnxruntime sums their float32 leaf values, so a tie (10 of 20
# trees each way) comes out a few 1e-8 to one side: their labels are taken from the
# probabilities instead, differences up to LABEL_TIE counting as ties.
ARGMAX_CLASSIFIERS = frozenset(
    {"RandomForestClassifier", "ExtraTreesClassifier", "DecisionTreeClassifier"}
)
LABEL_TIE = 1e-5


def numeric_names(features: Sequence[ColumnSpec]) -> list[str]:
    return [f.name for f in features if f.type in NUMERIC_TYPES]


def label_names(features: Sequence[ColumnSpec]) -> list[str]:
    return [f.name for f in features if f.type not in NUMERIC_TYPES]


def input_columns(features: Sequence[ColumnSpec]) -> dict[str, list[str]]:
    """Input tensor name -> the features in its columns (only non-empty tensors)."""
    out: dict[str, list[str]] = {}
    numeric = numeric_names(features)
    labels = label_names(features)
    if numeric:
        out[NUMERIC_INPUT] = numeric
    if labels:
        out[LABEL_INPUT] = labels
    return out


def label_block(labels: npt.NDArray[Any]) -> npt.NDArray[np.object_]:
    """Labels (``str``; ``None`` or NaN when missing) as the ``labels`` tensor."""
    out = np.empty(labels.shape, dtype=object)
    flat_in = labels.reshape(-1)
    flat_out = out.reshape(-1)
    for i, value in enumerate(flat_in.tolist()):
        flat_out[i] = value if type(value) is str else MISSING_LABEL
    return out
