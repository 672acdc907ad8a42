"""The rollout state machine of a ModelDeployment: pure, time passed in.

``plan()`` looks at what should serve (the desired model), what serves now, the rollout in
progress (if any) and what the cluster reports about the serving workloads, and returns
one ``Decision``: what to do next and why. ``layout()`` turns the state after a decision
into what the two serving Deployments must run. The operator (and the local runner) carry
the decision out and record the new state; nothing here reads a clock or talks to a server.

Rolling: the stable Deployment's pod template takes the new model (``maxUnavailable: 0``
keeps the old pods serving until new ones are ready); success when every replica is
updated and ready. Canary: a second Deployment runs the candidate with replicas that
approximate each step's weight; after each step's pause an analysis of the candidate's
metrics must pass; after the last step below 100% the stable Deployment is promoted (the
canary keeps its pods until the stable set has rolled out). Failure (deadline passed, pods
crash-looping, analysis failed) rolls back: the stable Deployment keeps or regains the
previous model and the canary is scaled to zero; the failed run is remembered so it is not
retried in a loop. A first model that fails has nothing to roll back to: the rollout holds,
Degraded, until it recovers or a newer model supersedes it.

A newer desired model supersedes a rollout in progress (as a new pod template does for a
Deployment); a manual rollback (``manual=True``) abandons it and rolls the chosen model
out as a plain rolling update (it served before: no canary).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

ROLLING = "RollingUpdate"
CANARY = "Canary"


class Phase(StrEnum):
    WAITING = "Waiting"
    PROGRESSING = "Progressing"
    AVAILABLE = "Available"
    DEGRADED = "Degraded"


class Action(StrEnum):
    WAIT = "Wait"  # nothing to serve yet
    NONE = "None"  # steady state: nothing to change (the layout is re-applied)
    START = "Start"  # begin a rollout to ``target``
    HOLD = "Hold"  # rollout in progress, waiting for pods or a pause
    ADVANCE = "Advance"  # canary: go to step ``step``
    PROMOTE = "Promote"  # canary: stable takes the candidate
    SUCCEED = "Succeed"  # rollout finished: current := target
    ROLLBACK = "Rollback"  # give up on ``target`` (it failed) and restore ``restore``
    ABORT = "Abort"  # abandon the rollout in progress; the current model stays


@dataclass(frozen=True)
class ModelRef:
    """A servable model: the file and its digest, plus what a Pod needs to read it.

    Two refs are the same model when their sha256 agree (:meth:`same`)."""

    run: str
    model_uri: str
    sha256: str
    image: str | None = None  # the image that trained it (serves it unless spec.image)
    artifact_claim: str | None = None  # PersistentVolumeClaim holding a file:// model
    artifact_mount_path: str | None = None
    secret_name: str | None = None  # Secret with object-store credentials (envFrom)
    # Its metrics on its run's holdout (sorted pairs). Not part of the model's identity: a
    # status written before they were recorded names the same model.
    holdout_metrics: tuple[tuple[str, float], ...] = field(default=(), compare=False)

    def holdout(self, metric: str) -> float | None:
        return dict(self.holdout_metrics).get(metric)

    def same(self, other: ModelRef | None) -> bool:
        return other is not None and other.sha256 == self.sha256


@dataclass(frozen=True)
class CanaryStep:
    weight: int
    pause_seconds: int = 0


@dataclass(frozen=True)
class AnalysisLimits:
    max_error_rate: float = 0.01
    max_p99_latency_ms: float = 100.0
    max_prediction_shift: float = 0.25
    min_requests: int = 50


@dataclass(frozen=True)
class Strategy:
    type: str = ROLLING  # or CANARY
    steps: tuple[CanaryStep, ...] = ()
    analysis: AnalysisLimits = field(default_factory=AnalysisLimits)
    progress_deadline_seconds: int = 600
    automatic_rollback: bool = True
    rollback_on_analysis_failure: bool = True

    @property
    def canary(self) -> bool:
        return self.type == CANARY and bool(self.steps)

    def step(self, index: int) -> CanaryStep:
        """Step ``index``, clamped (the steps may have been edited mid-rollout)."""
        if not self.steps:
            return CanaryStep(100, 0)
        return self.steps[max(0, min(index, len(self.steps) - 1))]


@dataclass(frozen=True)
class WorkloadState:
    """What the cluster reports for one serving Deployment (and its pods)."""

    exists: bool = True
    model_sha256: str | None = None  # the model its pod template runs
    desired_replicas: int = 1
    # status.replicas: the Pods of every ReplicaSet, old ones included (a surge rolling
    # update has more than desired_replicas until the old Pods are gone).
    total_replicas: int = 0
    generation: int = 1
    observed_generation: int = 1
    updated_replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    unavailable_replicas: int = 0
    progress_deadline_exceeded: bool = False
    crash_looping_pods: int = 0
    crash_reason: str | None = None

    def rolled_out(self, sha256: str) -> bool:
        """Every replica runs ``sha256`` and is ready, no old replica remains; the controller
        has caught up (what ``kubectl rollout status`` waits for)."""
        return (
            self.exists
            and self.model_sha256 == sha256
            and self.observed_generation >= self.generation
            and self.updated_replicas >= self.desired_replicas
            and self.total_replicas <= self.updated_replicas
            and self.ready_replicas >= self.desired_replicas
            and self.available_replicas >= self.desired_replicas
            and self.unavailable_replicas == 0
        )


@dataclass(frozen=True)
class AnalysisSample:
    """The candidate's serving metrics (cumulative over the canary's life)."""

    requests: int
    errors: int = 0
    p99_latency_ms: float | None = None
    prediction_shift: float | None = None


@dataclass(frozen=True)
class AnalysisVerdict:
    result: str  # "pass", "fail" or "inconclusive"
    reasons: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        return "; ".join(self.reasons) if self.reasons else self.result


@dataclass(frozen=True)
class RolloutState:
    """``status.rollout`` while a rollout is in progress."""

    from_run: str | None
    to: ModelRef
    strategy: str
    started_at: datetime
    step: int = 0
    step_started_at: datetime | None = None
    promoted: bool = False
    revision: int = 0  # the revision number the target will have (set by the caller)


@dataclass(frozen=True)
class Decision:
    action: Action
    phase: Phase
    reason: str
    message: str
    target: ModelRef | None = None  # the model a rollout goes to (or that serves)
    restore: ModelRef | None = None  # the model a rollback returns to
    step: int | None = None
    weight: int | None = None
    stable_replicas: int | None = None
    canary_replicas: int | None = None
    rollout: RolloutState | None = None  # the rollout state to record (None: clear it)
    aborted: RolloutState | None = None  # a rollout abandoned by this decision
    manual: bool = False  # the decision carries out a manual rollback


@dataclass(frozen=True)
class Layout:
    """What the serving Deployments must run after a decision.

    ``stable`` None: leave the stable Deployment's pod template as it is (nothing known to
    serve yet); ``canary`` None: no canary is needed (scale an existing one to zero)."""

    stable: ModelRef | None
    stable_replicas: int
    canary: ModelRef | None
    canary_replicas: int


def canary_replicas(total: int, weight: int) -> tuple[int, int]:
    """(stable, canary) replica counts approximating ``weight`` percent of traffic.

    The candidate always gets at least one pod and, below 100%, the stable model keeps
    at least one, so some traffic still reaches the known-good model."""
    if weight >= 100:
        return 0, max(total, 1)
    total = max(total, 1)
    canary = max(1, math.ceil(total * weight / 100))
    stable = max(1, total - canary)
    return stable, canary


def layout(
    *,
    current: ModelRef | None,
    rollout: RolloutState | None,
    strategy: Strategy,
    replicas: int,
) -> Layout:
    """The serving layout of a state (``current`` and the rollout in progress)."""
    if rollout is None:
        return Layout(current, replicas, None, 0)
    if rollout.strategy != CANARY or current is None:
        return Layout(rollout.to, replicas, None, 0)
    stable_n, canary_n = canary_replicas(replicas, strategy.step(rollout.step).weight)
    if rollout.promoted:
        # The canary keeps serving until the stable set runs the new model everywhere.
        return Layout(rollout.to, replicas, rollout.to, canary_n)
    return Layout(current, stable_n, rollout.to, canary_n)


def analyse(sample: AnalysisSample | None, limits: AnalysisLimits) -> AnalysisVerdict:
    """Compare the candidate's metrics with the limits."""
    if sample is None:
        return AnalysisVerdict("inconclusive", ("no metrics from the candidate yet",))
    if sample.requests < limits.min_requests:
        return AnalysisVerdict(
            "inconclusive",
            (f"{sample.requests} requests < minRequests {limits.min_requests}",),
        )
    failures: list[str] = []
    error_rate = sample.errors / sample.requests if sample.requests else 0.0
    if error_rate > limits.max_error_rate:
        failures.append(f"error rate {error_rate:.2%} > maxErrorRate {limits.max_error_rate:g}")
    if sample.p99_latency_ms is not None and sample.p99_latency_ms > limits.max_p99_latency_ms:
        failures.append(
            f"p99 latency {sample.p99_latency_ms:.1f}ms > maxP99LatencyMs "
            f"{limits.max_p99_latency_ms:g}ms"
        )
    if (
        sample.prediction_shift is not None
        and sample.prediction_shift > limits.max_prediction_shift
    ):
        failures.append(
            f"prediction shift (PSI) {sample.prediction_shift:.3f} > maxPredictionShift "
            f"{limits.max_prediction_shift:g}"
        )
    if failures:
        return AnalysisVerdict("fail", tuple(failures))
    return AnalysisVerdict(
        "pass",
        (
            f"error rate {error_rate:.2%}, p99 {sample.p99_latency_ms or 0:.1f}ms, "
            f"shift {sample.prediction_shift or 0:.3f} over {sample.requests} requests",
        ),
    )


