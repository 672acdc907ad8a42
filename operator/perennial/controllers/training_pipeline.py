"""kopf handlers of TrainingPipeline (tp): thin shells around the pipeline reconciler.

- created, changed (spec or annotations: ``perennial.dev/retrain``) or found at startup:
  reconcile now (spec-change and manual triggers, champion, history, status);
- a trigger timer (a kopf daemon, one per pipeline with a schedule, a data-change, drift or
  decay trigger) that sleeps until the core says a trigger is next due
  (:func:`perennial.core.timers.next_due`: the next schedule, the next data poll, the end
  of a cool-down), or until woken: a watched ModelDeployment's monitoring changed
  (:func:`deployment_changed`), or the operator's clock jumped (tests). It polls the data's
  fingerprint when due (the only periodic I/O) and reconciles. Time comes from
  :mod:`perennial.controllers.clock`, so tests drive it.

Reads come from the watch-fed state in kopf's ``memo`` (:mod:`perennial.controllers.indexes`).
Handlers never return values (status is written explicitly) and their retries are bounded.
kopf puts its finalizer only on pipelines with a trigger timer (a daemon must be stopped
before the object goes); pipelines without timed triggers get none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import kopf

from perennial.api.constants import (
    GROUP,
    MODEL_DEPLOYMENTS,
    RETRAIN_ANNOTATION,
    TRAINING_PIPELINES,
    VERSION,
)
from perennial.controllers import clock, indexes, pipeline_reconciler, shutdown
from perennial.controllers.indexes import state_of, wakeups_of
from perennial.controllers.kit import guarded
from perennial.controllers.settings import HANDLER_LIMITS
from perennial.k8s import metrics

KIND = "TrainingPipeline"
TIMER = "tp"  # the key of a pipeline's sleeper in the wakeups
RETRY_AFTER_ERROR_SECONDS = 30.0
logger = logging.getLogger("perennial.controllers.training_pipeline")


@kopf.on.create(GROUP, VERSION, TRAINING_PIPELINES, id="tp-create", **HANDLER_LIMITS)
@kopf.on.update(GROUP, VERSION, TRAINING_PIPELINES, id="tp-update", **HANDLER_LIMITS)
@kopf.on.resume(GROUP, VERSION, TRAINING_PIPELINES, id="tp-resume", **HANDLER_LIMITS)
def reconcile(
    name: str,
    namespace: str | None,
    memo: kopf.Memo,
    retry: int,
    runtime: timedelta,
    **_: Any,
) -> None:
    ns, state = namespace or "", state_of(memo)
    guarded(
        KIND,
        "reconcile",
        lambda: pipeline_reconciler.reconcile_pipeline(state, ns, name),
        namespace=ns,
        name=name,
        retry=retry,
        runtime=runtime,
    )
    # The timer recomputes when it is due (a new schedule, a new poll interval).
    wakeups_of(memo).wake(TIMER, ns, name)


def retrain_pending(annotations: Mapping[str, str], status: Mapping[str, Any], **_: Any) -> bool:
    """Whether the retrain annotation holds a value no run has consumed yet."""
    token = annotations.get(RETRAIN_ANNOTATION)
    return bool(token) and token != status.get("lastRetrainToken")


# kopf leaves every annotation under its own storage prefix (perennial.dev/) out of the
# diff it runs update handlers on, so a new perennial.dev/retrain value never reaches
# on.update: a watch-event handler catches it instead (only while a value is pending).
@kopf.on.event(GROUP, VERSION, TRAINING_PIPELINES, id="tp-retrain", when=retrain_pending)
def retrain(name: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    ns, state = namespace or "", state_of(memo)
    guarded(
        KIND,
        "retrain",
        lambda: pipeline_reconciler.reconcile_pipeline(state, ns, name),
        namespace=ns,
        name=name,
    )


def has_timed_triggers(spec: Mapping[str, Any], **_: Any) -> bool:
    """Whether the pipeline needs a trigger loop (schedule, data poll, drift, decay)."""
    triggers = spec.get("triggers") or {}
    return bool(
        triggers.get("schedule")
        or (triggers.get("dataChange") or {}).get("enabled")
        or triggers.get("drift")
        or triggers.get("performanceDecay")
    )


@kopf.daemon(
    GROUP,
    VERSION,
    TRAINING_PIPELINES,
    id="tp-triggers",
    when=has_timed_triggers,
    cancellation_timeout=30.0,
    # No `timeout`: kopf would not restart a daemon that has run longer than that once it
    # failed. The loop catches every turn's error itself; these bound a crash of the loop.
    retries=HANDLER_LIMITS["retries"],
    backoff=HANDLER_LIMITS["backoff"],
)
async def trigger_timer(
    name: str, namespace: str | None, stopped: kopf.DaemonStopped, memo: kopf.Memo, **_: Any
) -> None:
    # The timer also ends when the operator's cleanup has run (perennial.controllers.shutdown):
    # kopf may respawn a daemon while it drains its queues at exit and never stop it.
    state, wakeups, ns = state_of(memo), wakeups_of(memo), namespace or ""
    try:
        while not stopped and not shutdown.requested(memo):
            try:
                due = await asyncio.to_thread(pipeline_reconciler.check_triggers, state, ns, name)
                delay = None if due is None else clock.seconds_until(due)
            except Exception as exc:
                # A failed turn is logged and counted; the timer tries again later.
                metrics.RECONCILE_ERRORS.labels(KIND, "trigger-timer").inc()
                logger.warning("trigger check of %s/%s failed: %s", ns, name, exc)
                delay = RETRY_AFTER_ERROR_SECONDS
            await wakeups.sleep(TIMER, ns, name, delay, stopped.wait())
    finally:
        wakeups.forget(TIMER, ns, name)


def deployment_changed(name: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """A ModelDeployment changed (its monitoring, the model it serves): wake the timers of
    the pipelines whose drift or decay trigger watches it."""
    ns = namespace or ""
    wakeups = wakeups_of(memo)
    for pipeline in state_of(memo).watchers(ns, name):
        wakeups.wake(TIMER, ns, pipeline)


kopf.on.event(GROUP, VERSION, MODEL_DEPLOYMENTS, id="tp-watch-deployment")(deployment_changed)
indexes.register(kopf.get_default_registry())
shutdown.register(kopf.get_default_registry())
