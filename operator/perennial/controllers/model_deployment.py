"""kopf handlers of ModelDeployment (md): thin shells around
:func:`perennial.controllers.deployment_reconciler.reconcile_deployment`.

It runs when:

- the ModelDeployment is created, its spec changes, or the operator starts (resume);
- its ``perennial.dev/rollback`` annotation gets a value not acted on yet;
- a serving Deployment it owns changes (the Deployment controller reports progress);
- the TrainingPipeline it follows gets a new champion, or the run it pins changes;
- its loop turns (a kopf daemon per ModelDeployment): every
  :func:`~perennial.controllers.deployment_reconciler.rollout_tick_seconds` while a rollout is in
  progress (deadlines, canary pauses and analysis), and when the model server's monitoring
  endpoint is due for a scrape; otherwise it sleeps until a handler above or a jump of the
  operator's clock wakes it. An idle deployment costs no request.

Reads come from the watch-fed state in kopf's ``memo`` (:mod:`perennial.controllers.indexes`).
Like a timer, the daemon makes kopf put its finalizer on the object. Handlers never return
values and their retries are bounded.
"""

from __future__ import annotations

import asyncio
import logging
import os
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
from perennial.controllers import indexes, shutdown
from perennial.controllers.deployment_reconciler import (
    DeploymentMemory,
    loop_turn,
    reconcile_deployment,
    rollout_tick_seconds,
)
from perennial.controllers.indexes import state_of, wakeups_of
from perennial.controllers.kit import guarded
from perennial.controllers.settings import HANDLER_LIMITS
from perennial.k8s import metrics
from perennial.k8s.serving import DEPLOYMENT_LABEL, MANAGED_BY
from perennial.k8s.serving_client import written_by_us

KIND: Final = "ModelDeployment"
TIMER: Final = "md"  # the key of a deployment's loop in the wakeups
RETRY_AFTER_ERROR_SECONDS: Final = 30.0
logger = logging.getLogger("perennial.controllers.model_deployment")


def _reconcile_and_wake(memo: kopf.Memo, namespace: str, name: str) -> None:
    """Reconcile, then wake the deployment's loop (a rollout may have started)."""
    try:
        reconcile_deployment(state_of(memo), _memory(memo), namespace, name)
    finally:
        wakeups_of(memo).wake(TIMER, namespace, name)


def quietly(handler: str, memo: kopf.Memo, namespace: str, name: str) -> None:
    """Reconcile from a watcher of another object: failures are logged and counted (the
    loop tries again), never raised into that object's handling."""
    try:
        _reconcile_and_wake(memo, namespace, name)
    except Exception as exc:
        metrics.RECONCILE_ERRORS.labels(KIND, handler).inc()
        logger.warning("reconcile of %s/%s after %s failed: %s", namespace, name, handler, exc)


def reconcile(
    name: str,
    namespace: str | None,
    memo: kopf.Memo,
    retry: int,
    runtime: timedelta,
    **_: Any,
) -> None:
    ns = namespace or ""
    guarded(
        KIND,
        "reconcile",
        lambda: _reconcile_and_wake(memo, ns, name),
        namespace=ns,
        name=name,
        retry=retry,
        runtime=runtime,
    )


def rollback_pending(annotations: Mapping[str, str], status: Mapping[str, Any], **_: Any) -> bool:
    """Whether the rollback annotation holds a value not acted on yet."""
    token = (annotations.get(ROLLBACK_ANNOTATION) or "").strip()
    return bool(token) and token != status.get("lastRollbackToken")


