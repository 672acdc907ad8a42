"""A ModelDeployment's status after a rollout decision: pure, in the wire shape.

``read_state`` turns ``status`` into the core's types (current model, history, rollout in
progress, manual pin); ``next_status`` takes a :class:`~perennial.core.rollout.Decision`
and returns the whole new status, the events to post and the metric outcomes. Conditions:

- kstatus ``Ready`` / ``Reconciling`` / ``Stalled`` (Argo CD, Flux, ``kubectl wait``):
  Available -> Ready; Waiting and Progressing -> Reconciling; Degraded -> Stalled (after an
  automatic rollback the source's model is not served and will not be until a new model is
  blessed or a user acts).
- ``Degraded`` (True while the phase is Degraded) and ``RolledBack`` (True after an
  automatic rollback, until another model is rolled out or chosen by hand).
- ``MetricsAvailable`` is the monitoring scrape's, kept as it is; ``status.monitoring``
  is dropped when another model becomes current (its numbers were the replaced model's,
  and without ``lastScrapeTime`` the next scrape is due at once).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from perennial.core import conditions as cond
from perennial.core.model_source import Desired, ManualPin, Notice, Revision, holdout_metrics
from perennial.core.rollout import (
    Action,
    Decision,
    Layout,
    ModelRef,
    Phase,
    RolloutState,
    Strategy,
    WorkloadState,
    layout,
)

DEGRADED: Final = "Degraded"
ROLLED_BACK: Final = "RolledBack"
METRICS_AVAILABLE: Final = "MetricsAvailable"
MAX_ROLLED_BACK_RUNS: Final = 50

# Reasons of ordinary progress: the phase/conditions say enough, no event is posted.
QUIET_REASONS: Final = frozenset(
    {
        "RolloutInProgress",
        "CanaryProgressing",
        "CanaryPaused",
        "CanaryAnalysing",
        "WaitingForReplicas",
        "Serving",
        "RolledBack",
        "ChampionAvailable",
        "PinnedRun",
    }
)
_ACTION_EVENTS: Final = {
    Action.START: "Normal",
    Action.ADVANCE: "Normal",
    Action.PROMOTE: "Normal",
    Action.SUCCEED: "Normal",
    Action.ROLLBACK: "Warning",
    Action.ABORT: "Normal",
}


@dataclass(frozen=True)
class DeploymentState:
    """What ``status`` records, in the core's types."""

    current: Revision | None
    history: tuple[Revision, ...]
    rollout: RolloutState | None
    rolled_back: tuple[str, ...]
    pin: ManualPin | None
    last_token: str | None


@dataclass(frozen=True)
class StatusUpdate:
    status: dict[str, Any]
    events: tuple[Notice, ...]
    rollout_result: str | None = None  # Succeeded / RolledBack: perennial_rollouts_total
    rollback_reason: str | None = None  # perennial_rollbacks_total
    current: ModelRef | None = None  # after the decision
    rollout: RolloutState | None = None  # after the decision
    layout: Layout | None = None  # what the serving Deployments must run now


# --- wire <-> core ---------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def ref_from_wire(data: Mapping[str, Any] | None) -> ModelRef | None:
    if not isinstance(data, Mapping):
        return None
    run, uri, sha = data.get("run"), data.get("modelUri"), data.get("sha256")
    if not (run and uri and sha):
        return None
    volume = data.get("artifactVolume") or {}
    return ModelRef(
        run=str(run),
        model_uri=str(uri),
        sha256=str(sha),
        image=data.get("image") or None,
        artifact_claim=volume.get("claimName") or None,
        artifact_mount_path=(volume.get("mountPath") or "/artifacts")
        if volume.get("claimName")
        else None,
        secret_name=(data.get("secretRef") or {}).get("name") or None,
        holdout_metrics=holdout_metrics(data.get("holdoutMetrics")),
    )


def revision_from_wire(data: Mapping[str, Any] | None) -> Revision | None:
    ref = ref_from_wire(data)
    if ref is None or data is None:
        return None
    return Revision(ref, int(data.get("revision") or 1), parse_time(data.get("deployedAt")))


