"""Request values -> typed feature columns, validated against ``metadata.features``.

A :class:`Batch` holds what the model sees, already in the representation the trainer
gives its pipeline (``preprocessing.coerce_features``): numeric and integer features as
float64 (NaN when missing), categorical and boolean features as string labels (``None``
when missing; booleans as ``"true"``/``"false"``).

Unlike the trainer, which coerces unparseable values to missing, the server refuses them:
a string where a number is expected, a missing or unknown feature, a row of the wrong
length or a null in a non-nullable feature is a 4xx naming the row and the feature.

All-numeric rows sent as lists take a vectorised path (one ``np.array`` call); anything
else is checked value by value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from perennial_runtime.contract import ColumnType, FeatureInfo, FeatureReference
from perennial_runtime.preprocessing import boolean_label, category_label
from perennial_runtime.serve.errors import RequestError, describe, names_hint

NUMERIC_KINDS = frozenset({ColumnType.NUMERIC, ColumnType.INTEGER})
_NUMBER_KINDS = frozenset("fiub")  # numpy dtype kinds a numeric feature accepts

# The largest magnitude a numeric input may have: the single-precision range. Tree
# estimators (scikit-learn casts their input to float32) and ONNX models compute in
# float32, where a larger value is infinity; refusing it for every model keeps a row's
# answer the same whatever the backend, and keeps 1e308 from overflowing a scaler.
MAX_ABS_INPUT = float(np.finfo(np.float32).max)

FloatMatrix = npt.NDArray[np.float64]
ObjectMatrix = npt.NDArray[np.object_]


class BadValueError(Exception):
    """One value does not fit its feature; the caller adds where it was."""


@dataclass(slots=True)  # created per request: no frozen-init cost
class Batch:
    """Validated rows: numeric features as one float matrix, the others as labels."""

    rows: int
    numeric: FloatMatrix  # (rows, len(schema.numeric_names)), NaN = missing
    labels: ObjectMatrix  # (rows, len(schema.label_names)), str or None = missing


def _number(value: Any, nullable: bool) -> float:
    kind = type(value)
    if kind is float or kind is int or kind is bool:
        try:
            return float(value)
        except OverflowError:
            raise BadValueError(f"is out of range: {value!r}") from None
    if value is None:
        if nullable:
            return math.nan
        raise BadValueError("must not be null (the feature is not nullable)")
    raise BadValueError(f"expects a number, got {describe(value)}")


def _label(value: Any, nullable: bool) -> str | None:
    if type(value) is str:
        return value
    if value is None:
        if nullable:
            return None
        raise BadValueError("must not be null (the feature is not nullable)")
    if isinstance(value, int | float):
        return category_label(value)
    raise BadValueError(f"expects a category label (a string), got {describe(value)}")


def _boolean(value: Any, nullable: bool) -> str | None:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        if nullable:
            return None
        raise BadValueError("must not be null (the feature is not nullable)")
    if isinstance(value, int | float | str):
        label = boolean_label(value)
        if label in ("true", "false"):
            return label
    raise BadValueError(f"expects a boolean (true/false), got {describe(value)}")


@dataclass(frozen=True)
class _Slot:
    """Where one feature goes: its converter and its column in the numeric/label block."""

    name: str
    numeric: bool
    column: int
    convert: Callable[[Any, bool], Any]
    nullable: bool


class FeatureSchema:
    """The model's features (``metadata.features``, in order) and how to read them."""

    def __init__(self, features: Sequence[FeatureInfo], max_rows: int = 10_000) -> None:
        if not features:
            raise ValueError("metadata.features is empty: the model has no input features")
        self.features = tuple(features)
        self.names = tuple(f.name for f in features)
        self.position = {name: i for i, name in enumerate(self.names)}
        self.numeric_names = tuple(f.name for f in features if f.type in NUMERIC_KINDS)
        self.label_names = tuple(f.name for f in features if f.type not in NUMERIC_KINDS)
        self.all_numeric = not self.label_names
        self.max_rows = max_rows
        slots: list[_Slot] = []
        n_num = n_lab = 0
        for f in features:
            if f.type in NUMERIC_KINDS:
                slots.append(_Slot(f.name, True, n_num, _number, f.nullable))
                n_num += 1
            else:
                convert = _boolean if f.type is ColumnType.BOOLEAN else _label
                slots.append(_Slot(f.name, False, n_lab, convert, f.nullable))
                n_lab += 1
        self._slots = tuple(slots)
        self.slot_of = {s.name: s for s in slots}

    @property
    def width(self) -> int:
        return len(self.names)

    def hint(self) -> str:
        return names_hint(self.names)

    def empty(self, rows: int) -> tuple[FloatMatrix, ObjectMatrix]:
        numeric = np.empty((rows, len(self.numeric_names)), dtype=np.float64)
        labels = np.empty((rows, len(self.label_names)), dtype=object)
        return numeric, labels

    def check_rows(self, rows: int, where: str) -> None:
        if rows == 0:
            raise RequestError(f"{where} is empty; send at least one row")
        if rows > self.max_rows:
            raise RequestError(
                f"{where} has {rows} rows, more than the limit of {self.max_rows} per request "
                "(--max-rows); split the batch",
                status=413,
            )

    def check_range(self, batch: Batch, rows: str = "row {row}") -> None:
        """422 naming the row and feature of a value beyond :data:`MAX_ABS_INPUT`.

        ``rows`` names a row for the message (``"instances[{row}]"``). Missing values
        (NaN) are fine: the model imputes them.
        """
        x = batch.numeric
        if x.size == 0:
            return
        # one reduction on the hot path: a sum of magnitudes within the range bounds each
        # of them; NaN (a missing value) or a large sum takes the exact check
        if float(np.add.reduce(np.abs(x), axis=None)) <= MAX_ABS_INPUT:
            return
        peak = np.fmax.reduce(np.abs(x), axis=None)  # fmax: NaN (missing) is skipped
        if not peak > MAX_ABS_INPUT:
            return
        over = np.abs(x) > MAX_ABS_INPUT
        i, j = (int(v) for v in np.argwhere(over)[0])
        count = int(over.sum())
        more = f"; {count} values in this request are beyond it" if count > 1 else ""
        raise RequestError(
            f"{rows.format(row=i)}: feature {self.numeric_names[j]!r} is {float(x[i, j])!r}, "
            f"beyond the largest magnitude the server accepts, {MAX_ABS_INPUT:.4g} (the "
            f"single-precision range tree and ONNX models compute in){more}",
            status=422,
        )

    def farthest_out(
        self, batch: Batch, row: int, references: Mapping[str, FeatureReference]
    ) -> str:
        """The row's numeric value farthest outside its training range, as a phrase.

        The range is the feature's recorded min/max, else the span of its reference bin
        edges (``metadata.reference``, for drift); "" when every value is inside.
        """
        worst: tuple[float, str] | None = None
        for j, name in enumerate(self.numeric_names):
            info = self.features[self.position[name]]
            ref = references.get(name)
            if info.min is not None and info.max is not None:
                low, high, seen = info.min, info.max, "trained on"
            elif ref is not None and ref.edges:
                low, high, seen = ref.edges[0], ref.edges[-1], "training bins span"
            else:
                continue
            value = float(batch.numeric[row, j])
            span = max(high - low, 1e-12)
            distance = max(low - value, value - high, 0.0) / span
            if distance > 0 and (worst is None or distance > worst[0]):
                phrase = f"feature {name!r} is {value!r} ({seen} {low:.6g} to {high:.6g})"
                worst = (distance, phrase)
        return worst[1] if worst is not None else ""

    # --- rows: lists in feature order or objects keyed by feature name ---------------

    def from_rows(self, instances: Any, where: str = "instances") -> Batch:
        if not isinstance(instances, list):
            raise RequestError(
                f"{where} must be a list of rows (lists in feature order or objects keyed "
                f"by feature name), got {describe(instances)}"
            )
        n = len(instances)
        self.check_rows(n, where)
        if self.all_numeric and type(instances[0]) is list:
            fast = self._numeric_matrix(instances)
            if fast is not None:
                return Batch(n, fast, np.empty((n, 0), dtype=object))
        numeric, labels = self.empty(n)
        for i, row in enumerate(instances):
            if type(row) is list:
                if len(row) != self.width:
                    raise RequestError(
                        f"{where}[{i}]: expected {self.width} values in feature order "
                        f"({self.hint()}), got {len(row)}"
                    )
                values: list[Any] = row
            elif type(row) is dict:
                values = self._ordered(row, f"{where}[{i}]")
            else:
                raise RequestError(
                    f"{where}[{i}]: a row must be a list (values in feature order) or an "
                    f"object (feature name -> value), got {describe(row)}"
                )
            self._fill_row(values, i, numeric, labels, f"{where}[{i}]")
        return Batch(n, numeric, labels)

    def from_flat(self, data: list[Any], rows: int, where: str) -> Batch:
        """Row-major values of a ``[rows, n_features]`` tensor."""
        self.check_rows(rows, where)
        if self.all_numeric:
            arr = _number_array(data)
            if arr is not None:
                return Batch(rows, arr.reshape(rows, self.width), np.empty((rows, 0), object))
        numeric, labels = self.empty(rows)
        w = self.width
        for i in range(rows):
            self._fill_row(data[i * w : (i + 1) * w], i, numeric, labels, f"{where} row {i}")
        return Batch(rows, numeric, labels)

    def _numeric_matrix(self, instances: list[Any]) -> FloatMatrix | None:
        try:
            arr = np.array(instances)
        except (ValueError, TypeError):  # ragged rows: the slow path names the row
            return None
        if arr.ndim != 2 or arr.shape[1] != self.width or arr.dtype.kind not in _NUMBER_KINDS:
            return None
        return arr.astype(np.float64, copy=False)

    def _ordered(self, row: dict[str, Any], where: str) -> list[Any]:
        try:
            values = [row[name] for name in self.names]
        except KeyError:
            missing = [name for name in self.names if name not in row]
            unknown = [key for key in row if key not in self.position]
            message = f"{where}: feature {missing[0]!r} is missing"
            if len(missing) > 1:
                message += f" (and {len(missing) - 1} more: {names_hint(missing[1:], 5)})"
            if unknown:
                message += f"; unknown feature(s): {names_hint(unknown, 5)}"
            raise RequestError(message) from None
        if len(row) != self.width:
            unknown = [key for key in row if key not in self.position]
            raise RequestError(
                f"{where}: unknown feature(s) {names_hint(unknown, 5)}; the model's features "
                f"are: {self.hint()}"
            )
        return values

    def _fill_row(
        self,
        values: Sequence[Any],
        i: int,
        numeric: FloatMatrix,
        labels: ObjectMatrix,
        where: str,
    ) -> None:
        for slot, value in zip(self._slots, values, strict=True):
            try:
                converted = slot.convert(value, slot.nullable)
            except BadValueError as exc:
                raise RequestError(f"{where}: feature {slot.name!r} {exc}") from None
            if slot.numeric:
                numeric[i, slot.column] = converted
            else:
                labels[i, slot.column] = converted

    # --- columns: one list of values per feature ----------------------------------------

    def from_columns(self, columns: dict[str, tuple[Any, str]], rows: int) -> Batch:
        """``columns[name] = (values, where)``; every feature present, all ``rows`` long."""
        self.check_rows(rows, "the input tensors")
        numeric, labels = self.empty(rows)
        for slot in self._slots:
            values, where = columns[slot.name]
            if slot.numeric:
                arr = _number_array(values)
                if arr is not None:
                    numeric[:, slot.column] = arr
                    continue
            for i, value in enumerate(values):
                try:
                    converted = slot.convert(value, slot.nullable)
                except BadValueError as exc:
                    raise RequestError(f"{where}: data[{i}]: feature {slot.name!r} {exc}") from None
                if slot.numeric:
                    numeric[i, slot.column] = converted
                else:
                    labels[i, slot.column] = converted
        return Batch(rows, numeric, labels)

    # --- the pipeline's own input -------------------------------------------------------

    def to_frame(self, batch: Batch) -> pd.DataFrame:
        """The DataFrame the trainer's ``coerce_features`` would have produced."""
        if self.all_numeric:  # one float64 block, ~100x cheaper than a dict of Series
            return pd.DataFrame(batch.numeric, columns=list(self.names), copy=False)
        columns: dict[str, Any] = {}
        for slot in self._slots:
            if slot.numeric:
                columns[slot.name] = pd.Series(batch.numeric[:, slot.column], dtype="float64")
            else:
                col = batch.labels[:, slot.column]
                columns[slot.name] = pd.Series(
                    [np.nan if v is None else v for v in col], dtype=object
                )
        return pd.DataFrame(columns)


def _number_array(values: list[Any]) -> FloatMatrix | None:
    """``values`` as float64 when all of them are JSON numbers/booleans, else None."""
    try:
        arr = np.array(values)
    except (ValueError, TypeError):
        return None
    if arr.ndim != 1 or arr.dtype.kind not in _NUMBER_KINDS:
        return None
    return arr.astype(np.float64, copy=False)