def _unhealthy(workload: WorkloadState, deadline_passed: bool) -> str | None:
    if workload.crash_looping_pods > 0:
        why = f" ({workload.crash_reason})" if workload.crash_reason else ""
        return f"{workload.crash_looping_pods} pod(s) crash-looping{why}"
    if workload.progress_deadline_exceeded:
        return "the Deployment reports ProgressDeadlineExceeded"
    if deadline_passed:
        return "pods did not become ready within progressDeadlineSeconds"
    return None


def _elapsed(now: datetime, since: datetime | None) -> float:
    return 0.0 if since is None else (now - since).total_seconds()


def _canary_ready(
    state: RolloutState, strategy: Strategy, replicas: int, canary: WorkloadState | None
) -> bool:
    view = canary or WorkloadState(exists=False)
    _, want = canary_replicas(replicas, strategy.step(state.step).weight)
    return view.rolled_out(state.to.sha256) and view.ready_replicas >= want


def analysis_due(
    rollout: RolloutState | None,
    *,
    strategy: Strategy,
    replicas: int,
    canary: WorkloadState | None,
    now: datetime,
) -> bool:
    """Whether the candidate's metrics are needed now: a canary step whose pods are ready
    and whose pause is over (the caller scrapes only then)."""
    if rollout is None or rollout.strategy != CANARY or rollout.promoted:
        return False
    if not _canary_ready(rollout, strategy, replicas, canary):
        return False
    return _elapsed(now, rollout.step_started_at) >= strategy.step(rollout.step).pause_seconds


