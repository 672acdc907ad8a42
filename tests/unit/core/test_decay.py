"""Relative decay limits and the one-sided confidence bounds (perennial.core.decay).

The bounds are checked against independent formulations: the Wilson upper bound as the root
of its defining equation (bisection), the chi-square quantile against scipy's.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime
from statistics import NormalDist

import pytest
from scipy.stats import chi2

from perennial.core.decay import chi2_quantile, decay_limit, judge, rmse_lower, wilson_upper
from perennial.core.triggers import DecaySignal, TriggerInputs, TriggerType, due_triggers

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
BASE = TriggerInputs(now=NOW, spec_hash="abc", last_spec_hash="abc", run_count=3)


def wilson_root(share: float, n: int, confidence: float) -> float:
    """The p > share at which share is exactly z standard errors below p (score test)."""
    z = NormalDist().inv_cdf(confidence)
    lo, hi = share, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if (mid - share) ** 2 < z * z * mid * (1 - mid) / n:
            lo = mid
        else:
            hi = mid
    return lo


@pytest.mark.parametrize(
    ("share", "n", "confidence"),
    [(0.8, 100, 0.95), (0.5, 30, 0.9), (0.97, 2000, 0.99), (0.0, 50, 0.95), (0.62, 7, 0.8)],
)
def test_wilson_upper_solves_the_score_equation(share: float, n: int, confidence: float) -> None:
    assert wilson_upper(share, n, confidence) == pytest.approx(
        wilson_root(share, n, confidence), abs=1e-9
    )


def test_wilson_bound_narrows_with_more_samples() -> None:
    bounds = [wilson_upper(0.78, n, 0.95) for n in (50, 200, 1000, 10_000)]
    assert bounds == sorted(bounds, reverse=True)
    assert bounds[-1] - 0.78 < 0.01 < bounds[0] - 0.78


@pytest.mark.parametrize("n", [30, 100, 500, 2000])
@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
def test_chi2_quantile_is_within_half_a_percent_of_scipy(n: int, confidence: float) -> None:
    assert chi2_quantile(n, confidence) == pytest.approx(chi2.ppf(confidence, n), rel=0.005)


def test_rmse_lower_bound_is_below_the_value_and_tightens() -> None:
    lows = [rmse_lower(2.0, n, 0.95) for n in (30, 300, 3000)]
    assert all(low < 2.0 for low in lows)
    assert lows == sorted(lows)
    assert lows[0] == pytest.approx(math.sqrt(30 * 4.0 / chi2.ppf(0.95, 30)), rel=0.003)


def test_limits() -> None:
    assert decay_limit("accuracy", 0.8, None, 0.95) == 0.8
    assert decay_limit("accuracy", None, 0.05, 0.92) == pytest.approx(0.87)
    assert decay_limit("rmse", None, 0.10, 2.0) == pytest.approx(2.2)
    assert decay_limit("accuracy", None, 0.05, None) is None


def test_point_estimate_without_confidence() -> None:
    verdict = judge(
        metric="accuracy",
        value=0.86,
        samples=150,
        threshold=None,
        max_drop=0.05,
        holdout=0.92,
        confidence=None,
    )
    assert verdict.decayed and verdict.limit == pytest.approx(0.87)
    assert verdict.text == (
        "live accuracy 0.8600 < limit 0.8700 (holdout 0.9200 - maxDrop 0.05) "
        "over 150 feedback samples"
    )


def test_confidence_holds_back_a_small_window_and_fires_on_a_large_one() -> None:
    kw = {"metric": "accuracy", "value": 0.84, "threshold": None, "max_drop": 0.05}
    small = judge(**kw, samples=100, holdout=0.92, confidence=0.95)  # type: ignore[arg-type]
    large = judge(**kw, samples=3000, holdout=0.92, confidence=0.95)  # type: ignore[arg-type]
    assert not small.decayed and small.bound is not None and small.bound > 0.87
    assert "95% upper bound" in small.text and ">= limit 0.8700" in small.text
    assert large.decayed and large.bound is not None and large.bound < 0.87


def test_rmse_rises_relative_to_the_holdout() -> None:
    verdict = judge(
        metric="rmse",
        value=2.6,
        samples=400,
        threshold=None,
        max_drop=0.1,
        holdout=2.0,
        confidence=0.95,
    )
    assert verdict.decayed and verdict.bound is not None and 2.2 < verdict.bound < 2.6
    assert "95% lower bound" in verdict.text and "x (1 + maxDrop 0.1)" in verdict.text


def signal(**kw: object) -> DecaySignal:
    base = DecaySignal(
        metric="accuracy",
        value=0.84,
        samples=400,
        threshold=None,
        max_drop=0.05,
        holdout=0.92,
        min_samples=100,
        cooldown_seconds=3600,
        last_fired=None,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_relative_decay_trigger_fires_names_the_limit_and_respects_the_holdout() -> None:
    (trigger,) = due_triggers(replace(BASE, decay=signal()))
    assert trigger.type is TriggerType.PERFORMANCE_DECAY
    assert "holdout 0.9200 - maxDrop 0.05" in trigger.reason
    # The same live accuracy from a model whose own holdout score was 0.86 is no decay.
    assert due_triggers(replace(BASE, decay=signal(holdout=0.86))) == []
    # Holdout unknown: no limit, no trigger.
    assert due_triggers(replace(BASE, decay=signal(holdout=None))) == []
    # Too few samples for any verdict.
    assert due_triggers(replace(BASE, decay=signal(samples=99))) == []


# --- where the holdout score comes from: the run, through the deployment's status ------


def test_the_served_models_holdout_metrics_travel_from_run_to_status() -> None:
    from perennial.core.deployment_status import ref_from_wire, revision_to_wire
    from perennial.core.model_source import model_of_run

    run = {
        "metadata": {"name": "iris-00003"},
        "spec": {"pipelineSpec": {}},
        "status": {
            "artifact": {"modelUri": "s3://b/m/model.skops", "sha256": "a" * 64},
            "metrics": {"accuracy": 0.93, "f1": 0.92, "bogus": "x", "nan": float("nan")},
        },
    }
    ref = model_of_run(run)
    assert ref is not None
    assert ref.holdout_metrics == (("accuracy", 0.93), ("f1", 0.92))
    wire = revision_to_wire(ref, 3, None)
    assert wire["holdoutMetrics"] == {"accuracy": 0.93, "f1": 0.92}
    back = ref_from_wire(wire)
    assert back is not None and back.holdout("accuracy") == 0.93
    # Not part of the model's identity: a status written without them names the same model.
    assert back == replace(ref, holdout_metrics=())
