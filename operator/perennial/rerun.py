"""``perennial rerun RUN``: reproduce a TrainingRun from its immutable snapshot.

The new run carries the old run's spec snapshot unchanged (data reference, estimator and
parameters, evaluation seed, gates, image, artifact location) and the same champion to
compare with, with trigger ``Reproduce``. The operator trains it like any other run; its
status then shows whether the result matches (compare ``status.metrics`` and
``status.data.fingerprint`` with the old run's). It is not owned by the pipeline, so it is
never pruned and never replaces the pipeline's champion.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from perennial.controllers import clock
from perennial.k8s import client
from perennial.k8s.builders.training_run import build_rerun, rerun_name


def current_namespace() -> str:
    """The namespace of the kubeconfig's current context ("default" if none)."""
    try:
        import kubernetes.config

        _, active = kubernetes.config.list_kube_config_contexts()
    except Exception:
        return "default"
    namespace = ((active or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else "default"


def rerun(run: str, *, namespace: str | None, name: str | None, dry_run: bool) -> int:
    """Create (or with ``dry_run`` print) the reproduction of ``run``; the exit code."""
    namespace = namespace or current_namespace()
    try:
        old = client.get_or_none(client.TRAINING_RUNS_RESOURCE, run, namespace)
    except client.ApiError as exc:
        print(f"perennial rerun: cannot read run {run} in {namespace}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # no kubeconfig, no cluster
        print(f"perennial rerun: cannot reach the cluster: {exc}", file=sys.stderr)
        return 1
    if old is None:
        print(
            f"perennial rerun: run {run!r} not found in namespace {namespace!r} "
            "(list them with: kubectl get tr -n NAMESPACE)",
            file=sys.stderr,
        )
        return 1
    if name is None:
        taken = {
            item["metadata"]["name"]
            for item in client.list_objects(client.TRAINING_RUNS_RESOURCE, namespace)
        }
        name = rerun_name(run, taken)
    body: dict[str, Any] = build_rerun(old, name, now=clock.now())
    if dry_run:
        print(yaml.safe_dump(body, sort_keys=False), end="")
        return 0
    created, fresh = client.create_if_absent(client.TRAINING_RUNS_RESOURCE, body, namespace)
    if not fresh:
        print(f"perennial rerun: a run named {name!r} already exists; pass --name", file=sys.stderr)
        return 1
    print(f"trainingrun.perennial.dev/{created['metadata']['name']} created (reproduces {run})")
    return 0
