from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from perennial.core.rollout import (
    Action,
    AnalysisLimits,
    AnalysisSample,
    CanaryStep,
    ModelRef,
    Phase,
    RolloutState,
    Strategy,
    WorkloadState,
    analyse,
    canary_replicas,
    plan,
)

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
V1 = ModelRef("iris-00001", "file:///a/iris-00001/model.skops", "a" * 64)
V2 = ModelRef("iris-00002", "file:///a/iris-00002/model.skops", "b" * 64)
ROLLING = Strategy()
CANARY = Strategy(
    type="Canary",
    steps=(CanaryStep(10, 60), CanaryStep(50, 60), CanaryStep(100, 0)),
    analysis=AnalysisLimits(min_requests=10),
)
GOOD = AnalysisSample(requests=200, errors=0, p99_latency_ms=5.0, prediction_shift=0.02)


def serving(model: ModelRef, replicas: int = 3, **kw: object) -> WorkloadState:
    base = WorkloadState(
        model_sha256=model.sha256,
        desired_replicas=replicas,
        total_replicas=replicas,
        updated_replicas=replicas,
        ready_replicas=replicas,
        available_replicas=replicas,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- steady states -----------------------------------------------------------------


def test_waits_for_a_blessed_model() -> None:
    d = plan(
        desired=None,
        current=None,
        rollout=None,
        strategy=ROLLING,
        replicas=2,
        stable=WorkloadState(exists=False),
        now=T0,
    )
    assert d.action is Action.WAIT and d.phase is Phase.WAITING
    assert d.reason == "NoBlessedModel"


def test_first_model_rolls_out_directly_even_with_canary() -> None:
    d = plan(
        desired=V1,
        current=None,
        rollout=None,
        strategy=CANARY,
        replicas=3,
        stable=WorkloadState(exists=False),
        now=T0,
    )
    assert d.action is Action.START
    assert d.rollout is not None and d.rollout.strategy == "RollingUpdate"
    assert d.stable_replicas == 3 and d.canary_replicas == 0


def test_available_when_current_serves() -> None:
    d = plan(
        desired=V1,
        current=V1,
        rollout=None,
        strategy=ROLLING,
        replicas=3,
        stable=serving(V1),
        now=T0,
    )
    assert d.action is Action.NONE and d.phase is Phase.AVAILABLE


def test_drifted_deployment_is_restored() -> None:
    d = plan(
        desired=V1,
        current=V1,
        rollout=None,
        strategy=ROLLING,
        replicas=3,
        stable=serving(V2),
        now=T0,
    )
    # No rollout: the layout of the steady state puts V1 back on the stable Deployment.
    assert d.action is Action.NONE and d.phase is Phase.PROGRESSING
    assert d.reason == "Restoring" and d.target == V1 and d.rollout is None
    missing = plan(
        desired=V1,
        current=V1,
        rollout=None,
        strategy=ROLLING,
        replicas=3,
        stable=WorkloadState(exists=False),
        now=T0,
    )
    assert missing.reason == "Restoring"


def test_never_ready_while_pods_crash_loop() -> None:
    d = plan(
        desired=V1,
        current=V1,
        rollout=None,
        strategy=ROLLING,
        replicas=3,
        stable=serving(V1, crash_looping_pods=1, crash_reason="CrashLoopBackOff"),
        now=T0,
    )
    assert d.phase is Phase.DEGRADED and "crash-looping" in d.message


def test_rolled_back_run_is_not_retried() -> None:
    d = plan(
        desired=V2,
        current=V1,
        rollout=None,
        strategy=ROLLING,
        replicas=3,
        stable=serving(V1),
        rolled_back={V2.run},
        now=T0,
    )
    assert d.action is Action.NONE and d.phase is Phase.DEGRADED
    assert d.reason == "RolledBack" and "not retried" in d.message


# --- rolling update ------------------------------------------------------------------


def rolling_state() -> RolloutState:
    return RolloutState(
        from_run=V1.run, to=V2, strategy="RollingUpdate", started_at=T0, step_started_at=T0
    )


def test_rolling_start() -> None:
    d = plan(
        desired=V2,
        current=V1,
        rollout=None,
        strategy=ROLLING,
        replicas=3,
        stable=serving(V1),
        now=T0,
    )
    assert d.action is Action.START and d.target == V2
    assert d.rollout == rolling_state()


def test_rolling_in_progress_then_success() -> None:
    half = serving(V2, updated_replicas=2, ready_replicas=1, available_replicas=1)
    d = plan(
        desired=V2,
        current=V1,
        rollout=rolling_state(),
        strategy=ROLLING,
        replicas=3,
        stable=half,
        now=at(30),
    )
    assert d.action is Action.HOLD and d.phase is Phase.PROGRESSING
    assert "2/3 updated, 1/3 ready" in d.message
    d = plan(
        desired=V2,
        current=V1,
        rollout=rolling_state(),
        strategy=ROLLING,
        replicas=3,
        stable=serving(V2),
        now=at(60),
    )
    assert d.action is Action.SUCCEED and d.phase is Phase.AVAILABLE and d.rollout is None


def test_rolling_surge_is_not_done_while_an_old_replica_serves() -> None:
    # maxSurge 1, maxUnavailable 0: the new Pod exists but is not ready, the old one still
    # is, so ready/available count the old Pod and nothing is unavailable.
    surge = serving(
        V2,
        replicas=1,
        total_replicas=2,
        updated_replicas=1,
        ready_replicas=1,
        available_replicas=1,
        unavailable_replicas=0,
    )
    assert not surge.rolled_out(V2.sha256)
    d = plan(
        desired=V2,
        current=V1,
        rollout=rolling_state(),
        strategy=ROLLING,
        replicas=1,
        stable=surge,
        now=at(30),
    )
    assert d.action is Action.HOLD and d.phase is Phase.PROGRESSING
    assert "1 old replica(s) still running" in d.message
    done = replace(surge, total_replicas=1)
    assert done.rolled_out(V2.sha256)
    d = plan(
        desired=V2,
        current=V1,
        rollout=rolling_state(),
        strategy=ROLLING,
        replicas=1,
        stable=done,
        now=at(40),
    )
    assert d.action is Action.SUCCEED


def test_rolling_waits_for_controller_to_observe_generation() -> None:
    stale = serving(V2, generation=5, observed_generation=4)
    d = plan(
        desired=V2,
        current=V1,
        rollout=rolling_state(),
        strategy=ROLLING,
        replicas=3,
        stable=stale,
        now=at(5),
    )
    assert d.action is Action.HOLD


@pytest.mark.parametrize(
    ("stable", "seconds", "reason_part"),
    [
        (serving(V2, ready_replicas=0, available_replicas=0), 601, "within progressDeadline"),
        (serving(V2, ready_replicas=0, progress_deadline_exceeded=True), 10, "ProgressDeadline"),
        (serving(V2, ready_replicas=0, crash_looping_pods=2), 10, "crash-looping"),
    ],
)
def test_rolling_rollback(stable: WorkloadState, seconds: float, reason_part: str) -> None:
    d = plan(
        desired=V2,
        current=V1,
        rollout=rolling_state(),
        strategy=ROLLING,
        replicas=3,
        stable=stable,
        now=at(seconds),
    )
    assert d.action is Action.ROLLBACK and d.phase is Phase.DEGRADED
    assert d.restore == V1 and d.target == V2 and d.rollout is None
    assert reason_part in d.message


def test_deadline_edge_is_not_yet_a_failure() -> None:
    slow = serving(V2, ready_replicas=0, available_replicas=0)
    d = plan(
        desired=V2,
        current=V1,
        rollout=rolling_state(),
        strategy=ROLLING,
        replicas=3,
        stable=slow,
        now=at(600),
    )
    assert d.action is Action.HOLD


def test_no_automatic_rollback_holds_degraded() -> None:
    d = plan(
        desired=V2,
        current=V1,
        rollout=rolling_state(),
        strategy=replace(ROLLING, automatic_rollback=False),
        replicas=3,
        stable=serving(V2, ready_replicas=0, crash_looping_pods=1),
        now=at(10),
    )
    assert d.action is Action.HOLD and d.phase is Phase.DEGRADED


# --- canary ----------------------------------------------------------------------------


def canary_state(step: int = 0, started: float = 0, promoted: bool = False) -> RolloutState:
    return RolloutState(
        from_run=V1.run,
        to=V2,
        strategy="Canary",
        started_at=T0,
        step=step,
        step_started_at=at(started),
        promoted=promoted,
    )


def test_canary_start_first_step() -> None:
    d = plan(
        desired=V2,
        current=V1,
        rollout=None,
        strategy=CANARY,
        replicas=4,
        stable=serving(V1),
        now=T0,
    )
    assert d.action is Action.START and d.weight == 10
    assert (d.stable_replicas, d.canary_replicas) == (3, 1)
    assert d.rollout is not None and d.rollout.strategy == "Canary"


def test_canary_paused_then_analysed_then_advanced() -> None:
    canary = serving(V2, replicas=1)
    common = dict(desired=V2, current=V1, strategy=CANARY, replicas=4, stable=serving(V1, 3))
    d = plan(**common, rollout=canary_state(), canary=canary, analysis=GOOD, now=at(30))  # type: ignore[arg-type]
    assert d.action is Action.HOLD and d.reason == "CanaryPaused"
    d = plan(**common, rollout=canary_state(), canary=canary, analysis=GOOD, now=at(61))  # type: ignore[arg-type]
    assert d.action is Action.ADVANCE and d.step == 1 and d.weight == 50
    assert (d.stable_replicas, d.canary_replicas) == (2, 2)
    assert d.rollout is not None and d.rollout.step_started_at == at(61)


def test_canary_last_step_promotes_then_succeeds() -> None:
    common = dict(desired=V2, current=V1, strategy=CANARY, replicas=4)
    d = plan(
        **common,  # type: ignore[arg-type]
        rollout=canary_state(step=1),
        stable=serving(V1, 2),
        canary=serving(V2, 2),
        analysis=GOOD,
        now=at(61),
    )
    assert d.action is Action.PROMOTE and d.weight == 100
    # The canary keeps its pods until the stable set has taken the new model.
    assert (d.stable_replicas, d.canary_replicas) == (4, 2)
    assert d.rollout is not None and d.rollout.promoted
    promoted = d.rollout
    d = plan(**common, rollout=promoted, stable=serving(V2, 4), canary=None, now=at(90))  # type: ignore[arg-type]
    assert d.action is Action.SUCCEED


def test_canary_bad_analysis_rolls_back() -> None:
    bad = AnalysisSample(requests=100, errors=20, p99_latency_ms=500.0, prediction_shift=0.9)
    d = plan(
        desired=V2,
        current=V1,
        rollout=canary_state(),
        strategy=CANARY,
        replicas=4,
        stable=serving(V1, 3),
        canary=serving(V2, 1),
        analysis=bad,
        now=at(61),
    )
    assert d.action is Action.ROLLBACK and d.reason == "AnalysisFailed"
    assert d.canary_replicas == 0 and d.restore == V1
    assert "error rate 20.00%" in d.message and "p99 latency" in d.message
    assert "prediction shift" in d.message


def test_canary_inconclusive_waits_then_gives_up() -> None:
    few = AnalysisSample(requests=3)
    common = dict(
        desired=V2,
        current=V1,
        rollout=canary_state(),
        strategy=CANARY,
        replicas=4,
        stable=serving(V1, 3),
        canary=serving(V2, 1),
        analysis=few,
    )
    d = plan(**common, now=at(61))  # type: ignore[arg-type]
    assert d.action is Action.HOLD and d.reason == "CanaryAnalysing"
    d = plan(**common, now=at(60 + 601))  # type: ignore[arg-type]
    assert d.action is Action.ROLLBACK and d.reason == "AnalysisInconclusive"


def test_canary_crashloop_rolls_back() -> None:
    d = plan(
        desired=V2,
        current=V1,
        rollout=canary_state(),
        strategy=CANARY,
        replicas=4,
        stable=serving(V1, 3),
        canary=serving(V2, 1, ready_replicas=0, crash_looping_pods=1),
        now=at(5),
    )
    assert d.action is Action.ROLLBACK and d.reason == "CanaryFailed"


def test_canary_analysis_failure_without_rollback_holds() -> None:
    bad = AnalysisSample(requests=100, errors=50)
    d = plan(
        desired=V2,
        current=V1,
        rollout=canary_state(),
        strategy=replace(CANARY, rollback_on_analysis_failure=False),
        replicas=4,
        stable=serving(V1, 3),
        canary=serving(V2, 1),
        analysis=bad,
        now=at(61),
    )
    assert d.action is Action.HOLD and d.phase is Phase.DEGRADED


# --- helpers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "weight", "expected"),
    [(4, 10, (3, 1)), (4, 50, (2, 2)), (4, 100, (0, 4)), (1, 10, (1, 1)), (10, 25, (7, 3))],
)
def test_canary_replicas(total: int, weight: int, expected: tuple[int, int]) -> None:
    assert canary_replicas(total, weight) == expected