def revision_to_wire(ref: ModelRef, revision: int, deployed_at: datetime | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "run": ref.run,
        "revision": max(1, revision),
        "modelUri": ref.model_uri,
        "sha256": ref.sha256,
    }
    if deployed_at is not None:
        out["deployedAt"] = cond.timestamp(deployed_at)
    if ref.image:
        out["image"] = ref.image
    if ref.artifact_claim:
        out["artifactVolume"] = {
            "claimName": ref.artifact_claim,
            "mountPath": ref.artifact_mount_path or "/artifacts",
        }
    if ref.secret_name:
        out["secretRef"] = {"name": ref.secret_name}
    if ref.holdout_metrics:
        out["holdoutMetrics"] = dict(ref.holdout_metrics)
    return out


def rollout_from_wire(data: Mapping[str, Any] | None) -> RolloutState | None:
    if not isinstance(data, Mapping):
        return None
    target = revision_from_wire(data.get("model"))
    started = parse_time(data.get("startedAt"))
    if target is None or started is None:
        return None
    return RolloutState(
        from_run=data.get("fromRun") or None,
        to=target.ref,
        strategy=str(data.get("strategy") or "RollingUpdate"),
        started_at=started,
        step=int(data.get("step") or 0),
        step_started_at=parse_time(data.get("stepStartedAt")) or started,
        promoted=bool(data.get("promoted")),
        revision=target.revision,
    )


def rollout_to_wire(state: RolloutState, weight: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "toRun": state.to.run,
        "strategy": state.strategy,
        "startedAt": cond.timestamp(state.started_at),
        "model": revision_to_wire(state.to, state.revision, None),
    }
    if state.from_run:
        out["fromRun"] = state.from_run
    if state.step_started_at is not None:
        out["stepStartedAt"] = cond.timestamp(state.step_started_at)
    if state.strategy == "Canary":
        out["step"] = state.step
        out["promoted"] = state.promoted
        if weight is not None:
            out["weight"] = weight
    return out


def read_state(status: Mapping[str, Any] | None) -> DeploymentState:
    status = status or {}
    history = tuple(
        rev for rev in (revision_from_wire(h) for h in status.get("history") or []) if rev
    )
    pin_data = status.get("manualRollback") or {}
    pin = (
        ManualPin(
            run=str(pin_data["run"]),
            source_run=pin_data.get("sourceRun") or None,
            requested_at=parse_time(pin_data.get("requestedAt")),
        )
        if pin_data.get("run")
        else None
    )
    return DeploymentState(
        current=revision_from_wire(status.get("currentModel")),
        history=history,
        rollout=rollout_from_wire(status.get("rollout")),
        rolled_back=tuple(str(r) for r in status.get("rolledBackRuns") or []),
        pin=pin,
        last_token=status.get("lastRollbackToken") or None,
    )


def next_revision(state: DeploymentState) -> int:
    numbers = [r.revision for r in (state.current, *state.history) if r is not None]
    if state.rollout is not None:
        numbers.append(state.rollout.revision)
    return max(numbers, default=0) + 1


# --- the next status -------------------------------------------------------------------


def _kstatus_state(phase: Phase) -> str:
    return {
        Phase.AVAILABLE: "ready",
        Phase.WAITING: "reconciling",
        Phase.PROGRESSING: "reconciling",
        Phase.DEGRADED: "stalled",
    }[phase]


def _previous_reason(status: Mapping[str, Any]) -> str | None:
    ready = cond.get(status.get("conditions"), cond.READY)
    return None if ready is None else str(ready.get("reason"))


def _weight(decision: Decision, state: RolloutState | None, steps: Sequence[int]) -> int | None:
    if decision.weight is not None:
        return decision.weight
    if state is None or state.strategy != "Canary" or not steps:
        return None
    if state.promoted:
        return 100
    return steps[max(0, min(state.step, len(steps) - 1))]


