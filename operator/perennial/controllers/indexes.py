"""The operator's informer cache: kopf indexes over what its watches deliver, and the
per-operator state in kopf's ``memo`` (the :class:`~perennial.k8s.cluster_state.ClusterState`
the reconcilers read from, the :class:`~perennial.controllers.wakeups.Wakeups` of the
sleeping timers).

:func:`register` adds the indexes and one startup/cleanup pair to a registry (once per
registry): the operator's handler modules and tests that build a registry of their own
call it. Index functions are light (kopf calls them for every watch event): they key the
body, nothing else.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Final

import kopf

from perennial.api.constants import (
    GROUP,
    MODEL_DEPLOYMENTS,
    TRAINING_PIPELINES,
    TRAINING_RUNS,
    VERSION,
)
from perennial.controllers import clock
from perennial.controllers.wakeups import Wakeups
from perennial.core.pipeline_plan import LABEL_PIPELINE, LABEL_RUN
from perennial.k8s.cluster_state import ClusterState
from perennial.k8s.serving import DEPLOYMENT_LABEL, MANAGED_BY

STATE: Final = "perennial_state"
WAKEUPS: Final = "perennial_wakeups"
_UNSUBSCRIBE: Final = "perennial_clock_unsubscribe"

_registered: weakref.WeakSet[kopf.OperatorRegistry] = weakref.WeakSet()


def state_of(memo: Mapping[str, Any]) -> ClusterState:
    state = memo.get(STATE)
    if not isinstance(state, ClusterState):
        raise RuntimeError("the operator's cluster state is missing (startup did not run)")
    return state


def wakeups_of(memo: Mapping[str, Any]) -> Wakeups:
    wakeups = memo.get(WAKEUPS)
    if not isinstance(wakeups, Wakeups):
        raise RuntimeError("the operator's wakeups are missing (startup did not run)")
    return wakeups


def _ns(namespace: str | None) -> str:
    return namespace or ""


# --- index functions ---------------------------------------------------------------------
#
# The indexes keep what the reconcilers read and no more: the operator's memory grows with
# every object it watches. ``managedFields`` (the server's field-ownership records, often
# the largest part of an object) never; Jobs and Pods only their metadata and status (the
# run reconciler reads ownership, labels, conditions and container states, never a spec).


def _kept(body: kopf.Body) -> dict[str, Any]:
    """The object without ``metadata.managedFields``."""
    out = dict(body)
    meta = out.get("metadata")
    if isinstance(meta, Mapping) and "managedFields" in meta:
        out["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return out


def _observed(body: kopf.Body) -> dict[str, Any]:
    """Metadata and status only (a Job's or Pod's spec is never read)."""
    kept = _kept(body)
    return {k: kept[k] for k in ("apiVersion", "kind", "metadata", "status") if k in kept}


def perennial_pipelines(
    name: str, namespace: str | None, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], dict[str, Any]]:
    return {(_ns(namespace), name): _kept(body)}


def perennial_watchers(
    name: str, namespace: str | None, spec: kopf.Spec, **_: Any
) -> dict[tuple[str, str], str]:
    triggers = spec.get("triggers") or {}
    out: dict[tuple[str, str], str] = {}
    for rule in ("drift", "performanceDecay"):
        watched = ((triggers.get(rule) or {}).get("deploymentRef") or {}).get("name")
        if watched:
            out[(_ns(namespace), str(watched))] = name
    return out


def perennial_runs(
    name: str, namespace: str | None, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], dict[str, Any]]:
    return {(_ns(namespace), name): _kept(body)}


def perennial_runs_of(
    name: str, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[tuple[str, str], str]:
    pipeline = labels.get(LABEL_PIPELINE)
    return {(_ns(namespace), pipeline): name} if pipeline else {}


def perennial_jobs(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], dict[str, Any]]:
    return {(_ns(namespace), labels[LABEL_RUN]): _observed(body)}


def perennial_pods(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], dict[str, Any]]:
    return {(_ns(namespace), labels[LABEL_RUN]): _observed(body)}


def perennial_serving(
    name: str, namespace: str | None, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], dict[str, Any]]:
    """A serving Deployment (stable or canary track) by its own name."""
    return {(_ns(namespace), name): _kept(body)}


def perennial_serving_pods(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], dict[str, Any]]:
    """A model server's Pod, by the ModelDeployment it serves."""
    return {(_ns(namespace), labels[DEPLOYMENT_LABEL]): _observed(body)}


def perennial_deployments(
    name: str, namespace: str | None, body: kopf.Body, **_: Any
) -> dict[tuple[str, ...], dict[str, Any]]:
    copy = _kept(body)
    return {(_ns(namespace), name): copy, (_ns(namespace),): copy}


# --- per-operator state --------------------------------------------------------------------


async def operator_state(memo: kopf.Memo, **kwargs: Any) -> None:
    """Put the cluster state (over kopf's indexes, handed in ``kwargs``) and the wakeups
    into ``memo``; a jump of the operator's clock wakes every sleeper."""
    state = ClusterState()
    state.attach(kwargs)
    wakeups = Wakeups(asyncio.get_running_loop())
    memo[STATE] = state
    memo[WAKEUPS] = wakeups
    memo[_UNSUBSCRIBE] = clock.on_change(wakeups.wake_all)


def operator_stopping(memo: kopf.Memo, **_: Any) -> None:
    unsubscribe = memo.get(_UNSUBSCRIBE)
    if callable(unsubscribe):
        unsubscribe()


def register(registry: kopf.OperatorRegistry) -> None:
    """Add the indexes and the state's startup/cleanup to ``registry`` (once)."""
    if registry in _registered:
        return
    _registered.add(registry)
    tp = (GROUP, VERSION, TRAINING_PIPELINES)
    tr = (GROUP, VERSION, TRAINING_RUNS)
    md = (GROUP, VERSION, MODEL_DEPLOYMENTS)
    # A model server's Pod carries the run label too (the run whose model it serves): the
    # trainer Pods' index leaves it to the serving Pods' index.
    run_label = {LABEL_RUN: kopf.PRESENT, DEPLOYMENT_LABEL: kopf.ABSENT}
    serving_label = {**MANAGED_BY, DEPLOYMENT_LABEL: kopf.PRESENT}
    indexes: list[tuple[tuple[str, ...], Callable[..., Any], dict[str, Any]]] = [
        (tp, perennial_pipelines, {}),
        (tp, perennial_watchers, {}),
        (tr, perennial_runs, {}),
        (tr, perennial_runs_of, {}),
        (("batch", "v1", "jobs"), perennial_jobs, {"labels": run_label}),
        (("v1", "pods"), perennial_pods, {"labels": run_label}),
        (md, perennial_deployments, {}),
        (("apps", "v1", "deployments"), perennial_serving, {"labels": serving_label}),
        (("v1", "pods"), perennial_serving_pods, {"labels": serving_label}),
    ]
    for resource, fn, options in indexes:
        kopf.index(*resource, id=fn.__name__, registry=registry, **options)(fn)
    kopf.on.startup(id="perennial-state", registry=registry)(operator_state)
    kopf.on.cleanup(id="perennial-state-cleanup", registry=registry)(operator_stopping)


register(kopf.get_default_registry())
