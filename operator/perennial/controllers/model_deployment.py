"""kopf handlers of ModelDeployment (md): thin shells around
:func:`perennial.controllers.deployment_reconciler.reconcile_deployment`.

It runs when:

- the ModelDeployment is created, its spec changes, or the operator starts (resume);
- its ``perennial.dev/rollback`` annotation gets a value not acted on yet;
- a serving Deployment it owns changes (the Deployment controller reports progress);
- the TrainingPipeline it follows gets a new champion, or the run it pins changes;
- its loop turns (a kopf daemon per ModelDeployment, every
  :func:`~perennial.controllers.deployment_reconciler.tick_seconds`): while a rollout is in
  progress (deadlines, canary pauses and analysis) and every ``RESYNC_SECONDS`` otherwise;
  the same loop scrapes the model server's monitoring endpoint when it is due.

A daemon rather than a kopf timer: its tick can be changed at run time (tests shorten it,
as for the pipeline's trigger loop); like a timer it makes kopf put its finalizer on the
object. Handlers never return values and their retries are bounded.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Final

import kopf

from perennial.api.constants import (
    GROUP,
    MODEL_DEPLOYMENTS,
    ROLLBACK_ANNOTATION,
    TRAINING_PIPELINES,
    TRAINING_RUNS,
    VERSION,
)
from perennial.controllers import shutdown
from perennial.controllers.deployment_reconciler import (
    loop_turn,
    reconcile_deployment,
    tick_seconds,
)
from perennial.controllers.kit import guarded
from perennial.controllers.settings import HANDLER_LIMITS
from perennial.k8s import metrics
from perennial.k8s.serving import DEPLOYMENT_LABEL
from perennial.k8s.serving_client import written_by_us

KIND: Final = "ModelDeployment"
logger = logging.getLogger("perennial.controllers.model_deployment")
MANAGED_BY: Final = {"app.kubernetes.io/managed-by": "perennial-operator"}


def quietly(handler: str, namespace: str, name: str) -> None:
    """Reconcile from a watcher of another object: failures are logged and counted (the
    loop tries again), never raised into that object's handling."""
    try:
        reconcile_deployment(namespace, name)
    except Exception as exc:
        metrics.RECONCILE_ERRORS.labels(KIND, handler).inc()
        logger.warning("reconcile of %s/%s after %s failed: %s", namespace, name, handler, exc)


def reconcile(name: str, namespace: str | None, retry: int, runtime: timedelta, **_: Any) -> None:
    ns = namespace or ""
    guarded(
        KIND,
        "reconcile",
        lambda: reconcile_deployment(ns, name),
        namespace=ns,
        name=name,
        retry=retry,
        runtime=runtime,
    )


def rollback_pending(annotations: Mapping[str, str], status: Mapping[str, Any], **_: Any) -> bool:
    """Whether the rollback annotation holds a value not acted on yet."""
    token = (annotations.get(ROLLBACK_ANNOTATION) or "").strip()
    return bool(token) and token != status.get("lastRollbackToken")


def rollback_requested(name: str, namespace: str | None, **_: Any) -> None:
    ns = namespace or ""
    guarded(KIND, "rollback", lambda: reconcile_deployment(ns, name), namespace=ns, name=name)