def next_status(
    *,
    old: Mapping[str, Any] | None,
    generation: int | None,
    desired: Desired,
    decision: Decision,
    stable: WorkloadState,
    canary: WorkloadState | None,
    history_limit: int,
    endpoint: str | None,
    strategy: Strategy | None = None,
    replicas: int | None = None,
    canary_weights: Sequence[int] = (),
    now: datetime,
) -> StatusUpdate:
    """The whole new status after ``decision`` (``old`` is the status it was made from),
    and, given ``strategy`` and ``replicas``, the serving layout that goes with it
    (``status.replicas`` then counts the Pods asked for; ``canary_weights`` is only read
    without a strategy)."""
    old = dict(old or {})
    status: dict[str, Any] = copy.deepcopy(old)
    state = read_state(old)
    events: list[Notice] = list(desired.notices)
    result: str | None = None
    rollback_reason: str | None = None
    current = state.current
    history = list(state.history)
    rolled_back = list(state.rolled_back)
    rollout = decision.rollout
    action = decision.action

    if action is Action.START and rollout is not None:
        rollout = replace(rollout, revision=next_revision(state))
        if decision.manual:
            rollback_reason = "Manual"
    elif rollout is not None and state.rollout is not None:
        rollout = replace(rollout, revision=state.rollout.revision)

    if decision.aborted is not None:
        abandoned = decision.aborted.to.run
        if decision.manual:
            status["lastRollout"] = {
                "result": "RolledBack",
                "toRun": abandoned,
                "reason": "ManualRollback",
                "message": f"the rollout of {abandoned} was abandoned for a manual rollback",
                "finishedAt": cond.timestamp(now),
            }
            rollback_reason = "Manual"
        else:
            events.append(
                Notice(
                    "Normal",
                    "RolloutSuperseded",
                    f"the rollout of {abandoned} was superseded: {decision.message}",
                )
            )

    if action is Action.SUCCEED and decision.target is not None:
        revision = state.rollout.revision if state.rollout is not None else next_revision(state)
        new_current = Revision(decision.target, revision, now)
        if current is not None and not current.ref.same(decision.target):
            history.insert(0, current)
        if current is None or not current.ref.same(decision.target):
            # The numbers were the replaced model's: drop them, so no trigger reads them
            # as the new model's, and the next scrape (due at once) measures the new one.
            status.pop("monitoring", None)
        history = [h for h in history if h.ref.run != new_current.ref.run]
        deduped: list[Revision] = []
        for h in history:
            if all(d.ref.run != h.ref.run for d in deduped):
                deduped.append(h)
        history = deduped[: max(0, history_limit)]
        current = new_current
        rolled_back = [r for r in rolled_back if r != decision.target.run]
        status["lastRollout"] = {
            "result": "Succeeded",
            "toRun": decision.target.run,
            "reason": decision.reason,
            "message": decision.message,
            "finishedAt": cond.timestamp(now),
        }
        result = "Succeeded"
    elif action is Action.ROLLBACK and decision.target is not None:
        if decision.target.run not in rolled_back:
            rolled_back.append(decision.target.run)
        rolled_back = rolled_back[-MAX_ROLLED_BACK_RUNS:]
        status["lastRollout"] = {
            "result": "RolledBack",
            "toRun": decision.target.run,
            "reason": decision.reason,
            "message": decision.message,
            "finishedAt": cond.timestamp(now),
        }
        result = "RolledBack"
        rollback_reason = decision.reason

    # Events: one per action, and one when a lasting state (reason) changes.
    if action in _ACTION_EVENTS:
        reason = "RolledBack" if action is Action.ROLLBACK else decision.reason
        events.append(Notice(_ACTION_EVENTS[action], reason, decision.message))

    phase, reason, message = decision.phase, decision.reason, decision.message
    if desired.stalled and action in (Action.NONE, Action.WAIT):
        phase, reason, message = Phase.DEGRADED, desired.reason, desired.message
    elif action is Action.WAIT and desired.reason not in ("", "NoBlessedModel"):
        reason, message = desired.reason, desired.message
    elif desired.manual and action in (Action.NONE, Action.SUCCEED):
        message = f"{message}; {desired.message}"
    if (
        action not in _ACTION_EVENTS
        and reason != _previous_reason(old)
        and reason not in QUIET_REASONS
    ):
        kind = "Warning" if phase is Phase.DEGRADED else "Normal"
        events.append(Notice(kind, reason, message))

    conditions = cond.kstatus(
        old.get("conditions"),
        state=_kstatus_state(phase),
        reason=reason,
        message=message,
        now=now,
        generation=generation,
    )
    degraded = phase is Phase.DEGRADED
    conditions = cond.set_condition(
        conditions,
        DEGRADED,
        degraded,
        reason if degraded else "NotDegraded",
        message if degraded else "",
        now=now,
        generation=generation,
    )
    rolled_back_now = action is Action.ROLLBACK or (
        action is Action.NONE and decision.reason == "RolledBack"
    )
    conditions = cond.set_condition(
        conditions,
        ROLLED_BACK,
        rolled_back_now,
        decision.reason if rolled_back_now else "NotRolledBack",
        decision.message if rolled_back_now else "",
        now=now,
        generation=generation,
    )

    source = desired.model
    if (
        current is not None
        and source is not None
        and current.ref.same(source)
        and source.holdout_metrics
        and not current.ref.holdout_metrics
    ):
        # A status written before holdout metrics were recorded: take them from the source.
        current = replace(current, ref=replace(current.ref, holdout_metrics=source.holdout_metrics))

    weights = [st.weight for st in strategy.steps] if strategy is not None else canary_weights
    status.update(
        {
            "phase": phase.value,
            "message": message,
            "conditions": conditions,
            "history": [revision_to_wire(h.ref, h.revision, h.deployed_at) for h in history],
            "rolledBackRuns": rolled_back,
        }
    )
    if generation is not None:
        status["observedGeneration"] = generation
    if endpoint:
        status["endpoint"] = endpoint
    _set(
        status,
        "currentModel",
        revision_to_wire(current.ref, current.revision, current.deployed_at) if current else None,
    )
    _set(
        status,
        "rollout",
        rollout_to_wire(rollout, _weight(decision, rollout, weights)) if rollout else None,
    )
    pin = desired.pin
    _set(
        status,
        "manualRollback",
        {
            k: v
            for k, v in {
                "run": pin.run,
                "sourceRun": pin.source_run,
                "requestedAt": cond.timestamp(pin.requested_at) if pin.requested_at else None,
            }.items()
            if v is not None
        }
        if pin
        else None,
    )
    _set(status, "lastRollbackToken", desired.token)
    serving = [w for w in (stable, canary) if w is not None and w.exists]
    new_layout = (
        layout(
            current=current.ref if current else None,
            rollout=rollout,
            strategy=strategy,
            replicas=replicas,
        )
        if strategy is not None and replicas is not None
        else None
    )
    status["replicas"] = (
        new_layout.stable_replicas + new_layout.canary_replicas
        if new_layout is not None and new_layout.stable is not None
        else sum(w.desired_replicas for w in serving)
    )
    status["readyReplicas"] = sum(w.ready_replicas for w in serving)
    return StatusUpdate(
        status=status,
        events=tuple(events),
        rollout_result=result,
        rollback_reason=rollback_reason,
        current=current.ref if current else None,
        rollout=rollout,
        layout=new_layout,
    )


def _set(status: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        status.pop(key, None)
    else:
        status[key] = value


def with_monitoring(
    status: Mapping[str, Any],
    monitoring: Mapping[str, Any] | None,
    *,
    reachable: bool,
    message: str,
    now: datetime,
    generation: int | None,
) -> dict[str, Any]:
    """``status`` with a scrape's result: new numbers (``monitoring``) or, when the server
    could not be read, the last numbers kept and ``reachable: false``; the
    ``MetricsAvailable`` condition says which."""
    out = copy.deepcopy(dict(status))
    if monitoring is not None:
        out["monitoring"] = dict(monitoring)
    else:
        kept = dict(out.get("monitoring") or {})
        kept["reachable"] = False
        out["monitoring"] = kept
    out["conditions"] = cond.set_condition(
        out.get("conditions"),
        METRICS_AVAILABLE,
        reachable,
        "ScrapeSucceeded" if reachable else "ScrapeFailed",
        message,
        now=now,
        generation=generation,
    )
    return out
