"""kopf handlers of TrainingRun (tr), and of the Jobs and Pods that train them.

A run is reconciled when it is created or found at startup, and whenever its Job or one of
the Job's Pods changes (they carry the ``perennial.dev/run`` label): that is how the
operator sees training start, image-pull errors, the Job completing and the trainer's
termination message. When a run finishes, its pipeline is reconciled at once (champion,
history, a trigger that was waiting for the run). A run whose Job completed while its Pod
is not known yet (``Evaluating``) is looked at again by a kopf timer, which stops once the
run has left that phase. No finalizers otherwise: the Job is owned by the run, the run by
its pipeline, and the garbage collector deletes them in that order.

Reads come from the watch-fed state in kopf's ``memo`` (:mod:`perennial.controllers.indexes`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import kopf

from perennial.api.constants import GROUP, TRAINING_RUNS, VERSION
from perennial.api.enums import RunPhase
from perennial.controllers import indexes, pipeline_reconciler, run_reconciler
from perennial.controllers.indexes import state_of
from perennial.controllers.kit import guarded
from perennial.controllers.settings import HANDLER_LIMITS
from perennial.core.pipeline_plan import LABEL_RUN
from perennial.core.run_status import RESULT_GRACE_SECONDS
from perennial.k8s.cluster_state import ClusterState
from perennial.k8s.serving import DEPLOYMENT_LABEL

KIND = "TrainingRun"
logger = logging.getLogger("perennial.controllers.training_run")


def advance(state: ClusterState, namespace: str, name: str) -> None:
    """Reconcile the run; if it just finished, its pipeline too.

    Both under the pipeline's lock (lock order: pipeline, then run): no other reconcile of
    the pipeline (its trigger timer) can see the run finished before the pipeline has
    taken in its verdict (a new champion)."""
    body = state.run(namespace, name)
    pipeline = ((body or {}).get("spec") or {}).get("pipelineRef", {}).get("name")
    with pipeline_reconciler.holding(namespace, pipeline or ""):
        report = run_reconciler.reconcile_run(state, namespace, name)
        if report is not None and report.finished_now and report.pipeline:
            pipeline_reconciler.reconcile_pipeline(state, namespace, report.pipeline)


def _guarded(
    handler: str,
    memo: kopf.Memo,
    namespace: str,
    name: str,
    *,
    retry: int | None = None,
    runtime: timedelta | None = None,
) -> None:
    state = state_of(memo)
    guarded(
        KIND,
        handler,
        lambda: advance(state, namespace, name),
        namespace=namespace,
        name=name,
        retry=retry,
        runtime=runtime,
    )


FINAL_PHASES = frozenset({"Succeeded", "Rejected", "Failed"})


def unfinished(status: Mapping[str, Any], **_: Any) -> bool:
    """A finished run is never touched again (no API call for it at startup either)."""
    return status.get("phase") not in FINAL_PHASES


def evaluating(status: Mapping[str, Any], **_: Any) -> bool:
    return status.get("phase") == RunPhase.EVALUATING.value


@kopf.on.create(GROUP, VERSION, TRAINING_RUNS, id="tr-create", when=unfinished, **HANDLER_LIMITS)
@kopf.on.resume(GROUP, VERSION, TRAINING_RUNS, id="tr-resume", when=unfinished, **HANDLER_LIMITS)
def reconcile(
    name: str,
    namespace: str | None,
    memo: kopf.Memo,
    retry: int,
    runtime: timedelta,
    **_: Any,
) -> None:
    _guarded("reconcile", memo, namespace or "", name, retry=retry, runtime=runtime)


# The Job completed but its Pod (the trainer's result) is not known: no watch event may
# come, so look again once the grace period is over (the reconcile then judges).
@kopf.timer(
    GROUP,
    VERSION,
    TRAINING_RUNS,
    id="tr-evaluating",
    when=evaluating,
    initial_delay=RESULT_GRACE_SECONDS + 1,
    interval=RESULT_GRACE_SECONDS + 1,
    **HANDLER_LIMITS,
)
def recheck(name: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    _guarded("recheck", memo, namespace or "", name)


@kopf.on.event("batch", "v1", "jobs", id="tr-job", labels={LABEL_RUN: kopf.PRESENT})
def job_changed(
    labels: Mapping[str, str], namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    _guarded("job-event", memo, namespace or "", labels[LABEL_RUN])


# A model server's Pod carries the run label too (the model it serves): not a trainer.
@kopf.on.event(
    "v1", "pods", id="tr-pod", labels={LABEL_RUN: kopf.PRESENT, DEPLOYMENT_LABEL: kopf.ABSENT}
)
def pod_changed(
    labels: Mapping[str, str], namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    _guarded("pod-event", memo, namespace or "", labels[LABEL_RUN])


indexes.register(kopf.get_default_registry())
