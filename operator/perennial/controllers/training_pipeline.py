"""kopf handlers of TrainingPipeline (tp): thin shells around the pipeline reconciler.

- created, changed (spec or annotations: ``perennial.dev/retrain``) or found at startup:
  reconcile now (spec-change and manual triggers, champion, history, status);
- a trigger loop (a kopf daemon, one per pipeline with a schedule, a data-change, drift or
  decay trigger): every tick (:func:`perennial.controllers.clock.tick_seconds`, 15 s by
  default) checks whether a schedule is due, polls the data's fingerprint when its
  interval has passed and reads the watched ModelDeployment's monitoring status. Time comes
  from :mod:`perennial.controllers.clock`, so tests drive it.

Handlers never return values (status is written explicitly) and their retries are bounded.
kopf puts its finalizer only on pipelines with a trigger loop (a daemon must be stopped
before the object goes); pipelines without timed triggers get none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import kopf

from perennial.api.constants import GROUP, RETRAIN_ANNOTATION, TRAINING_PIPELINES, VERSION
from perennial.controllers import clock, pipeline_reconciler, shutdown
from perennial.controllers.kit import guarded
from perennial.controllers.settings import HANDLER_LIMITS
from perennial.k8s import metrics

KIND = "TrainingPipeline"
logger = logging.getLogger("perennial.controllers.training_pipeline")


@kopf.on.create(GROUP, VERSION, TRAINING_PIPELINES, id="tp-create", **HANDLER_LIMITS)
@kopf.on.update(GROUP, VERSION, TRAINING_PIPELINES, id="tp-update", **HANDLER_LIMITS)
@kopf.on.resume(GROUP, VERSION, TRAINING_PIPELINES, id="tp-resume", **HANDLER_LIMITS)
def reconcile(name: str, namespace: str | None, retry: int, runtime: timedelta, **_: Any) -> None:
    ns = namespace or ""
    guarded(
        KIND,
        "reconcile",
        lambda: pipeline_reconciler.reconcile_pipeline(ns, name),
        namespace=ns,
        name=name,
        retry=retry,
        runtime=runtime,
    )


def retrain_pending(annotations: Mapping[str, str], status: Mapping[str, Any], **_: Any) -> bool:
    """Whether the retrain annotation holds a value no run has consumed yet."""
    token = annotations.get(RETRAIN_ANNOTATION)
    return bool(token) and token != status.get("lastRetrainToken")


# kopf leaves every annotation under its own storage prefix (perennial.dev/) out of the
# diff it runs update handlers on, so a new perennial.dev/retrain value never reaches
# on.update: a watch-event handler catches it instead (only while a value is pending).
@kopf.on.event(GROUP, VERSION, TRAINING_PIPELINES, id="tp-retrain", when=retrain_pending)
def retrain(name: str, namespace: str | None, **_: Any) -> None:
    ns = namespace or ""
    guarded(
        KIND,
        "retrain",
        lambda: pipeline_reconciler.reconcile_pipeline(ns, name),
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
    # failed. The loop catches every tick's error itself; these bound a crash of the loop.
    retries=HANDLER_LIMITS["retries"],
    backoff=HANDLER_LIMITS["backoff"],
)
async def trigger_loop(name: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    # asyncio.sleep, not stopped.wait(), and the operator's shutdown flag: see
    # perennial.controllers.shutdown. kopf cancels the loop when the object goes, its
    # triggers go, or the operator stops (cancellation_timeout, no backoff).
    try:
        while not shutdown.requested(memo):
            try:
                await asyncio.to_thread(pipeline_reconciler.tick, namespace or "", name)
            except Exception as exc:
                # One failed tick is logged and counted; the next tick tries again.
                metrics.RECONCILE_ERRORS.labels(KIND, "trigger-loop").inc()
                logger.warning("trigger check of %s/%s failed: %s", namespace, name, exc)
            await asyncio.sleep(clock.tick_seconds())
    except asyncio.CancelledError:
        # Stopped by kopf: every tick is idempotent, the next loop resumes from the status.
        logger.debug("trigger loop of %s/%s cancelled", namespace, name)


shutdown.register(kopf.get_default_registry())
