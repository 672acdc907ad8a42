"""The rollout state machine beyond the basics: superseding and abandoning rollouts, the
first model that never becomes ready, the serving layout of each state, and when the
canary's metrics are needed."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from perennial.core.rollout import (
    Action,
    AnalysisLimits,
    AnalysisSample,
    CanaryStep,
    Layout,
    ModelRef,
    Phase,
    RolloutState,
    Strategy,
    WorkloadState,
    analysis_due,
    layout,
    plan,
)

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
V1 = ModelRef("iris-00001", "file:///a/iris-00001/model.skops", "a" * 64)
V2 = ModelRef("iris-00002", "file:///a/iris-00002/model.skops", "b" * 64)
V3 = ModelRef("iris-00003", "file:///a/iris-00003/model.skops", "c" * 64)
ROLLING = Strategy(progress_deadline_seconds=120)
CANARY = Strategy(
    type="Canary",
    steps=(CanaryStep(25, 30), CanaryStep(50, 30), CanaryStep(100, 0)),
    analysis=AnalysisLimits(min_requests=10),
    progress_deadline_seconds=120,
)
GOOD = AnalysisSample(requests=100, errors=0, p99_latency_ms=3.0, prediction_shift=0.01)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def serving(model: ModelRef, replicas: int = 4, **kw: object) -> WorkloadState:
    base = WorkloadState(
        model_sha256=model.sha256,
        desired_replicas=replicas,
        total_replicas=replicas,
        updated_replicas=replicas,
        ready_replicas=replicas,
        available_replicas=replicas,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def rolling(to: ModelRef = V2, frm: ModelRef | None = V1) -> RolloutState:
    return RolloutState(
        from_run=frm.run if frm else None,
        to=to,
        strategy="RollingUpdate",
        started_at=T0,
        step_started_at=T0,
        revision=2,
    )


def canary(step: int = 0, promoted: bool = False, started: float = 0) -> RolloutState:
    return RolloutState(
        from_run=V1.run,
        to=V2,
        strategy="Canary",
        started_at=T0,
        step=step,
        step_started_at=at(started),
        promoted=promoted,
        revision=2,
    )


# --- a newer model supersedes a rollout; a manual rollback abandons it ------------------


def test_newer_model_supersedes_a_rolling_update() -> None:
    d = plan(
        desired=V3,
        current=V1,
        rollout=rolling(),
        strategy=ROLLING,
        replicas=4,
        stable=serving(V2, ready_replicas=1),
        now=at(10),
    )
    assert d.action is Action.START and d.target == V3
    assert d.aborted == rolling() and "superseded the rollout of iris-00002" in d.message
    assert d.rollout is not None and d.rollout.to == V3 and d.rollout.from_run == V1.run


def test_a_rolled_back_source_model_does_not_supersede() -> None:
    d = plan(
        desired=V3,
        current=V1,
        rollout=rolling(),
        strategy=ROLLING,
        replicas=4,
        stable=serving(V2, ready_replicas=1),
        rolled_back={V3.run},
        now=at(10),
    )
    assert d.action is Action.HOLD and d.rollout == rolling()


def test_manual_rollback_to_the_current_model_aborts_a_canary() -> None:
    d = plan(
        desired=V1,
        current=V1,
        rollout=canary(),
        strategy=CANARY,
        replicas=4,
        stable=serving(V1, 3),
        canary=serving(V2, 1),
        now=at(10),
        manual=True,
    )
    assert d.action is Action.ABORT and d.reason == "ManualRollback" and d.manual
    assert d.rollout is None and d.aborted == canary() and d.target == V1


def test_source_returning_to_the_current_model_aborts_quietly() -> None:
    d = plan(
        desired=V1,
        current=V1,
        rollout=rolling(),
        strategy=ROLLING,
        replicas=4,
        stable=serving(V2, ready_replicas=0),
        now=at(10),
    )
    assert d.action is Action.ABORT and d.reason == "RolloutAborted" and not d.manual


def test_manual_rollback_to_an_older_model_during_a_rollout() -> None:
    d = plan(
        desired=V1,
        current=V2,
        rollout=rolling(to=V3, frm=V2),
        strategy=CANARY,
        replicas=4,
        stable=serving(V3, ready_replicas=0),
        now=at(10),
        manual=True,
    )
    assert d.action is Action.START and d.reason == "ManualRollback" and d.manual
    assert d.rollout is not None and d.rollout.strategy == "RollingUpdate"
    assert d.aborted is not None and d.aborted.to == V3


# --- the first model has nothing to roll back to -------------------------------------


def test_first_model_never_ready_holds_degraded_then_recovers() -> None:
    state = rolling(to=V1, frm=None)
    stuck = plan(
        desired=V1,
        current=None,
        rollout=state,
        strategy=ROLLING,
        replicas=2,
        stable=serving(V1, 2, ready_replicas=0, available_replicas=0),
        now=at(121),
    )
    assert stuck.action is Action.HOLD and stuck.phase is Phase.DEGRADED
    assert stuck.reason == "RolloutStalled" and "no previous model" in stuck.message
    assert stuck.rollout == state
    late = plan(
        desired=V1,
        current=None,
        rollout=state,
        strategy=ROLLING,
        replicas=2,
        stable=serving(V1, 2),
        now=at(300),
    )
    assert late.action is Action.SUCCEED


def test_stuck_first_model_is_superseded_by_the_next() -> None:
    d = plan(
        desired=V2,
        current=None,
        rollout=rolling(to=V1, frm=None),
        strategy=ROLLING,
        replicas=2,
        stable=serving(V1, 2, ready_replicas=0, crash_looping_pods=2),
        now=at(500),
    )
    assert d.action is Action.START and d.target == V2 and d.aborted is not None


def test_canary_pods_never_ready_roll_back_at_the_deadline() -> None:
    slow = serving(V2, 1, ready_replicas=0, available_replicas=0)
    common = dict(
        desired=V2,
        current=V1,
        rollout=canary(),
        strategy=CANARY,
        replicas=4,
        stable=serving(V1, 3),
        canary=slow,
    )
    assert plan(**common, now=at(120)).action is Action.HOLD  # type: ignore[arg-type]
    d = plan(**common, now=at(121))  # type: ignore[arg-type]
    assert d.action is Action.ROLLBACK and d.reason == "CanaryFailed"
    assert "within progressDeadlineSeconds" in d.message


def test_canary_not_ready_without_automatic_rollback_holds_stalled() -> None:
    d = plan(
        desired=V2,
        current=V1,
        rollout=canary(),
        strategy=replace(CANARY, automatic_rollback=False),
        replicas=4,
        stable=serving(V1, 3),
        canary=serving(V2, 1, ready_replicas=0, crash_looping_pods=1),
        now=at(5),
    )
    assert d.action is Action.HOLD and d.reason == "CanaryStalled"
    assert d.phase is Phase.DEGRADED


def test_promotion_that_never_becomes_ready_rolls_back() -> None:
    d = plan(
        desired=V2,
        current=V1,
        rollout=canary(step=1, promoted=True),
        strategy=CANARY,
        replicas=4,
        stable=serving(V2, 4, ready_replicas=2, available_replicas=2),
        canary=serving(V2, 2),
        now=at(121),
    )
    assert d.action is Action.ROLLBACK and d.reason == "RolloutFailed" and d.restore == V1


def test_every_canary_step_below_100_is_analysed_before_promotion() -> None:
    state = canary()
    actions = []
    now = 0.0
    for _ in range(4):
        weight = CANARY.step(state.step).weight
        stable_n = 4 - max(1, -(-4 * weight // 100))
        d = plan(
            desired=V2,
            current=V1,
            rollout=state,
            strategy=CANARY,
            replicas=4,
            stable=serving(V1, stable_n),
            canary=serving(V2, 4 - stable_n),
            analysis=GOOD,
            now=at(now + 31),
        )
        actions.append((d.action, d.weight))
        if d.rollout is None or d.action is Action.PROMOTE:
            break
        state = d.rollout
        now += 31
    assert actions == [(Action.ADVANCE, 50), (Action.PROMOTE, 100)]


# --- layout ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "rollout", "strategy", "expected"),
    [
        (None, None, ROLLING, Layout(None, 4, None, 0)),
        (V1, None, CANARY, Layout(V1, 4, None, 0)),
        (V1, rolling(), ROLLING, Layout(V2, 4, None, 0)),
        (None, rolling(to=V1, frm=None), ROLLING, Layout(V1, 4, None, 0)),
        (V1, canary(step=0), CANARY, Layout(V1, 3, V2, 1)),
        (V1, canary(step=1), CANARY, Layout(V1, 2, V2, 2)),
        (V1, canary(step=1, promoted=True), CANARY, Layout(V2, 4, V2, 2)),
        (V1, canary(step=7), CANARY, Layout(V1, 0, V2, 4)),  # steps edited: clamped
    ],
)
def test_layout(
    current: ModelRef | None, rollout: RolloutState | None, strategy: Strategy, expected: Layout
) -> None:
    assert layout(current=current, rollout=rollout, strategy=strategy, replicas=4) == expected


# --- when the candidate's metrics are needed ---------------------------------------------


def test_analysis_is_due_only_after_the_pause_with_ready_canary_pods() -> None:
    ready = serving(V2, 1)
    kw = dict(strategy=CANARY, replicas=4)
    assert not analysis_due(None, canary=ready, now=at(60), **kw)  # type: ignore[arg-type]
    assert not analysis_due(rolling(), canary=ready, now=at(60), **kw)  # type: ignore[arg-type]
    assert not analysis_due(canary(), canary=ready, now=at(29), **kw)  # type: ignore[arg-type]
    assert analysis_due(canary(), canary=ready, now=at(30), **kw)  # type: ignore[arg-type]
    not_ready = serving(V2, 1, ready_replicas=0)
    assert not analysis_due(canary(), canary=not_ready, now=at(60), **kw)  # type: ignore[arg-type]
    assert not analysis_due(canary(promoted=True), canary=ready, now=at(60), **kw)  # type: ignore[arg-type]


# --- steady states and progress messages ---------------------------------------------------


def test_steady_state_waits_for_replicas_then_serves() -> None:
    none_ready = plan(
        desired=V1,
        current=V1,
        rollout=None,
        strategy=ROLLING,
        replicas=2,
        stable=serving(V1, 2, ready_replicas=0),
        now=T0,
    )
    assert none_ready.action is Action.NONE and none_ready.phase is Phase.PROGRESSING
    assert none_ready.reason == "WaitingForReplicas" and "0/2" in none_ready.message
    scaled_to_zero = plan(
        desired=V1,
        current=V1,
        rollout=None,
        strategy=ROLLING,
        replicas=0,
        stable=serving(V1, 0),
        now=T0,
    )
    assert scaled_to_zero.phase is Phase.AVAILABLE


def test_rolling_progress_message_waits_for_the_controller_first() -> None:
    not_taken = plan(
        desired=V2,
        current=V1,
        rollout=rolling(),
        strategy=ROLLING,
        replicas=4,
        stable=serving(V2, generation=3, observed_generation=2),
        now=at(1),
    )
    assert "waiting for the Deployment controller" in not_taken.message
    halfway = plan(
        desired=V2,
        current=V1,
        rollout=rolling(),
        strategy=ROLLING,
        replicas=4,
        stable=serving(V2, updated_replicas=2, ready_replicas=3),
        now=at(1),
    )
    assert "2/4 updated, 3/4 ready" in halfway.message
