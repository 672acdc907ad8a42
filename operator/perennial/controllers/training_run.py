"""kopf handlers of TrainingRun (tr), and of the Jobs and Pods that train them.

A run is reconciled when it is created or found at startup, and whenever its Job or one of
the Job's Pods changes (they carry the ``perennial.dev/run`` label): that is how the
operator sees training start, image-pull errors, the Job completing and the trainer's
termination message. When a run finishes, its pipeline is reconciled at once (champion,
history, a trigger that was waiting for the run). No finalizers: the Job is owned by the
run, the run by its pipeline, and the garbage collector deletes them in that order.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import kopf

from perennial.api.constants import GROUP, TRAINING_RUNS, VERSION
from perennial.api.enums import RunPhase
from perennial.controllers import pipeline_reconciler, run_reconciler
from perennial.controllers.kit import guarded
from perennial.controllers.settings import HANDLER_LIMITS
from perennial.core.pipeline_plan import LABEL_RUN
from perennial.core.run_status import RESULT_GRACE_SECONDS
from perennial.k8s import metrics

KIND = "TrainingRun"
logger = logging.getLogger("perennial.controllers.training_run")


_rechecks: set[tuple[str, str]] = set()
_rechecks_lock = threading.Lock()


def advance(namespace: str, name: str) -> None:
    """Reconcile the run; if it just finished, its pipeline too."""
    report = run_reconciler.reconcile_run(namespace, name)
    if report is not None and report.finished_now and report.pipeline:
        pipeline_reconciler.reconcile_pipeline(namespace, report.pipeline)
    if report is not None and report.phase == RunPhase.EVALUATING.value:
        _recheck_later(namespace, name, RESULT_GRACE_SECONDS + 1)


def _recheck_later(namespace: str, name: str, delay: float) -> None:
    """Look at an Evaluating run again after ``delay`` (no watch event may come: its Job
    has completed). Once per run at a time; in kopf's context, so events still post."""
    key = (namespace, name)
    with _rechecks_lock:
        if key in _rechecks:
            return
        _rechecks.add(key)

    def recheck() -> None:
        with _rechecks_lock:
            _rechecks.discard(key)
        try:
            advance(namespace, name)
        except Exception as exc:
            metrics.RECONCILE_ERRORS.labels(KIND, "recheck").inc()
            logger.warning("re-check of run %s/%s failed: %s", namespace, name, exc)

    context = contextvars.copy_context()
    timer = threading.Timer(delay, context.run, args=(recheck,))
    timer.daemon = True
    timer.start()


def _guarded(
    handler: str,
    namespace: str,
    name: str,
    retry: int | None = None,
    runtime: timedelta | None = None,
) -> None:
    guarded(
        KIND,
        handler,
        lambda: advance(namespace, name),
        namespace=namespace,
        name=name,
        retry=retry,
        runtime=runtime,
    )


FINAL_PHASES = frozenset({"Succeeded", "Rejected", "Failed"})


def unfinished(status: Mapping[str, Any], **_: Any) -> bool:
    """A finished run is never touched again (no API call for it at startup either)."""
    return status.get("phase") not in FINAL_PHASES


@kopf.on.create(GROUP, VERSION, TRAINING_RUNS, id="tr-create", when=unfinished, **HANDLER_LIMITS)
@kopf.on.resume(GROUP, VERSION, TRAINING_RUNS, id="tr-resume", when=unfinished, **HANDLER_LIMITS)
def reconcile(name: str, namespace: str | None, retry: int, runtime: timedelta, **_: Any) -> None:
    _guarded("reconcile", namespace or "", name, retry, runtime)


@kopf.on.event("batch", "v1", "jobs", id="tr-job", labels={LABEL_RUN: kopf.PRESENT})
def job_changed(labels: Mapping[str, str], namespace: str | None, **_: Any) -> None:
    _guarded("job-event", namespace or "", labels[LABEL_RUN])


@kopf.on.event("v1", "pods", id="tr-pod", labels={LABEL_RUN: kopf.PRESENT})
def pod_changed(labels: Mapping[str, str], namespace: str | None, **_: Any) -> None:
    _guarded("pod-event", namespace or "", labels[LABEL_RUN])