async def deployment_loop(name: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    # asyncio.sleep, not stopped.wait(), and the operator's shutdown flag: see
    # perennial.controllers.shutdown. kopf cancels the loop when the object goes or the
    # operator stops (cancellation_timeout, no backoff).
    ns = namespace or ""
    try:
        while not shutdown.requested(memo):
            try:
                await asyncio.to_thread(
                    guarded, KIND, "loop", lambda: loop_turn(ns, name), namespace=ns, name=name
                )
            except Exception as exc:
                # One failed turn is logged and counted (a refused request also marks the
                # deployment Stalled); the next turn tries again.
                logger.warning("loop of %s/%s failed: %s", namespace, name, exc)
            await asyncio.sleep(tick_seconds())
    except asyncio.CancelledError:
        # The operator exits (kopf cancels daemons at once): nothing is left half-done, every
        # turn is idempotent and the next operator resumes from the status.
        logger.debug("loop of %s/%s cancelled", namespace, name)


# kopf hands an index to handlers as the keyword argument named by its id.
INDEX: Final = "perennial_md_sources"


def perennial_md_sources(
    name: str, namespace: str | None, spec: Mapping[str, Any], **_: Any
) -> dict[tuple[str, str, str], str]:
    """ModelDeployments by what they serve: (namespace, "pipeline"|"run", name)."""
    source = spec.get("source") or {}
    pipeline = (source.get("pipelineRef") or {}).get("name")
    run = (source.get("runRef") or {}).get("name")
    if pipeline:
        return {(namespace or "", "pipeline", pipeline): name}
    if run:
        return {(namespace or "", "run", run): name}
    return {}


class _Seen:
    """What the watchers last saw of a source, so that only real changes reconcile."""

    lock = threading.Lock()
    sources: dict[str, Any] = {}

    @classmethod
    def changed(cls, key: str, value: Any) -> bool:
        with cls.lock:
            if key in cls.sources and cls.sources[key] == value:
                return False
            cls.sources[key] = value
            return True


def _uid(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")


def _users(index: kopf.Index[Any, Any], key: tuple[str, str, str]) -> list[str]:
    return sorted(set(index.get(key, [])))


def pipeline_changed(
    name: str,
    namespace: str | None,
    body: Mapping[str, Any],
    type: str,
    **kwargs: Any,
) -> None:
    users = _users(kwargs[INDEX], (namespace or "", "pipeline", name))
    champion = ((body.get("status") or {}).get("champion") or {}) if type != "DELETED" else None
    seen = None if champion is None else (champion.get("run"), champion.get("sha256"))
    if users and _Seen.changed(_uid(body), seen):
        for md in users:
            quietly("pipeline-watch", namespace or "", md)


def run_changed(
    name: str,
    namespace: str | None,
    body: Mapping[str, Any],
    type: str,
    **kwargs: Any,
) -> None:
    users = _users(kwargs[INDEX], (namespace or "", "run", name))
    status = body.get("status") or {}
    seen = (
        None
        if type == "DELETED"
        else (status.get("phase"), (status.get("artifact") or {}).get("sha256"))
    )
    if users and _Seen.changed(_uid(body), seen):
        for md in users:
            quietly("run-watch", namespace or "", md)


def serving_changed(
    namespace: str | None, labels: Mapping[str, str], body: Mapping[str, Any], **_: Any
) -> None:
    owner = labels.get(DEPLOYMENT_LABEL)
    if owner and not written_by_us(body):
        quietly("serving-watch", namespace or "", owner)


def register(registry: kopf.OperatorRegistry) -> None:
    """Register every ModelDeployment handler in ``registry`` (the default registry on
    import; tests may build a registry with only these)."""
    md = (GROUP, VERSION, MODEL_DEPLOYMENTS)
    shutdown.register(registry)
    kopf.on.create(*md, id="md-create", registry=registry, **HANDLER_LIMITS)(reconcile)
    kopf.on.update(*md, id="md-update", registry=registry, **HANDLER_LIMITS)(reconcile)
    kopf.on.resume(*md, id="md-resume", registry=registry, **HANDLER_LIMITS)(reconcile)
    # kopf leaves annotations under its storage prefix (perennial.dev/) out of the diff that
    # update handlers see: a watch-event handler catches a new rollback request instead.
    kopf.on.event(*md, id="md-rollback", when=rollback_pending, registry=registry)(
        rollback_requested
    )
    kopf.daemon(*md, id="md-loop", cancellation_timeout=30.0, registry=registry, **HANDLER_LIMITS)(
        deployment_loop
    )
    kopf.index(*md, id=INDEX, registry=registry)(perennial_md_sources)
    kopf.on.event(GROUP, VERSION, TRAINING_PIPELINES, id="md-watch-pipeline", registry=registry)(
        pipeline_changed
    )
    kopf.on.event(GROUP, VERSION, TRAINING_RUNS, id="md-watch-run", registry=registry)(run_changed)
    kopf.on.event(
        "apps",
        "v1",
        "deployments",
        id="md-watch-serving",
        labels={**MANAGED_BY, DEPLOYMENT_LABEL: kopf.PRESENT},
        registry=registry,
    )(serving_changed)


register(kopf.get_default_registry())