def rollback_requested(name: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    ns = namespace or ""
    guarded(KIND, "rollback", lambda: _reconcile_and_wake(memo, ns, name), namespace=ns, name=name)


MEMORY: Final = "perennial_md_memory"
TICK: Final = "perennial_md_rollout_tick"  # seconds; a test may put its own in the memo
SEEN: Final = "perennial_md_seen"


def operator_started(memo: kopf.Memo, **_: Any) -> None:
    memo[MEMORY] = DeploymentMemory()
    if not isinstance(memo.get(TICK), float):
        memo[TICK] = rollout_tick_seconds(os.environ)
    memo[SEEN] = SeenSources()


def _memory(memo: kopf.Memo) -> DeploymentMemory:
    memory = memo.get(MEMORY)
    if not isinstance(memory, DeploymentMemory):
        raise RuntimeError("the deployments' memory is missing (startup did not run)")
    return memory


def _seen(memo: kopf.Memo) -> SeenSources:
    seen = memo.get(SEEN)
    if not isinstance(seen, SeenSources):
        raise RuntimeError("the deployments' seen sources are missing (startup did not run)")
    return seen


async def deployment_loop(
    name: str, namespace: str | None, stopped: kopf.DaemonStopped, memo: kopf.Memo, **_: Any
) -> None:
    # The loop also ends when the operator's cleanup has run (perennial.controllers.shutdown):
    # kopf may respawn a daemon while it drains its queues at exit and never stop it.
    state, wakeups, ns = state_of(memo), wakeups_of(memo), namespace or ""
    memory, tick = _memory(memo), float(memo[TICK])
    # kopf spawns the daemon when the operator starts and again when it resumes after a
    # peering pause; what it learnt before the pause (not rolling out, say) may be wrong by
    # now - another operator acted meanwhile. The first turn reconciles from the watches.
    memory.put(ns, name, None)

    def turn() -> float | None:
        delays: list[float | None] = []
        guarded(
            KIND,
            "loop",
            lambda: delays.append(loop_turn(state, memory, ns, name, tick=tick)),
            namespace=ns,
            name=name,
        )
        return delays[0]

    try:
        while not stopped and not shutdown.requested(memo):
            try:
                delay = await asyncio.to_thread(turn)
            except Exception as exc:
                # A failed turn is logged and counted (a refused request also marks the
                # deployment Stalled); the loop tries again later.
                logger.warning("loop of %s/%s failed: %s", namespace, name, exc)
                delay = RETRY_AFTER_ERROR_SECONDS
            await wakeups.sleep(TIMER, ns, name, delay, stopped.wait())
    except asyncio.CancelledError:
        # The operator exits (kopf cancels daemons at once): nothing is left half-done, every
        # turn is idempotent and the next operator resumes from the status.
        logger.debug("loop of %s/%s cancelled", namespace, name)
    finally:
        wakeups.forget(TIMER, ns, name)


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


class SeenSources:
    """What the watchers last saw of a source, so that only real changes reconcile (one per
    operator, in kopf's ``memo``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: dict[str, Any] = {}

    def changed(self, key: str, value: Any) -> bool:
        with self._lock:
            if key in self._sources and self._sources[key] == value:
                return False
            self._sources[key] = value
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
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    users = _users(kwargs[INDEX], (namespace or "", "pipeline", name))
    champion = ((body.get("status") or {}).get("champion") or {}) if type != "DELETED" else None
    seen = None if champion is None else (champion.get("run"), champion.get("sha256"))
    if users and _seen(memo).changed(_uid(body), seen):
        for md in users:
            quietly("pipeline-watch", memo, namespace or "", md)


def run_changed(
    name: str,
    namespace: str | None,
    body: Mapping[str, Any],
    type: str,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    users = _users(kwargs[INDEX], (namespace or "", "run", name))
    status = body.get("status") or {}
    seen = (
        None
        if type == "DELETED"
        else (status.get("phase"), (status.get("artifact") or {}).get("sha256"))
    )
    if users and _seen(memo).changed(_uid(body), seen):
        for md in users:
            quietly("run-watch", memo, namespace or "", md)


def serving_changed(
    namespace: str | None,
    labels: Mapping[str, str],
    body: Mapping[str, Any],
    memo: kopf.Memo,
    **_: Any,
) -> None:
    owner = labels.get(DEPLOYMENT_LABEL)
    if owner and not written_by_us(body):
        quietly("serving-watch", memo, namespace or "", owner)


def register(registry: kopf.OperatorRegistry) -> None:
    """Register every ModelDeployment handler in ``registry`` (the default registry on
    import; tests may build a registry with only these)."""
    md = (GROUP, VERSION, MODEL_DEPLOYMENTS)
    indexes.register(registry)
    shutdown.register(registry)
    kopf.on.startup(id="md-startup", registry=registry)(operator_started)
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