def plan(
    *,
    desired: ModelRef | None,
    current: ModelRef | None,
    rollout: RolloutState | None,
    strategy: Strategy,
    replicas: int,
    stable: WorkloadState,
    canary: WorkloadState | None = None,
    analysis: AnalysisSample | None = None,
    rolled_back: Collection[str] = (),
    now: datetime,
    manual: bool = False,
) -> Decision:
    """The next step of the rollout state machine.

    ``manual``: ``desired`` is a model chosen by hand (spec.rollbackTo or the rollback
    annotation): it is rolled out even if it was rolled back before, without a canary,
    and abandons any rollout in progress."""
    if rollout is not None:
        if (
            desired is not None
            and not desired.same(rollout.to)
            and (manual or desired.run not in rolled_back)
        ):
            return _replace_rollout(
                rollout,
                desired,
                current,
                strategy=strategy,
                replicas=replicas,
                now=now,
                manual=manual,
            )
        return _continue(
            rollout,
            current=current,
            strategy=strategy,
            replicas=replicas,
            stable=stable,
            canary=canary,
            analysis=analysis,
            now=now,
        )

    if desired is None:
        if current is None:
            return Decision(
                Action.WAIT,
                Phase.WAITING,
                "NoBlessedModel",
                "waiting for a blessed model: the source has no champion yet",
            )
        desired = current
    if current is not None and desired.same(current):
        return _steady(current, replicas=replicas, stable=stable)
    if not manual and desired.run in rolled_back:
        serving = f"serving {current.run}" if current else "nothing serves"
        return Decision(
            Action.NONE,
            Phase.DEGRADED,
            "RolledBack",
            f"run {desired.run} was rolled back and is not retried; {serving} until a new "
            "model is blessed or spec.rollbackTo is set",
            target=current,
        )
    return _start(desired, current, strategy=strategy, replicas=replicas, now=now, manual=manual)


