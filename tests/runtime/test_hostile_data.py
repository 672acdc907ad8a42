"""Data that lies: every case is a real training run on a purpose-built file.

Duplicate headers, a copy of the target among the features, numbers with a few text
cells, infinities, values that overflow the scaler, nested or corrupted Parquet, a schema
that differs from the champion's, a run name that leaves the artifact folder, a tiny
holdout class and holdout rows that are also training rows.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from perennial_runtime.contract import FailureReason, TrainConfig, TrainResult
from perennial_runtime.failures import DataUnavailableError, InvalidConfigError
from perennial_runtime.training.data import load
from perennial_runtime.training.trainer import load_config, train


def frame_of(rows: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, size=rows)
    income = rng.normal(50_000, 10_000, size=rows)
    color = rng.choice(["red", "green", "blue"], size=rows)
    score = (age - 50) / 20 + (income - 50_000) / 10_000 + (color == "red")
    label = np.where(score + rng.normal(0, 0.5, size=rows) > 0.3, "yes", "no")
    return pd.DataFrame({"age": age, "income": income, "color": color, "label": label})


Runner = Callable[..., TrainResult]


@pytest.fixture
def run(make_train_config: Callable[..., TrainConfig], tmp_path: Path) -> Runner:
    """Train a LogisticRegression on a file (schema inferred unless ``columns`` is given)."""

    def runner(
        data: pd.DataFrame | Path,
        *,
        name: str = "run-1",
        validation: dict[str, Any] | None = None,
        champion: dict[str, Any] | None = None,
        columns: list[dict[str, Any]] | None = None,
        evaluation: dict[str, Any] | None = None,
    ) -> TrainResult:
        if isinstance(data, pd.DataFrame):
            path = tmp_path / f"{name}.csv"
            data.to_csv(path, index=False)
        else:
            path = data
        config = make_train_config(
            run_name=name,
            artifact_uri=(tmp_path / "artifacts").as_uri(),
            data_uri=str(path),
            target="label",
            estimator="LogisticRegression",
            params={},
            columns=columns,
            validation=validation,
            champion=champion,
            evaluation=evaluation,
        )
        result: TrainResult = train(config)
        return result

    return runner


def violations(result: TrainResult) -> list[tuple[str, str | None]]:
    assert result.status == "Failed", result.message
    assert result.reason == FailureReason.DATA_VALIDATION_FAILED.value, result.message
    assert result.data is not None
    return [(v.rule, v.column) for v in result.data.violations]


def warnings_of(result: TrainResult) -> list[str]:
    assert result.status == "Succeeded", result.message
    assert result.data is not None
    return result.data.warnings


# --- item 5: duplicate headers and leakage -----------------------------------------


def test_duplicate_csv_header_is_refused(run: Runner, tmp_path: Path) -> None:
    frame = frame_of()
    path = tmp_path / "dup.csv"
    text = frame.to_csv(index=False).splitlines()
    rows = [f"{line},{line.rsplit(',', 1)[1]}" for line in text]  # label,label
    path.write_text("\n".join(rows) + "\n")
    assert list(pd.read_csv(path).columns)[-1] == "label.1"  # what pandas does silently

    result = run(path)
    assert violations(result) == [("duplicateColumns", "label")]
    assert "label: the column name appears 2 times" in result.message


def test_duplicate_parquet_column_is_refused(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "dup.parquet"
    pq.write_table(pa.table([pa.array([1, 2]), pa.array([3, 4])], names=["x", "x"]), path)
    from perennial_runtime.contract import DataSource
    from perennial_runtime.failures import DataValidationError

    with pytest.raises(DataValidationError, match=r"x: the column name appears 2 times"):
        load(DataSource(uri=str(path), target="x"))


def test_a_copy_of_the_target_is_a_leakage_warning_and_an_optional_gate(run: Runner) -> None:
    frame = frame_of()
    frame.insert(0, "label_copy", frame["label"])
    frame.insert(0, "label_code", frame["label"].map({"yes": 1, "no": 0}))

    found = warnings_of(run(frame, name="warned"))
    leaks = [w for w in found if "[targetLeakage]" in w]
    assert len(leaks) == 2, found
    assert any(
        w.startswith("label_copy: target leakage: the feature is identical to") for w in leaks
    )
    assert any(w.startswith("label_code: target leakage") and "relabelling" in w for w in leaks)

    gated = run(frame, name="gated", validation={"failOnTargetLeakage": True})
    assert sorted(violations(gated)) == [
        ("targetLeakage", "label_code"),
        ("targetLeakage", "label_copy"),
    ]


def test_regression_feature_proportional_to_the_target_is_leakage(
    make_train_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    frame = frame_of()
    frame["label"] = frame["income"] * 0.001 + frame["age"]
    frame["label_in_cents"] = frame["label"] * 100
    path = tmp_path / "reg.csv"
    frame.to_csv(path, index=False)
    config = make_train_config(
        run_name="reg",
        artifact_uri=(tmp_path / "artifacts").as_uri(),
        data_uri=str(path),
        target="label",
        task="regression",
    )
    result = train(config)
    assert result.data is not None
    assert any(
        w.startswith("label_in_cents: target leakage: the feature is perfectly correlated")
        for w in result.data.warnings
    ), result.data.warnings


def test_an_honest_dataset_has_no_leakage_warning(run: Runner) -> None:
    assert not [w for w in warnings_of(run(frame_of())) if "targetLeakage" in w]


# --- item 6: numbers that silently change meaning ----------------------------------


def test_a_few_text_cells_in_a_numeric_column_are_reported(run: Runner) -> None:
    frame = frame_of()
    frame["income"] = frame["income"].astype(object)
    frame.loc[[3, 40, 77], "income"] = ["twelve", "unknown", "twelve"]
    result = run(frame)
    assert violations(result) == [("numericCells", "income")]
    assert "income: 3 of 120 value(s) are not numbers (e.g. 'twelve', 'unknown')" in result.message


def test_a_text_column_is_not_mistaken_for_numbers(run: Runner) -> None:
    frame = frame_of()
    frame["color"] = np.where(np.arange(len(frame)) % 3 == 0, "7", frame["color"])
    warnings_of(run(frame))  # a third numeric-looking labels: still categories, no violation


@pytest.mark.parametrize("declared", [False, True], ids=["inferred", "declared"])
def test_infinities_are_reported_with_their_count(run: Runner, declared: bool) -> None:
    frame = frame_of()
    frame.loc[[5, 9], "income"] = [np.inf, -np.inf]
    columns = (
        [
            {"name": "age", "type": "integer"},
            {"name": "income", "type": "numeric"},
            {"name": "color", "type": "categorical"},
        ]
        if declared
        else None
    )
    result = run(frame, columns=columns)
    assert violations(result) == [("finiteValues", "income")]
    assert "income: 2 infinite value(s)" in result.message


def test_an_infinite_regression_target_is_reported(
    make_train_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    frame = frame_of()
    frame["label"] = frame["income"] * 0.001
    frame.loc[4, "label"] = np.inf
    path = tmp_path / "reg.csv"
    frame.to_csv(path, index=False)
    config = make_train_config(
        run_name="reg",
        artifact_uri=(tmp_path / "artifacts").as_uri(),
        data_uri=str(path),
        target="label",
        task="regression",
    )
    result = train(config)
    assert violations(result) == [("finiteValues", "label")]


def test_values_that_overflow_the_scaler_are_reported(run: Runner) -> None:
    frame = frame_of()
    frame.loc[[1, 2], "income"] = [1e200, -3e190]
    result = run(frame)
    assert violations(result) == [("numericOverflow", "income")]
    assert "income: 2 value(s) beyond" in result.message
    assert "overflow" in result.message


# --- item 7: Parquet ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "kind"),
    [
        ([[1, 2], [3]], "list<element: int64>"),
        ([{"a": 1}, {"a": 2}], "struct<a: int64>"),
    ],
    ids=["list", "struct"],
)
def test_nested_parquet_columns_are_refused(
    run: Runner, tmp_path: Path, column: list[Any], kind: str
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = frame_of(rows=2)
    table = pa.Table.from_pandas(frame, preserve_index=False).append_column(
        "nested", pa.array(column)
    )
    path = tmp_path / "nested.parquet"
    pq.write_table(table, path)
    result = run(path)
    assert violations(result) == [("nestedColumn", "nested")]
    assert f"nested: nested column of type {kind}" in result.message
    assert "flatten it" in result.message


def test_a_corrupted_parquet_page_is_refused(run: Runner, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = frame_of()
    frame.loc[7, "income"] = 50000.125
    path = tmp_path / "corrupt.parquet"
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False),
        path,
        compression="none",
        use_dictionary=False,
        write_page_checksum=True,
    )
    raw = bytearray(path.read_bytes())
    at = raw.find(struct.pack("<d", 50000.125))
    assert at > 0
    raw[at + 7] ^= 0x01  # one flipped bit in the value's exponent
    path.write_bytes(bytes(raw))
    assert pd.read_parquet(path)["income"][7] != 50000.125  # read silently without checks

    result = run(path)
    assert result.reason == FailureReason.DATA_UNAVAILABLE.value
    assert "page checksums verified" in result.message
    assert "CRC" in result.message or "checksum" in result.message.lower()


# --- item 4: schema skew against the champion --------------------------------------


def test_a_schema_different_from_the_champions_is_a_violation(
    run: Runner, champion_block: Callable[[TrainResult], dict[str, Any]]
) -> None:
    champion = run(frame_of(rows=300, seed=1), name="champion")
    assert champion.status == "Succeeded", champion.message
    block = champion_block(champion)

    renamed = frame_of(rows=300, seed=2).rename(columns={"income": "salary"})
    found = violations(run(renamed, name="renamed", champion=block))
    assert sorted(found) == [("championSchema", "income"), ("championSchema", "salary")]

    retyped = frame_of(rows=300, seed=2)
    retyped["color"] = retyped["color"].map({"red": 0, "green": 1, "blue": 2})
    result = run(retyped, name="retyped", champion=block)
    assert violations(result) == [("championSchema", "color")]
    assert "numeric in the candidate's data and was categorical for the champion" in (
        result.message
    )

    extra = frame_of(rows=300, seed=2)
    extra["height"] = np.arange(300) % 7
    assert violations(run(extra, name="extra", champion=block)) == [("championSchema", "height")]

    same = run(frame_of(rows=300, seed=2), name="same", champion=block)
    assert same.status == "Succeeded", same.message
    assert same.champion_metrics is not None


COLUMNS = [
    {"name": "age", "type": "integer"},
    {"name": "income", "type": "numeric"},
    {"name": "color", "type": "categorical"},
]


def test_a_feature_change_in_the_spec_is_intent_not_skew(
    run: Runner, champion_block: Callable[[TrainResult], dict[str, Any]]
) -> None:
    """The user renames a feature in the spec (and the data): blessed on thresholds alone,
    the change gates skipped with the reason; the same rename with the spec unchanged
    stays a championSchema violation."""
    champion = run(frame_of(rows=300, seed=1), name="champion", columns=COLUMNS)
    assert champion.status == "Succeeded", champion.message
    block = champion_block(champion)

    renamed = frame_of(rows=300, seed=2).rename(columns={"income": "salary"})
    spec = [c if c["name"] != "income" else {**c, "name": "salary"} for c in COLUMNS]
    result = run(renamed, name="intended", champion=block, columns=spec)
    assert result.status == "Succeeded", result.message
    assert result.champion_metrics is None and result.champion_run is None
    assert result.champion_not_compared == (
        "champion champion was trained on a different feature spec (changed: columns "
        "added: salary; columns removed: income)"
    )

    # Spec unchanged, data renamed under it: skew (the declared column is missing).
    skewed = run(renamed, name="skewed", champion=block, columns=COLUMNS)
    assert skewed.status == "Failed"
    assert "income" in skewed.message

    # Declaring the very columns the champion was trained on is no change at all.
    inferred = run(frame_of(rows=300, seed=1), name="inferred-champion")
    declared = run(
        frame_of(rows=300, seed=2),
        name="declared",
        champion=champion_block(inferred),
        columns=COLUMNS,
    )
    assert declared.status == "Succeeded", declared.message
    assert declared.champion_not_compared is None and declared.champion_metrics is not None


# --- the rest: run names, imbalance, duplicates between holdout and training ------


@pytest.mark.parametrize("name", ["../../x", "a/b", "Run-1", "-x", "x" * 254, "a..b"])
def test_run_name_must_be_a_kubernetes_name(name: str, tmp_path: Path) -> None:
    config = json.dumps(
        {
            "runName": name,
            "data": {"uri": "sklearn://iris", "target": "target"},
            "model": {"task": "classification", "estimator": "GaussianNB"},
            "artifactUri": (tmp_path / "artifacts").as_uri(),
        }
    )
    with pytest.raises(InvalidConfigError, match=r"runName: .*not a Kubernetes object name"):
        load_config(None, {"PERENNIAL_TRAIN_CONFIG": config})
    assert not (tmp_path / "x").exists()


def test_a_tiny_holdout_class_is_a_warning_by_default(run: Runner) -> None:
    frame = frame_of()
    frame["label"] = ["no"] * 112 + ["yes"] * 8  # 2 "yes" rows in a 20% holdout
    found = warnings_of(run(frame))
    assert any(
        w.startswith("label: the holdout has fewer than 5 rows of class(es) 'yes' (2)")
        for w in found
    ), found


def test_holdout_rows_that_are_training_rows_are_a_warning_by_default(run: Runner) -> None:
    frame = frame_of()
    doubled = pd.concat([frame, frame], ignore_index=True)
    found = warnings_of(run(doubled))
    assert any("holdout row(s)" in w and "also appear in the training split" in w for w in found)
    assert not any("training split" in w for w in warnings_of(run(frame, name="clean")))


def test_data_unavailable_is_still_distinct_from_validation(tmp_path: Path) -> None:
    from perennial_runtime.contract import DataSource

    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not parquet PAR1")
    with pytest.raises(DataUnavailableError, match=r"cannot parse .* as parquet"):
        load(DataSource(uri=str(path), target="label"))
