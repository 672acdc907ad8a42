"""Data validation before training: every rule that fails is a ``Violation`` (it blocks).

Pure: a DataFrame and limits in, a report out; no I/O. Rule names are the config field
that sets the limit (``minRows``, ``maxMissingFraction``, ``maxDuplicateFraction``,
``minClassFraction``, ``maxDriftPsi``) or a ``schema*`` / ``target*`` check:

- ``targetPresent``: the target column exists; ``targetNotNull``: it has no missing
  values; ``targetType``: numeric for regression; ``targetClasses``: at least two classes,
  each with at least two rows (a stratified split needs them).
- ``featuresPresent``: at least one usable feature column.
- ``schemaColumnMissing``, ``schemaType``, ``schemaMin``, ``schemaMax``,
  ``schemaAllowedValues``, ``schemaNullable``: the declared ``data.columns``
  (warnings instead of violations when ``enforceSchema`` is false).

Numbers that would silently change meaning, per numeric feature (declared or inferred):

- ``numericCells``: an inferred column whose values are numbers but for a few cells
  (at least 90% numbers) would become categorical: the count and examples are reported.
- ``finiteValues``: ``inf`` / ``-inf`` cells (they would reach the estimator).
- ``numericOverflow``: finite values so large that the scaler's variance overflows and
  turns the column into NaN (beyond sqrt(float max / rows) / 2).

Against the champion (``championSchema``): every feature the champion was trained on must
be a feature of the candidate, with the same kind (numbers, categories, booleans), and the
candidate may not add features the champion lacks; a renamed column is both. The
champion is only ever scored on the columns it was trained on.

Target leakage (``targetLeakage``): a feature identical to the target, or a one-to-one
relabelling of it (classification), or perfectly correlated with it (regression) is a
warning naming the column, a violation with ``failOnTargetLeakage``.

Drift scores (PSI per feature vs the champion's training reference) are always recorded;
they fail the run only when ``maxDriftPsi`` is set and enough rows exist for a verdict.

After the split, :func:`holdout_warnings` warns (never blocks) when the holdout's
smallest class has fewer than :data:`MIN_HOLDOUT_CLASS_ROWS` rows or when holdout rows
also appear in the training split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from perennial_runtime.contract import (
    PSI_WARN,
    ColumnSchema,
    ColumnType,
    DataValidationLimits,
    FeatureInfo,
    FeatureReference,
    FeatureSpec,
    Task,
    Violation,
)
from perennial_runtime.drift import MIN_DRIFT_SAMPLES, psi_band, psi_for
from perennial_runtime.training.preprocessing import (
    NUMERIC_TYPES,
    boolean_label,
    category_label,
    coerce_column,
    is_boolean_like,
)

_EXAMPLES = 3
# An inferred text column is "numbers with a few bad cells" when this share parses.
NUMERIC_CELLS_FRACTION = 0.9
# Fewer rows than this of a class in the holdout make its metrics noise (a warning).
MIN_HOLDOUT_CLASS_ROWS = 5


@dataclass
class ValidationReport:
    violations: list[Violation] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    drift_scores: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.violations

    @property
    def max_drift(self) -> float | None:
        return max(self.drift_scores.values()) if self.drift_scores else None

    def summary(self) -> str:
        """One line naming every violation (column and rule)."""
        parts = [
            f"{v.column}: {v.message} [{v.rule}]" if v.column else f"{v.message} [{v.rule}]"
            for v in self.violations
        ]
        return f"data validation failed ({len(parts)} violation(s)): " + "; ".join(parts)


def validate(
    frame: pd.DataFrame,
    *,
    target: str,
    task: Task,
    features: Sequence[ColumnSchema],
    limits: DataValidationLimits,
    declared: Sequence[ColumnSchema] | None = None,
    reference: Mapping[str, FeatureReference] | None = None,
    champion_features: Sequence[FeatureInfo] | None = None,
) -> ValidationReport:
    """Check ``frame`` against the limits, the declared schema and the champion.

    ``features`` is the schema the model will use (declared or inferred); ``declared`` is
    ``data.columns`` as given (``None`` when the schema was inferred);
    ``champion_features`` and ``reference`` are the champion's schema and training
    distributions.
    """
    report = ValidationReport()
    rows = len(frame)
    if rows < limits.min_rows:
        report.violations.append(
            Violation(
                rule="minRows",
                observed=float(rows),
                limit=float(limits.min_rows),
                message=f"{rows} row(s), at least {limits.min_rows} required",
            )
        )
    has_target = target in frame.columns
    if not has_target:
        report.violations.append(
            Violation(
                rule="targetPresent",
                column=target,
                message=(
                    f"target column {target!r} is not in the data (columns: "
                    f"{_shown([str(c) for c in frame.columns], 10)}); fix data.target"
                ),
            )
        )
    if not features:
        report.violations.append(
            Violation(
                rule="featuresPresent",
                message="no usable feature columns besides the target; check data.columns",
            )
        )
    if declared is not None:
        schema_findings = _check_schema(frame, declared)
        if limits.enforce_schema:
            report.violations.extend(schema_findings)
        else:
            report.warnings.extend(f"{v.column}: {v.message} [{v.rule}]" for v in schema_findings)
    if has_target:
        report.violations.extend(_check_target(frame[target], target, task, limits))
    report.violations.extend(_check_missing(frame, features, limits))
    report.violations.extend(_check_duplicates(frame, features, target, limits))
    report.violations.extend(_check_numbers(frame, features, declared))
    if has_target:
        leaks = _check_leakage(frame, features, target, task)
        if limits.fail_on_target_leakage:
            report.violations.extend(leaks)
        else:
            report.warnings.extend(f"{v.column}: {v.message} [{v.rule}]" for v in leaks)
    if champion_features is not None:
        report.violations.extend(_check_champion_schema(features, champion_features))
    if reference:
        _check_drift(frame, features, reference, limits, report)
    return report


def _check_schema(frame: pd.DataFrame, declared: Sequence[ColumnSchema]) -> list[Violation]:
    found: list[Violation] = []
    for col in declared:
        if col.name not in frame.columns:
            found.append(
                Violation(
                    rule="schemaColumnMissing",
                    column=col.name,
                    message=f"declared column {col.name!r} is not in the data",
                )
            )
            continue
        found.extend(_check_column(frame[col.name], col))
    return found


def _check_column(series: pd.Series[Any], col: ColumnSchema) -> list[Violation]:
    found: list[Violation] = []
    present = series[series.notna()]
    nulls = int(series.isna().sum())
    if not col.nullable and nulls:
        found.append(
            Violation(
                rule="schemaNullable",
                column=col.name,
                observed=float(nulls),
                limit=0.0,
                message=f"{nulls} missing value(s) in a column declared nullable: false",
            )
        )
    if col.type in NUMERIC_TYPES:
        parsed = coerce_column(present, col.type)
        bad = present[parsed.isna()]
        if len(bad):
            found.append(
                Violation(
                    rule="schemaType",
                    column=col.name,
                    observed=str(bad.iloc[0]),
                    limit=col.type.value,
                    message=(
                        f"{len(bad)} value(s) are not {col.type.value} "
                        f"(e.g. {_shown([repr(v) for v in bad.tolist()], _EXAMPLES)})"
                    ),
                )
            )
        numbers = parsed.dropna()
        if col.type is ColumnType.INTEGER:
            fractional = numbers[numbers != numbers.round()]
            if len(fractional):
                found.append(
                    Violation(
                        rule="schemaType",
                        column=col.name,
                        observed=float(fractional.iloc[0]),
                        limit=col.type.value,
                        message=(
                            f"{len(fractional)} value(s) are not integers "
                            f"(e.g. {_shown([str(v) for v in fractional.tolist()], _EXAMPLES)})"
                        ),
                    )
                )
        if col.min is not None and len(numbers) and numbers.min() < col.min:
            below = int((numbers < col.min).sum())
            found.append(
                Violation(
                    rule="schemaMin",
                    column=col.name,
                    observed=float(numbers.min()),
                    limit=col.min,
                    message=(f"{below} value(s) below min {col.min:g} (lowest {numbers.min():g})"),
                )
            )
        if col.max is not None and len(numbers) and numbers.max() > col.max:
            above = int((numbers > col.max).sum())
            found.append(
                Violation(
                    rule="schemaMax",
                    column=col.name,
                    observed=float(numbers.max()),
                    limit=col.max,
                    message=(f"{above} value(s) above max {col.max:g} (highest {numbers.max():g})"),
                )
            )
    elif col.type is ColumnType.BOOLEAN:
        odd = [v for v in present.tolist() if not is_boolean_like(v)]
        if odd:
            found.append(
                Violation(
                    rule="schemaType",
                    column=col.name,
                    observed=str(odd[0]),
                    limit=col.type.value,
                    message=(
                        f"{len(odd)} value(s) are not boolean "
                        f"(e.g. {_shown([repr(v) for v in odd], _EXAMPLES)})"
                    ),
                )
            )
    if col.allowed_values is not None:
        allowed = set(col.allowed_values)
        to_label = boolean_label if col.type is ColumnType.BOOLEAN else category_label
        labels = [to_label(v) for v in present.tolist()]
        unexpected = sorted({lbl for lbl in labels if lbl is not None and lbl not in allowed})
        if unexpected:
            count = sum(1 for lbl in labels if lbl is not None and lbl not in allowed)
            found.append(
                Violation(
                    rule="schemaAllowedValues",
                    column=col.name,
                    observed=_shown(unexpected, _EXAMPLES),
                    limit=_shown(sorted(allowed), 10),
                    message=(
                        f"{count} value(s) outside allowedValues "
                        f"(unexpected: {_shown(unexpected, _EXAMPLES)})"
                    ),
                )
            )
    return found


def _check_target(
    series: pd.Series[Any], target: str, task: Task, limits: DataValidationLimits
) -> list[Violation]:
    found: list[Violation] = []
    nulls = int(series.isna().sum())
    if nulls:
        found.append(
            Violation(
                rule="targetNotNull",
                column=target,
                observed=float(nulls),
                limit=0.0,
                message=f"{nulls} row(s) have no target value",
            )
        )
    present = series.dropna()
    if task is Task.REGRESSION:
        parsed = pd.to_numeric(present, errors="coerce")
        if parsed.isna().any():
            bad = present[parsed.isna()]
            found.append(
                Violation(
                    rule="targetType",
                    column=target,
                    observed=str(bad.iloc[0]),
                    limit="numeric",
                    message=(
                        f"regression needs a numeric target; {len(bad)} value(s) are not "
                        f"numeric (e.g. {_shown([repr(v) for v in bad.tolist()], _EXAMPLES)})"
                    ),
                )
            )
        infinite = int(np.isinf(parsed.to_numpy(dtype=float)).sum())
        if infinite:
            found.append(
                Violation(
                    rule="finiteValues",
                    column=target,
                    observed=float(infinite),
                    limit=0.0,
                    message=f"{infinite} infinite target value(s) (inf/-inf)",
                )
            )
        return found
    counts = present.map(category_label).value_counts()
    if len(counts) < 2:
        found.append(
            Violation(
                rule="targetClasses",
                column=target,
                observed=float(len(counts)),
                limit=2.0,
                message=f"classification needs at least 2 classes, found {len(counts)}",
            )
        )
        return found
    lonely = [str(label) for label, n in counts.items() if n < 2]
    if lonely:
        found.append(
            Violation(
                rule="targetClasses",
                column=target,
                observed=_shown(lonely, _EXAMPLES),
                limit=2.0,
                message=(
                    f"class(es) {_shown(lonely, _EXAMPLES)} have a single row; "
                    "a stratified holdout needs at least 2 rows per class"
                ),
            )
        )
    if limits.min_class_fraction is not None:
        fractions = counts / counts.sum()
        smallest = str(fractions.idxmin())
        low = float(fractions.min())
        if low < limits.min_class_fraction:
            found.append(
                Violation(
                    rule="minClassFraction",
                    column=target,
                    observed=round(low, 6),
                    limit=limits.min_class_fraction,
                    message=(
                        f"class {smallest!r} is {low:.1%} of rows, below "
                        f"minClassFraction {limits.min_class_fraction:.1%}"
                    ),
                )
            )
    return found


def _check_missing(
    frame: pd.DataFrame, features: Sequence[ColumnSchema], limits: DataValidationLimits
) -> list[Violation]:
    limit = limits.max_missing_fraction
    if limit is None or not len(frame):
        return []
    found: list[Violation] = []
    for col in features:
        if col.name not in frame.columns:
            continue
        fraction = float(frame[col.name].isna().mean())
        if fraction > limit:
            found.append(
                Violation(
                    rule="maxMissingFraction",
                    column=col.name,
                    observed=round(fraction, 6),
                    limit=limit,
                    message=f"{fraction:.1%} missing, above maxMissingFraction {limit:.1%}",
                )
            )
    return found


def _check_duplicates(
    frame: pd.DataFrame,
    features: Sequence[ColumnSchema],
    target: str,
    limits: DataValidationLimits,
) -> list[Violation]:
    limit = limits.max_duplicate_fraction
    if limit is None or not len(frame):
        return []
    columns = [c.name for c in features if c.name in frame.columns]
    if target in frame.columns:
        columns.append(target)
    if not columns:
        return []
    fraction = float(frame[columns].duplicated().mean())
    if fraction <= limit:
        return []
    return [
        Violation(
            rule="maxDuplicateFraction",
            observed=round(fraction, 6),
            limit=limit,
            message=(
                f"{fraction:.1%} of rows duplicate an earlier row, above "
                f"maxDuplicateFraction {limit:.1%}"
            ),
        )
    ]


def _check_drift(
    frame: pd.DataFrame,
    features: Sequence[ColumnSchema],
    reference: Mapping[str, FeatureReference],
    limits: DataValidationLimits,
    report: ValidationReport,
) -> None:
    kinds = {c.name: c.type for c in features}
    for name, ref in reference.items():
        if name not in frame.columns:
            continue
        kind = kinds.get(name)
        if kind is None:
            kind = ColumnType.NUMERIC if ref.kind == "numeric" else ColumnType.CATEGORICAL
        values = coerce_column(frame[name], kind)
        report.drift_scores[name] = round(psi_for(ref, values.tolist()), 6)
    drifted = {n: s for n, s in report.drift_scores.items() if s >= PSI_WARN}
    for name, score in sorted(drifted.items(), key=lambda kv: -kv[1])[:10]:
        report.warnings.append(
            f"{name}: {psi_band(score)} drift vs the champion's training data (PSI {score:.3f})"
        )
    limit = limits.max_drift_psi
    if limit is None:
        return
    if len(frame) < MIN_DRIFT_SAMPLES:
        report.warnings.append(
            f"only {len(frame)} rows: no drift verdict below {MIN_DRIFT_SAMPLES} rows "
            "(maxDriftPsi not applied)"
        )
        return
    for name, score in report.drift_scores.items():
        if score > limit:
            report.violations.append(
                Violation(
                    rule="maxDriftPsi",
                    column=name,
                    observed=score,
                    limit=limit,
                    message=f"PSI {score:.3f} ({psi_band(score)}) above maxDriftPsi {limit:g}",
                )
            )


def _check_numbers(
    frame: pd.DataFrame,
    features: Sequence[ColumnSchema],
    declared: Sequence[ColumnSchema] | None,
) -> list[Violation]:
    """Non-numeric cells in numeric-looking columns, infinities, scaler overflow."""
    found: list[Violation] = []
    declared_names = {c.name for c in declared} if declared is not None else set()
    rows = max(len(frame), 1)
    bound = math.sqrt(float(np.finfo(np.float64).max) / rows) / 2
    for col in features:
        if col.name not in frame.columns:
            continue
        series = frame[col.name]
        if col.type not in NUMERIC_TYPES:
            if col.type is ColumnType.CATEGORICAL and col.name not in declared_names:
                found.extend(_numeric_cells(series, col.name))
            continue
        values = coerce_column(series, col.type).to_numpy(dtype=float)
        infinite = int(np.isinf(values).sum())
        if infinite:
            found.append(
                Violation(
                    rule="finiteValues",
                    column=col.name,
                    observed=float(infinite),
                    limit=0.0,
                    message=(
                        f"{infinite} infinite value(s) (inf/-inf); replace them with numbers "
                        "or leave the cells empty (missing values are imputed)"
                    ),
                )
            )
        finite = values[np.isfinite(values)]
        huge = int((np.abs(finite) > bound).sum())
        if huge:
            found.append(
                Violation(
                    rule="numericOverflow",
                    column=col.name,
                    observed=float(np.abs(finite).max()),
                    limit=float(f"{bound:.6g}"),
                    message=(
                        f"{huge} value(s) beyond ±{bound:.3g}: the scaler's variance would "
                        "overflow and turn the column into NaN; rescale the column"
                    ),
                )
            )
    return found


def _numeric_cells(series: pd.Series[Any], name: str) -> list[Violation]:
    present = series.dropna()
    if not len(present):
        return []
    parsed = pd.to_numeric(present, errors="coerce")
    bad = present[parsed.isna()]
    if not len(bad) or len(bad) > (1 - NUMERIC_CELLS_FRACTION) * len(present):
        return []
    examples = _shown(sorted({repr(v) for v in bad.tolist()}), _EXAMPLES)
    return [
        Violation(
            rule="numericCells",
            column=name,
            observed=float(len(bad)),
            limit=0.0,
            message=(
                f"{len(bad)} of {len(present)} value(s) are not numbers (e.g. {examples}) in "
                "an otherwise numeric column, which would make it categorical; fix the "
                "cells, or declare the column in data.columns (numeric, or categorical to "
                "keep it as text)"
            ),
        )
    ]


def _check_leakage(
    frame: pd.DataFrame, features: Sequence[ColumnSchema], target: str, task: Task
) -> list[Violation]:
    """Features that are the target under another name (or a one-to-one copy of it)."""
    found: list[Violation] = []
    y = frame[target]
    y_labels = y.map(category_label)
    for col in features:
        if col.name not in frame.columns or col.name == target:
            continue
        x = frame[col.name]
        how = _copy_of_target(x, y, y_labels, task)
        if how:
            found.append(
                Violation(
                    rule="targetLeakage",
                    column=col.name,
                    observed=how,
                    limit=target,
                    message=(
                        f"target leakage: the feature is {how} the target {target!r}; "
                        "a model trained on it learns nothing usable at prediction time. "
                        "Drop the column (or leave it out of data.columns)"
                    ),
                )
            )
    return found


def _copy_of_target(
    x: pd.Series[Any], y: pd.Series[Any], y_labels: pd.Series[Any], task: Task
) -> str | None:
    x_labels = x.map(category_label)
    if x_labels.equals(y_labels):
        return "identical to"
    both = pd.DataFrame({"x": x_labels, "y": y_labels}).dropna()
    if len(both) < 2 or both["y"].nunique() < 2:
        return None
    if task is Task.CLASSIFICATION:
        one_to_one = bool((both.groupby("x")["y"].nunique() == 1).all()) and bool(
            (both.groupby("y")["x"].nunique() == 1).all()
        )
        return "a one-to-one relabelling of" if one_to_one else None
    xs = pd.to_numeric(x, errors="coerce")
    ys = pd.to_numeric(y, errors="coerce")
    pair = pd.DataFrame({"x": xs, "y": ys}).replace([np.inf, -np.inf], np.nan).dropna()
    if len(pair) < 3 or pair["x"].std() == 0 or pair["y"].std() == 0:
        return None
    with np.errstate(all="ignore"):
        r = float(np.corrcoef(pair["x"], pair["y"])[0, 1])
    return "perfectly correlated with" if math.isfinite(r) and abs(r) > 1 - 1e-9 else None


def _kind(column_type: ColumnType) -> str:
    return "numeric" if column_type in NUMERIC_TYPES else column_type.value


def feature_spec_changes(
    old: FeatureSpec, new: FeatureSpec, trained: Sequence[FeatureInfo] = ()
) -> list[str]:
    """What the user changed between two feature specs, in words (empty: nothing).

    Declared columns are compared by name and kind. A spec that newly declares its
    columns is compared with the features the old model was trained on (``trained``); a
    spec that stops declaring them changes nothing (the features are inferred from the
    data again, and a different schema there is skew)."""
    changes: list[str] = []
    if old.target != new.target:
        changes.append(f"target {old.target} -> {new.target}")
    if new.columns is None:
        return changes
    if old.columns is not None:
        before = {c.name: _kind(c.type) for c in old.columns}
    else:
        before = {f.name: _kind(f.type) for f in trained}
    after = {c.name: _kind(c.type) for c in new.columns}
    added = [n for n in after if n not in before]
    removed = [n for n in before if n not in after]
    retyped = [n for n in after if n in before and after[n] != before[n]]
    for label, names in (("added", added), ("removed", removed), ("retyped", retyped)):
        if names:
            changes.append(f"columns {label}: {_shown(names, 5)}")
    return changes


def _check_champion_schema(
    features: Sequence[ColumnSchema], champion: Sequence[FeatureInfo]
) -> list[Violation]:
    """The candidate's features against the champion's: missing, extra, retyped."""
    found: list[Violation] = []
    candidate = {c.name: c.type for c in features}
    trained = {f.name: f.type for f in champion}
    for name, kind in trained.items():
        if name not in candidate:
            found.append(
                Violation(
                    rule="championSchema",
                    column=name,
                    observed="missing",
                    limit=_kind(kind),
                    message=(
                        "the champion was trained on this feature and the candidate's data "
                        "lacks it (missing or renamed): the two cannot be compared on the "
                        "same holdout"
                    ),
                )
            )
        elif _kind(candidate[name]) != _kind(kind):
            found.append(
                Violation(
                    rule="championSchema",
                    column=name,
                    observed=_kind(candidate[name]),
                    limit=_kind(kind),
                    message=(
                        f"the feature is {_kind(candidate[name])} in the candidate's data "
                        f"and was {_kind(kind)} for the champion (retyped)"
                    ),
                )
            )
    for name, kind in candidate.items():
        if name not in trained:
            found.append(
                Violation(
                    rule="championSchema",
                    column=name,
                    observed=_kind(kind),
                    limit="absent",
                    message=(
                        "a feature the champion was not trained on (extra or renamed): the "
                        "candidate would be compared on data the champion never got"
                    ),
                )
            )
    return found


def holdout_warnings(
    train: pd.DataFrame, holdout: pd.DataFrame, target: str, task: Task, columns: Sequence[str]
) -> list[str]:
    """Warnings about the split: a tiny holdout class, holdout rows also in training."""
    warnings: list[str] = []
    if task is Task.CLASSIFICATION and len(holdout):
        counts = holdout[target].map(category_label).value_counts()
        few = {str(k): int(n) for k, n in counts.items() if n < MIN_HOLDOUT_CLASS_ROWS}
        if few:
            shown = _shown([f"{k!r} ({n})" for k, n in sorted(few.items())], _EXAMPLES)
            warnings.append(
                f"{target}: the holdout has fewer than {MIN_HOLDOUT_CLASS_ROWS} rows of "
                f"class(es) {shown}: metrics for them are noise; add data or raise "
                "evaluation.testSize (minClassFraction turns imbalance into a violation)"
            )
    keys = [c for c in columns if c in train.columns and c in holdout.columns]
    if keys and len(holdout):
        seen = set(map(tuple, train[keys].astype(str).itertuples(index=False)))
        repeated = sum(
            1 for row in holdout[keys].astype(str).itertuples(index=False) if tuple(row) in seen
        )
        if repeated:
            warnings.append(
                f"{repeated} of {len(holdout)} holdout row(s) ({repeated / len(holdout):.1%}) "
                "also appear in the training split: the holdout overstates the metrics; "
                "deduplicate the data (maxDuplicateFraction turns duplicates into a violation)"
            )
    return warnings


def _shown(items: Sequence[str], limit: int) -> str:
    head = ", ".join(items[:limit])
    return head + (f" (+{len(items) - limit} more)" if len(items) > limit else "")