def _steady(current: ModelRef, *, replicas: int, stable: WorkloadState) -> Decision:
    if not stable.exists or stable.model_sha256 != current.sha256:
        # The serving Deployment is missing or was changed behind our back: the layout
        # puts the current model back.
        return Decision(
            Action.NONE,
            Phase.PROGRESSING,
            "Restoring",
            f"restoring the serving Deployment to model {current.run}",
            target=current,
        )
    if stable.crash_looping_pods > 0:
        return Decision(
            Action.NONE,
            Phase.DEGRADED,
            "ServingUnhealthy",
            f"model {current.run} serves, but {_unhealthy(stable, False)}",
            target=current,
        )
    if stable.ready_replicas < min(replicas, 1):
        return Decision(
            Action.NONE,
            Phase.PROGRESSING,
            "WaitingForReplicas",
            f"model {current.run}: {stable.ready_replicas}/{replicas} replicas ready",
            target=current,
        )
    return Decision(
        Action.NONE,
        Phase.AVAILABLE,
        "Serving",
        f"serving model {current.run} on {stable.ready_replicas}/{replicas} ready replica(s)",
        target=current,
    )


def _start(
    target: ModelRef,
    current: ModelRef | None,
    *,
    strategy: Strategy,
    replicas: int,
    now: datetime,
    manual: bool = False,
) -> Decision:
    from_run = current.run if current else None
    # The first model and manual rollbacks go out directly; canaries need a stable baseline.
    use_canary = strategy.canary and current is not None and not manual
    state = RolloutState(
        from_run=from_run,
        to=target,
        strategy=CANARY if use_canary else ROLLING,
        started_at=now,
        step=0,
        step_started_at=now,
    )
    if use_canary:
        weight = strategy.steps[0].weight
        stable_n, canary_n = canary_replicas(replicas, weight)
        return Decision(
            Action.START,
            Phase.PROGRESSING,
            "RolloutStarted",
            f"canary rollout {from_run} -> {target.run}: step 1/{len(strategy.steps)} "
            f"at {weight}% ({canary_n} canary, {stable_n} stable pods)",
            target=target,
            step=0,
            weight=weight,
            stable_replicas=stable_n,
            canary_replicas=canary_n,
            rollout=state,
        )
    if manual:
        reason, message = "ManualRollback", f"manual rollback {from_run or 'nothing'} -> "
    else:
        reason, message = "RolloutStarted", f"rolling update {from_run or 'nothing'} -> "
    return Decision(
        Action.START,
        Phase.PROGRESSING,
        reason,
        message + target.run,
        target=target,
        stable_replicas=replicas,
        canary_replicas=0,
        rollout=state,
        manual=manual,
    )


def _replace_rollout(
    state: RolloutState,
    desired: ModelRef,
    current: ModelRef | None,
    *,
    strategy: Strategy,
    replicas: int,
    now: datetime,
    manual: bool,
) -> Decision:
    """``desired`` is no longer the rollout's target: abandon it."""
    if desired.same(current):
        assert current is not None
        return Decision(
            Action.ABORT,
            Phase.PROGRESSING,
            "ManualRollback" if manual else "RolloutAborted",
            f"abandoned the rollout of {state.to.run}; {current.run} serves again",
            target=current,
            stable_replicas=replicas,
            canary_replicas=0,
            rollout=None,
            aborted=state,
            manual=manual,
        )
    decision = _start(
        desired, current, strategy=strategy, replicas=replicas, now=now, manual=manual
    )
    verb = "abandoned" if manual else "superseded"
    return replace(
        decision,
        message=f"{decision.message} ({verb} the rollout of {state.to.run})",
        aborted=state,
    )


def _rollback(
    state: RolloutState, current: ModelRef | None, replicas: int, reason: str, why: str
) -> Decision:
    return Decision(
        Action.ROLLBACK,
        Phase.DEGRADED,
        reason,
        f"rolled back {state.to.run} -> {state.from_run or 'nothing'}: {why}",
        target=state.to,
        restore=current,
        stable_replicas=replicas,
        canary_replicas=0,
        rollout=None,
    )