@pytest.mark.parametrize(
    ("sample", "result"),
    [
        (None, "inconclusive"),
        (AnalysisSample(requests=5), "inconclusive"),
        (GOOD, "pass"),
        (AnalysisSample(requests=100, errors=2), "fail"),
        (AnalysisSample(requests=100, errors=1), "pass"),  # exactly the 1% limit
        (AnalysisSample(requests=100, p99_latency_ms=101), "fail"),
        (AnalysisSample(requests=100, prediction_shift=0.3), "fail"),
    ],
)
def test_analyse(sample: AnalysisSample | None, result: str) -> None:
    assert analyse(sample, AnalysisLimits(min_requests=10)).result == result


def test_manual_rollback_is_a_rolling_update_even_for_a_rolled_back_run() -> None:
    d = plan(
        desired=V1,
        current=V2,
        rollout=None,
        strategy=CANARY,
        replicas=3,
        stable=serving(V2),
        rolled_back={V1.run},
        now=T0,
        manual=True,
    )
    assert d.action is Action.START and d.target == V1 and d.reason == "ManualRollback"
    assert d.manual and d.rollout is not None and d.rollout.strategy == "RollingUpdate"
    same = plan(
        desired=V2,
        current=V2,
        rollout=None,
        strategy=ROLLING,
        replicas=3,
        stable=serving(V2),
        now=T0,
        manual=True,
    )
    assert same.action is Action.NONE and same.phase is Phase.AVAILABLE
