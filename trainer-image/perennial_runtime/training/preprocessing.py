"""Feature schema (declared or inferred), value coercion and the preprocessing pipeline.

The trained model is one scikit-learn ``Pipeline`` (preprocessing + estimator) that takes a
pandas DataFrame with the original feature columns. Callers (the trainer and the server)
first pass raw values through :func:`coerce_features`, so both see the same types:

- numeric / integer columns -> float64 (unparseable values become NaN);
- categorical columns -> ``str`` labels (integral floats lose their ``.0``), NaN if missing;
- boolean columns -> the labels ``"true"`` / ``"false"``, NaN if missing.

The pipeline then imputes and scales numeric columns (median, standard scaling) and imputes
and one-hot encodes categorical and boolean columns (most frequent, unknown categories
ignored). Only scikit-learn classes appear in it, so skops' trust policy accepts the file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from perennial_runtime.contract import ColumnSchema, ColumnType, FeatureInfo

# One-hot width cap per column: rarer categories share an "infrequent" column.
MAX_CATEGORIES = 50
NUMERIC_TYPES = frozenset({ColumnType.NUMERIC, ColumnType.INTEGER})
_TRUE_LABELS = frozenset({"true", "1", "yes", "t", "y"})
_FALSE_LABELS = frozenset({"false", "0", "no", "f", "n"})


class ColumnSpec(Protocol):
    """What :class:`ColumnSchema` and :class:`FeatureInfo` have in common."""

    @property
    def name(self) -> str: ...

    @property
    def type(self) -> ColumnType: ...


def is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(float(value))
    return False


def category_label(value: Any) -> str | None:
    """The canonical string label of a categorical value (``None`` when missing)."""
    if is_missing(value):
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.generic):
        return str(value.item())
    return str(value)


def boolean_label(value: Any) -> str | None:
    """``"true"`` / ``"false"`` for boolean-like values; other values keep their label."""
    label = category_label(value)
    if label is None:
        return None
    lowered = label.strip().lower()
    if lowered in _TRUE_LABELS:
        return "true"
    if lowered in _FALSE_LABELS:
        return "false"
    return label


def is_boolean_like(value: Any) -> bool:
    label = category_label(value)
    return label is None or label.strip().lower() in _TRUE_LABELS | _FALSE_LABELS


def infer_column_type(series: pd.Series[Any]) -> ColumnType | None:
    """The column type a series looks like; ``None`` for types we cannot use (datetimes)."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return ColumnType.BOOLEAN
    if pd.api.types.is_datetime64_any_dtype(series.dtype) or isinstance(
        series.dtype, pd.PeriodDtype
    ):
        return None
    if pd.api.types.is_integer_dtype(series.dtype):
        return ColumnType.INTEGER
    if pd.api.types.is_numeric_dtype(series.dtype):
        return ColumnType.NUMERIC
    values = series.dropna()
    lowered = {str(v).strip().lower() for v in values.unique()}
    if lowered and lowered <= {"true", "false"}:
        return ColumnType.BOOLEAN
    if len(values) and all(isinstance(v, bool | np.bool_) for v in values):
        return ColumnType.BOOLEAN
    return ColumnType.CATEGORICAL


def infer_schema(frame: pd.DataFrame, target: str) -> tuple[list[ColumnSchema], list[str]]:
    """One column schema per non-target column, plus warnings for columns left out."""
    columns: list[ColumnSchema] = []
    warnings: list[str] = []
    for name in frame.columns:
        if name == target:
            continue
        kind = infer_column_type(frame[name])
        if kind is None:
            warnings.append(
                f"column {name!r} ({frame[name].dtype}) is not numeric, categorical or "
                "boolean and is not used as a feature; declare data.columns to include it"
            )
            continue
        columns.append(ColumnSchema(name=str(name), type=kind))
    return columns, warnings


def feature_schema(
    frame: pd.DataFrame, target: str, declared: Sequence[ColumnSchema] | None
) -> tuple[list[ColumnSchema], list[str]]:
    """The declared schema (without the target) if any, else the inferred one."""
    if declared is None:
        return infer_schema(frame, target)
    features = [c for c in declared if c.name != target]
    declared_names = {c.name for c in declared}
    extra = [str(c) for c in frame.columns if c != target and c not in declared_names]
    warnings = []
    if extra:
        shown = ", ".join(extra[:10]) + (" ..." if len(extra) > 10 else "")
        warnings.append(f"{len(extra)} column(s) not in data.columns are ignored: {shown}")
    return features, warnings


def coerce_column(series: pd.Series[Any], kind: ColumnType) -> pd.Series[Any]:
    """Cast one raw column to the representation the pipeline expects."""
    if kind in NUMERIC_TYPES:
        if pd.api.types.is_bool_dtype(series.dtype):
            series = series.astype(float)
        return pd.to_numeric(series, errors="coerce").astype("float64")
    to_label = boolean_label if kind is ColumnType.BOOLEAN else category_label
    labels = [to_label(v) for v in series.tolist()]
    return pd.Series(
        [np.nan if v is None else v for v in labels],
        index=series.index,
        name=series.name,
        dtype=object,
    )


def coerce_features(frame: pd.DataFrame, features: Sequence[ColumnSpec]) -> pd.DataFrame:
    """The feature columns of ``frame``, in schema order, with canonical types.

    A feature column absent from ``frame`` becomes all-missing (the pipeline imputes it);
    columns outside the schema are dropped.
    """
    out: dict[str, pd.Series[Any]] = {}
    for spec in features:
        if spec.name in frame.columns:
            out[spec.name] = coerce_column(frame[spec.name], spec.type)
        else:
            empty = pd.Series(np.nan, index=frame.index, dtype="float64")
            out[spec.name] = coerce_column(empty, spec.type)
    return pd.DataFrame(out, index=frame.index)


def build_preprocessor(features: Sequence[ColumnSpec]) -> Any:
    """ColumnTransformer: numeric -> median + scale; categorical/boolean -> mode + one-hot."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [f.name for f in features if f.type in NUMERIC_TYPES]
    categorical = [f.name for f in features if f.type not in NUMERIC_TYPES]
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        transformers.append(
            (
                "numeric",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median")),
                        ("scale", StandardScaler()),
                    ]
                ),
                numeric,
            )
        )
    if categorical:
        transformers.append(
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        (
                            "onehot",
                            OneHotEncoder(
                                handle_unknown="ignore",
                                sparse_output=False,
                                max_categories=MAX_CATEGORIES,
                            ),
                        ),
                    ]
                ),
                categorical,
            )
        )
    return ColumnTransformer(transformers, remainder="drop")


def build_pipeline(features: Sequence[ColumnSpec], estimator: Any) -> Any:
    """The model: preprocessing and estimator in one Pipeline over the raw feature columns."""
    from sklearn.pipeline import Pipeline

    return Pipeline([("preprocess", build_preprocessor(features)), ("model", estimator)])


def feature_infos(features: Sequence[ColumnSchema]) -> list[FeatureInfo]:
    """The schema as recorded in ``metadata.json``."""
    return [
        FeatureInfo(
            name=c.name,
            type=c.type,
            nullable=c.nullable,
            min=c.min,
            max=c.max,
            allowed_values=c.allowed_values,
        )
        for c in features
    ]