def _continue(
    state: RolloutState,
    *,
    current: ModelRef | None,
    strategy: Strategy,
    replicas: int,
    stable: WorkloadState,
    canary: WorkloadState | None,
    analysis: AnalysisSample | None,
    now: datetime,
) -> Decision:
    deadline = strategy.progress_deadline_seconds
    if state.strategy != CANARY or state.promoted or current is None:
        # Rolling update (or the promotion step of a canary): wait for the stable set.
        if stable.rolled_out(state.to.sha256):
            return Decision(
                Action.SUCCEED,
                Phase.AVAILABLE,
                "RolloutSucceeded",
                f"model {state.to.run} serves on {stable.ready_replicas} ready replica(s)",
                target=state.to,
                rollout=None,
            )
        problem = _unhealthy(stable, _elapsed(now, state.step_started_at) > deadline)
        if problem and strategy.automatic_rollback and current is not None:
            return _rollback(state, current, replicas, "RolloutFailed", problem)
        if problem:
            why = (
                "no previous model to roll back to"
                if current is None
                else "automatic rollback is disabled"
            )
            return Decision(
                Action.HOLD,
                Phase.DEGRADED,
                "RolloutStalled",
                f"rollout to {state.to.run} is stuck: {problem} ({why})",
                target=state.to,
                rollout=state,
            )
        if stable.model_sha256 != state.to.sha256 or stable.observed_generation < stable.generation:
            progress = "waiting for the Deployment controller to take the new pod template"
        else:
            progress = (
                f"{stable.updated_replicas}/{replicas} updated, "
                f"{stable.ready_replicas}/{replicas} ready"
            )
            old = stable.total_replicas - stable.updated_replicas
            if old > 0:
                progress += f", {old} old replica(s) still running"
        return Decision(
            Action.HOLD,
            Phase.PROGRESSING,
            "RolloutInProgress",
            f"rolling out {state.to.run}: {progress}",
            target=state.to,
            rollout=state,
        )

    # Canary step ``state.step``.
    steps = strategy.steps
    step = strategy.step(state.step)
    label = f"step {state.step + 1}/{max(len(steps), 1)} at {step.weight}%"
    canary_view = canary or WorkloadState(exists=False)
    _, want_canary = canary_replicas(replicas, step.weight)
    elapsed = _elapsed(now, state.step_started_at)
    if not _canary_ready(state, strategy, replicas, canary):
        problem = _unhealthy(canary_view, elapsed > deadline)
        if problem and strategy.automatic_rollback:
            return _rollback(state, current, replicas, "CanaryFailed", f"{label}: {problem}")
        return Decision(
            Action.HOLD,
            Phase.DEGRADED if problem else Phase.PROGRESSING,
            "CanaryStalled" if problem else "CanaryProgressing",
            f"canary {state.to.run} {label}: "
            + (problem or f"{canary_view.ready_replicas}/{want_canary} canary pods ready"),
            target=state.to,
            rollout=state,
        )
    if elapsed < step.pause_seconds:
        left = step.pause_seconds - elapsed
        return Decision(
            Action.HOLD,
            Phase.PROGRESSING,
            "CanaryPaused",
            f"canary {state.to.run} {label}: pausing {left:.0f}s more before analysis",
            target=state.to,
            rollout=state,
        )
    verdict = analyse(analysis, strategy.analysis)
    if verdict.result == "fail":
        if strategy.rollback_on_analysis_failure:
            return _rollback(
                state, current, replicas, "AnalysisFailed", f"{label}: {verdict.message}"
            )
        return Decision(
            Action.HOLD,
            Phase.DEGRADED,
            "AnalysisFailed",
            f"canary {state.to.run} {label}: analysis failed ({verdict.message}); "
            "automatic rollback on analysis failure is disabled",
            target=state.to,
            rollout=state,
        )
    if verdict.result == "inconclusive":
        if elapsed > step.pause_seconds + deadline:
            return _rollback(
                state,
                current,
                replicas,
                "AnalysisInconclusive",
                f"{label}: no conclusive analysis within progressDeadlineSeconds "
                f"({verdict.message})",
            )
        return Decision(
            Action.HOLD,
            Phase.PROGRESSING,
            "CanaryAnalysing",
            f"canary {state.to.run} {label}: waiting for analysis ({verdict.message})",
            target=state.to,
            rollout=state,
        )
    if state.step + 1 < len(steps) and steps[state.step + 1].weight < 100:
        nxt = state.step + 1
        weight = steps[nxt].weight
        stable_n, canary_n = canary_replicas(replicas, weight)
        return Decision(
            Action.ADVANCE,
            Phase.PROGRESSING,
            "CanaryStepAdvanced",
            f"canary {state.to.run}: analysis passed at {label} ({verdict.message}); "
            f"step {nxt + 1}/{len(steps)} at {weight}%",
            target=state.to,
            step=nxt,
            weight=weight,
            stable_replicas=stable_n,
            canary_replicas=canary_n,
            rollout=replace(state, step=nxt, step_started_at=now),
        )
    return Decision(
        Action.PROMOTE,
        Phase.PROGRESSING,
        "CanaryPromoted",
        f"canary {state.to.run}: analysis passed at {label} ({verdict.message}); "
        "promoting to stable",
        target=state.to,
        step=len(steps) - 1,
        weight=100,
        stable_replicas=replicas,
        canary_replicas=want_canary,
        rollout=replace(state, promoted=True, step_started_at=now),
    )
