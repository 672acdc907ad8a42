"""Every data-validation rule fails a real training run on purpose-built bad data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from perennial_runtime.contract import ExitCode, FailureReason, TrainResult
from perennial_runtime.training.trainer import exit_code, train

SCHEMA: list[dict[str, Any]] = [
    {"name": "age", "type": "integer", "min": 0, "max": 120, "nullable": False},
    {"name": "income", "type": "numeric", "min": 0},
    {"name": "color", "type": "categorical", "allowedValues": ["red", "green", "blue"]},
    {"name": "member", "type": "boolean"},
]


def good_frame(rows: int = 120, seed: int = 0, income_shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, size=rows)
    income = rng.normal(50_000, 10_000, size=rows).clip(0)
    color = rng.choice(["red", "green", "blue"], size=rows)
    member = rng.choice([True, False], size=rows)
    score = (age - 50) / 20 + (income - 50_000) / 10_000 + (color == "red")
    target = np.where(score + rng.normal(0, 0.5, size=rows) > 0.3, "yes", "no")
    return pd.DataFrame(
        {
            "age": age,
            "income": income + income_shift,
            "color": color,
            "member": member,
            "target": target,
        }
    )


def write(frame: pd.DataFrame, folder: Path, fmt: str) -> str:
    path = folder / f"train.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        # Parquet columns have one type: a column with mixed values is stored as text.
        frame = frame.copy()
        for name in frame.columns:
            kinds = {type(v) for v in frame[name].dropna()}
            if len(kinds) > 1:
                frame[name] = [None if pd.isna(v) else str(v) for v in frame[name]]
        frame.to_parquet(path)
    return str(path)


Runner = Callable[..., TrainResult]


@pytest.fixture
def run(make_train_config: Callable[..., Any]) -> Runner:
    """Write ``frame`` to ``folder`` (CSV or Parquet) and train a LogisticRegression on it."""

    def runner(
        frame: pd.DataFrame,
        folder: Path,
        fmt: str = "csv",
        *,
        columns: list[dict[str, Any]] | None = SCHEMA,
        validation: dict[str, Any] | None = None,
        champion: dict[str, Any] | None = None,
        run_name: str = "run-1",
    ) -> TrainResult:
        folder.mkdir(parents=True, exist_ok=True)
        config = make_train_config(
            run_name=run_name,
            artifact_uri=(folder / "artifacts").as_uri(),
            data_uri=write(frame, folder, fmt),
            estimator="LogisticRegression",
            params={},
            columns=columns,
            validation=validation,
            champion=champion,
        )
        result: TrainResult = train(config)
        return result

    return runner


def _set(column: str, rows: slice, value: Any) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def mutate(frame: pd.DataFrame) -> pd.DataFrame:
        frame[column] = frame[column].astype(object)
        frame.loc[frame.index[rows], column] = value
        return frame

    return mutate


def _drop(column: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda frame: frame.drop(columns=[column])


def _duplicate(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([frame, frame.iloc[:60]], ignore_index=True)


def _imbalanced(frame: pd.DataFrame) -> pd.DataFrame:
    frame["target"] = ["no"] * 114 + ["yes"] * 6
    return frame


CASES: list[tuple[str, Callable[[pd.DataFrame], pd.DataFrame], dict[str, Any], str, str | None]] = [
    # (id, mutation, validation limits, rule, column)
    ("missing-target", _drop("target"), {}, "targetPresent", "target"),
    ("declared-column-missing", _drop("member"), {}, "schemaColumnMissing", "member"),
    ("type-numeric", _set("income", slice(0, 3), "unknown"), {}, "schemaType", "income"),
    ("type-integer", _set("age", slice(0, 2), 30.5), {}, "schemaType", "age"),
    ("type-boolean", _set("member", slice(0, 2), "maybe"), {}, "schemaType", "member"),
    ("range-min", _set("age", slice(0, 1), -5), {}, "schemaMin", "age"),
    ("range-max", _set("age", slice(5, 7), 200), {}, "schemaMax", "age"),
    ("allowed-values", _set("color", slice(0, 4), "purple"), {}, "schemaAllowedValues", "color"),
    ("nullability", _set("age", slice(0, 1), None), {}, "schemaNullable", "age"),
    (
        "missing-fraction",
        _set("income", slice(0, 40), None),
        {"maxMissingFraction": 0.2},
        "maxMissingFraction",
        "income",
    ),
    ("duplicates", _duplicate, {"maxDuplicateFraction": 0.1}, "maxDuplicateFraction", None),
    ("class-balance", _imbalanced, {"minClassFraction": 0.1}, "minClassFraction", "target"),
    ("min-rows", lambda f: f.iloc[:15], {"minRows": 20}, "minRows", None),
    ("target-null", _set("target", slice(0, 2), None), {}, "targetNotNull", "target"),
    ("single-class", _set("target", slice(0, 120), "yes"), {}, "targetClasses", "target"),
]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize(
    ("mutate", "limits", "rule", "column"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_rule_fails_the_run(
    run: Runner,
    tmp_path: Path,
    fmt: str,
    mutate: Callable[[pd.DataFrame], pd.DataFrame],
    limits: dict[str, Any],
    rule: str,
    column: str | None,
) -> None:
    result = run(mutate(good_frame()), tmp_path, fmt, validation=limits)

    assert result.status == "Failed"
    assert result.reason == FailureReason.DATA_VALIDATION_FAILED.value
    assert exit_code(result) == ExitCode.DATA_VALIDATION_FAILED == 4
    assert result.data is not None
    assert result.data.validation_passed is False
    found = [(v.rule, v.column) for v in result.data.violations]
    assert (rule, column) in found, found
    assert f"[{rule}]" in result.message
    if column:
        assert f"{column}:" in result.message
    assert result.artifact is None
    assert not (tmp_path / "artifacts").exists(), "nothing is written for a rejected dataset"


def test_good_data_passes_with_the_declared_schema(run: Runner, tmp_path: Path) -> None:
    result = run(good_frame(), tmp_path, "parquet", validation={"minClassFraction": 0.1})
    assert result.status == "Succeeded", result.message
    assert result.data is not None and result.data.violations == []


def test_several_violations_are_all_listed(run: Runner, tmp_path: Path) -> None:
    frame = _set("age", slice(0, 1), -5)(_set("color", slice(0, 2), "purple")(good_frame()))
    result = run(frame, tmp_path)
    assert result.data is not None
    rules = {(v.rule, v.column) for v in result.data.violations}
    assert {("schemaMin", "age"), ("schemaAllowedValues", "color")} <= rules
    assert "2 violation(s)" in result.message


def test_schema_not_enforced_turns_schema_findings_into_warnings(
    run: Runner, tmp_path: Path
) -> None:
    frame = _set("age", slice(0, 1), -5)(good_frame())
    result = run(frame, tmp_path, validation={"enforceSchema": False})
    assert result.status == "Succeeded", result.message
    assert result.data is not None
    assert any("schemaMin" in w for w in result.data.warnings)


def test_inferred_schema_is_recorded(run: Runner, tmp_path: Path) -> None:
    frame = good_frame()
    frame["member"] = frame["member"].map({True: "true", False: "false"})
    result = run(frame, tmp_path, columns=None)
    assert result.status == "Succeeded", result.message
    from perennial_runtime.artifacts import read_metadata

    assert result.artifact is not None
    meta = read_metadata(result.artifact.uri)
    types = {f.name: f.type.value for f in meta.features}
    assert types == {
        "age": "integer",
        "income": "numeric",
        "color": "categorical",
        "member": "boolean",
    }


def test_drift_against_the_champion(
    run: Runner, tmp_path: Path, champion_block: Callable[[TrainResult], dict[str, Any]]
) -> None:
    champion = run(good_frame(rows=300, seed=1), tmp_path / "a", run_name="run-a")
    assert champion.status == "Succeeded", champion.message
    shifted = good_frame(rows=300, seed=2, income_shift=40_000)

    # Drift is always scored and recorded; without maxDriftPsi it does not block.
    recorded = run(shifted, tmp_path / "b", champion=champion_block(champion), run_name="run-b")
    assert recorded.status == "Succeeded", recorded.message
    assert recorded.data is not None
    scores = recorded.data.drift_scores
    assert set(scores) == {"age", "income", "color", "member"}
    assert scores["income"] > 0.25
    assert scores["age"] < 0.25 and scores["color"] < 0.1
    assert recorded.data.max_drift == scores["income"]
    assert any("income" in w and "significant" in w for w in recorded.data.warnings)

    blocked = run(
        shifted,
        tmp_path / "c",
        champion=champion_block(champion),
        validation={"maxDriftPsi": 0.25},
        run_name="run-c",
    )
    assert blocked.status == "Failed"
    assert blocked.reason == FailureReason.DATA_VALIDATION_FAILED.value
    assert blocked.data is not None
    assert [(v.rule, v.column) for v in blocked.data.violations] == [("maxDriftPsi", "income")]
    assert blocked.data.drift_scores == scores


def test_drift_verdict_needs_enough_rows(
    run: Runner, tmp_path: Path, champion_block: Callable[[TrainResult], dict[str, Any]]
) -> None:
    champion = run(good_frame(rows=300, seed=1), tmp_path / "a", run_name="run-a")
    small = good_frame(rows=60, seed=3, income_shift=40_000)
    result = run(
        small,
        tmp_path / "b",
        champion=champion_block(champion),
        validation={"maxDriftPsi": 0.25},
        run_name="run-b",
    )
    assert result.status == "Succeeded", result.message
    assert result.data is not None
    assert result.data.drift_scores["income"] > 0.25
    assert any("no drift verdict" in w for w in result.data.warnings)
