import pytest

from perennial.core.gates import (
    DATA_VALIDATION_GATE,
    BeatChampion,
    MetricGate,
    change_gate,
    evaluate_gates,
    threshold_gate,
)


@pytest.mark.parametrize(
    ("metric", "observed", "threshold", "passed"),
    [
        ("accuracy", 0.91, 0.9, True),
        ("accuracy", 0.9, 0.9, True),  # the floor itself passes
        ("accuracy", 0.89, 0.9, False),
        ("rmse", 40.0, 50.0, True),  # lower is better: a ceiling
        ("rmse", 50.0, 50.0, True),
        ("rmse", 55.0, 50.0, False),
        ("log_loss", 0.3, 0.2, False),
        ("r2", 0.5, 0.4, True),
    ],
)
def test_threshold_direction(metric: str, observed: float, threshold: float, passed: bool) -> None:
    result = threshold_gate(MetricGate(metric, threshold=threshold), {metric: observed})
    assert result.passed is passed
    assert result.observed == observed
    assert result.threshold == threshold
    assert metric in result.message
    assert ("passed" if passed else "failed") in result.message


def test_missing_candidate_metric_fails_with_reason() -> None:
    result = threshold_gate(MetricGate("roc_auc", threshold=0.8), {"accuracy": 0.99})
    assert not result.passed
    assert "'roc_auc' is missing from the candidate" in result.message


def test_nan_metric_counts_as_missing() -> None:
    result = threshold_gate(MetricGate("accuracy", threshold=0.8), {"accuracy": float("nan")})
    assert not result.passed


@pytest.mark.parametrize(
    ("metric", "candidate", "champion", "absolute", "relative", "passed", "limit"),
    [
        ("accuracy", 0.95, 0.90, 0.01, None, True, 0.91),
        ("accuracy", 0.905, 0.90, 0.01, None, False, 0.91),
        ("accuracy", 0.90, 0.90, 0.0, None, True, 0.90),  # a tie passes a zero margin
        ("accuracy", 0.99, 0.90, None, 0.10, True, 0.99),
        ("accuracy", 0.98, 0.90, None, 0.10, False, 0.99),
        ("rmse", 45.0, 50.0, 2.0, None, True, 48.0),
        ("rmse", 49.0, 50.0, 2.0, None, False, 48.0),
        ("rmse", 45.0, 50.0, None, 0.10, True, 45.0),
        ("mae", 46.0, 50.0, None, 0.10, False, 45.0),
    ],
)
def test_change_gates(
    metric: str,
    candidate: float,
    champion: float,
    absolute: float | None,
    relative: float | None,
    passed: bool,
    limit: float,
) -> None:
    result = change_gate(
        "g", metric, {metric: candidate}, {metric: champion}, absolute=absolute, relative=relative
    )
    assert result.passed is passed
    assert result.threshold == pytest.approx(limit)
    assert f"champion {champion:.6g}" in result.message


def test_change_gate_without_champion_is_skipped_and_says_so() -> None:
    result = change_gate("beatChampion", "accuracy", {"accuracy": 0.5}, None, absolute=0.0)
    assert result.passed and result.skipped
    assert "no champion yet" in result.message


def test_change_gate_champion_metric_missing_fails() -> None:
    result = change_gate("g", "f1", {"f1": 0.9}, {"accuracy": 0.9}, absolute=0.0)
    assert not result.passed
    assert "missing from the champion" in result.message


def test_evaluate_all_pass_first_run() -> None:
    verdict = evaluate_gates(
        {"accuracy": 0.95},
        None,
        metric_gates=[MetricGate("accuracy", threshold=0.9, min_absolute_change=0.0)],
        beat_champion=BeatChampion("accuracy"),
    )
    assert verdict.passed
    names = [r.name for r in verdict.results]
    assert names == [
        DATA_VALIDATION_GATE,
        "accuracy.threshold",
        "accuracy.minAbsoluteChange",
        "beatChampion",
    ]
    assert "2 skipped: no champion yet" in verdict.summary


def test_evaluate_failing_gates_are_listed_in_summary() -> None:
    verdict = evaluate_gates(
        {"accuracy": 0.85, "f1": 0.7},
        {"accuracy": 0.9, "f1": 0.8},
        metric_gates=[MetricGate("f1", threshold=0.75)],
        beat_champion=BeatChampion("accuracy", min_delta=0.0),
    )
    assert not verdict.passed
    assert [r.name for r in verdict.failed] == ["f1.threshold", "beatChampion"]
    assert "f1.threshold failed" in verdict.summary
    assert "beatChampion failed" in verdict.summary


def test_data_validation_failure_blocks() -> None:
    verdict = evaluate_gates(
        {"accuracy": 0.99}, None, data_passed=False, data_message="column 'age': null values"
    )
    assert not verdict.passed
    assert verdict.failed[0].name == DATA_VALIDATION_GATE
    assert "column 'age'" in verdict.summary


@pytest.mark.parametrize(
    ("metric", "candidate", "champion", "passed"),
    [
        # The case: 0.905 vs 0.9125 on a 400-row holdout, tolerance one point.
        ("accuracy", 0.905, 0.9125, True),
        ("accuracy", 0.9025, 0.9125, True),  # exactly at the limit
        ("accuracy", 0.9, 0.9125, False),
        ("rmse", 10.9, 10.0, True),  # lower is better: up to 1.0 higher passes
        ("rmse", 11.2, 10.0, False),
    ],
)
def test_negative_min_delta_is_a_tolerance(
    metric: str, candidate: float, champion: float, passed: bool
) -> None:
    tolerance = 0.01 if metric == "accuracy" else 1.0
    verdict = evaluate_gates(
        {metric: candidate},
        {metric: champion},
        beat_champion=BeatChampion(metric, min_delta=-tolerance),
    )
    (gate,) = [r for r in verdict.results if r.name == "beatChampion"]
    assert gate.passed is passed and verdict.passed is passed
    assert gate.threshold == pytest.approx(
        champion - tolerance if metric == "accuracy" else champion + tolerance
    )
    assert f"tolerance {tolerance:g}" in gate.message and f"champion {champion:g}" in gate.message


def test_disabled_beat_champion_adds_no_gate() -> None:
    verdict = evaluate_gates(
        {"accuracy": 0.5}, {"accuracy": 0.9}, beat_champion=BeatChampion("accuracy", enabled=False)
    )
    assert verdict.passed
    assert [r.name for r in verdict.results] == [DATA_VALIDATION_GATE]
