"""Does a compiled model reproduce the pipeline? Pure comparison, no I/O.

The trainer uses it on the holdout before it accepts ``model.onnx``; the server uses it
again at start-up (sample rows plus synthetic rows) before it serves through
onnxruntime. Figures (``contract.OnnxParity``):

- ``label_mismatches``: rows whose label differs (classification);
- ``max_abs_diff``: the largest absolute difference of a probability (classification)
  or of a predicted value (regression);
- ``max_rel_diff`` (regression): the largest ``|diff| / max(1, |value|)``: relative for
  large values, absolute near zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from perennial_runtime.contract import OnnxConfig, OnnxParity

AnyArray = npt.NDArray[Any]


def measure(
    classifier: bool,
    want_values: AnyArray,
    got_values: AnyArray,
    want_proba: AnyArray | None = None,
    got_proba: AnyArray | None = None,
) -> OnnxParity:
    """The parity figures of ``got`` (compiled) against ``want`` (scikit-learn)."""
    want = np.asarray(want_values).reshape(-1)
    got = np.asarray(got_values).reshape(-1)
    if want.shape != got.shape:
        raise ValueError(f"{got.shape[0]} predictions for {want.shape[0]} rows")
    rows = int(want.shape[0])
    if classifier:
        mismatches = int(sum(1 for a, b in zip(want.tolist(), got.tolist(), strict=True) if a != b))
        diff: float | None = None
        if want_proba is not None and got_proba is not None:
            a = np.asarray(want_proba, dtype=np.float64)
            b = np.asarray(got_proba, dtype=np.float64)
            if a.shape != b.shape:
                raise ValueError(f"probabilities of shape {b.shape}, expected {a.shape}")
            diff = _max(np.abs(a - b))
        return OnnxParity(rows=rows, label_mismatches=mismatches, max_abs_diff=diff)
    a = want.astype(np.float64)
    b = got.astype(np.float64)
    absolute = np.abs(a - b)
    relative = absolute / np.maximum(1.0, np.abs(a))
    return OnnxParity(rows=rows, max_abs_diff=_max(absolute), max_rel_diff=_max(relative))


def _max(values: AnyArray) -> float:
    if values.size == 0:
        return 0.0
    if np.isnan(values).any():
        return float("inf")  # NaN on one side only: as far apart as it gets
    return float(values.max())


def verdict(parity: OnnxParity, tolerance: OnnxConfig) -> str | None:
    """None when ``parity`` is within ``tolerance``, else why not (a sentence)."""
    if parity.rows == 0:
        return "no rows to compare"
    if parity.label_mismatches is not None:
        allowed = tolerance.label_mismatch_fraction * parity.rows
        if parity.label_mismatches > allowed:
            return (
                f"{parity.label_mismatches} of {parity.rows} labels differ from scikit-learn's "
                f"(tolerance: {tolerance.label_mismatch_fraction:g} of the rows)"
            )
        if parity.max_abs_diff is not None and not (
            parity.max_abs_diff <= tolerance.probability_abs_diff
        ):
            return (
                f"probabilities differ by up to {parity.max_abs_diff:.3g} "
                f"(tolerance {tolerance.probability_abs_diff:g})"
            )
        return None
    if parity.max_rel_diff is not None and not (parity.max_rel_diff <= tolerance.value_rel_diff):
        return (
            f"predicted values differ by up to {parity.max_abs_diff:.3g} "
            f"({parity.max_rel_diff:.3g} relative; tolerance {tolerance.value_rel_diff:g})"
        )
    return None
