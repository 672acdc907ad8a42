"""The operator's Prometheus metrics, defined once, and the HTTP server that exposes them.

Every metric lives in :data:`REGISTRY`, a dedicated registry (not prometheus_client's global
one), so importing a library that registers its own collectors cannot leak them into our
endpoint and tests can read exact values. Controllers import the metric objects from here and
only ever call ``.labels(...).inc()/.observe()/.set()`` on them.

Labels name the custom resource the sample is about. ``namespace`` is the namespace of that
resource (pipelines and deployments are namespaced; the same name may exist in two
namespaces). The ServiceMonitor sets ``honorLabels: true`` so Prometheus keeps this label
instead of renaming it to ``exported_namespace``.
"""

from __future__ import annotations

import threading

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from perennial._version import __version__

__all__ = [
    "BUILD_INFO",
    "CHAMPION_METRIC",
    "DEPLOYMENT_DRIFT_SCORE",
    "DEPLOYMENT_LIVE_ACCURACY",
    "GATE_FAILURES",
    "NOTIFICATIONS",
    "RECONCILE_ERRORS",
    "REGISTRY",
    "ROLLBACKS",
    "ROLLOUTS",
    "RUNS_STARTED",
    "RUN_OUTCOMES",
    "TRAINING_DURATION",
    "TRIGGER_TO_VERDICT",
    "start_metrics_server",
]

REGISTRY = CollectorRegistry(auto_describe=True)
"""The registry served on the operator's metrics port (and only this one)."""

# The standard process/platform/gc collectors, in our registry as well.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# Training takes seconds (a toy dataset) to hours (a large one).
_TRAINING_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)
# From the trigger (schedule, drift, ...) to the gate verdict: queueing + training + evaluation.
_VERDICT_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0)

BUILD_INFO = Gauge(
    "perennial_build_info",
    "Always 1; the operator's version is in the labels.",
    ["version"],
    registry=REGISTRY,
)
BUILD_INFO.labels(version=__version__).set(1)

# prometheus_client appends `_total` to counter names on exposition.
RUNS_STARTED = Counter(
    "perennial_runs_started",
    "TrainingRuns started, by pipeline and by what triggered them.",
    ["namespace", "pipeline", "trigger"],
    registry=REGISTRY,
)
RUN_OUTCOMES = Counter(
    "perennial_run_outcomes",
    "TrainingRuns that reached a final phase (Succeeded, Rejected, Failed).",
    ["namespace", "pipeline", "outcome"],
    registry=REGISTRY,
)
GATE_FAILURES = Counter(
    "perennial_gate_failures",
    "Gate verdicts that blocked a candidate model, by gate.",
    ["namespace", "pipeline", "gate"],
    registry=REGISTRY,
)
TRAINING_DURATION = Histogram(
    "perennial_training_duration_seconds",
    "Wall-clock duration of the training Job, from start to completion.",
    ["namespace", "pipeline"],
    buckets=_TRAINING_BUCKETS,
    registry=REGISTRY,
)
TRIGGER_TO_VERDICT = Histogram(
    "perennial_trigger_to_verdict_seconds",
    "Time from the trigger that created a run to the run's gate verdict.",
    ["namespace", "pipeline"],
    buckets=_VERDICT_BUCKETS,
    registry=REGISTRY,
)
CHAMPION_METRIC = Gauge(
    "perennial_champion_metric",
    "The current champion's primary metric on its holdout, by pipeline and metric name.",
    ["namespace", "pipeline", "metric"],
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "perennial_reconcile_errors",
    "Handler invocations that raised, by custom-resource kind and handler.",
    ["kind", "handler"],
    registry=REGISTRY,
)
ROLLOUTS = Counter(
    "perennial_rollouts",
    "Model rollouts that finished, by result (Succeeded, RolledBack).",
    ["namespace", "deployment", "result"],
    registry=REGISTRY,
)
ROLLBACKS = Counter(
    "perennial_rollbacks",
    "Rollbacks to a previous model, by reason (e.g. AnalysisFailed, Manual).",
    ["namespace", "deployment", "reason"],
    registry=REGISTRY,
)
NOTIFICATIONS = Counter(
    "perennial_notifications",
    "CloudEvents by sink (URL without credentials or query) and result: delivered, failed "
    "(given up after the retries), dropped (the sink's queue was full).",
    ["sink", "result"],
    registry=REGISTRY,
)
DEPLOYMENT_DRIFT_SCORE = Gauge(
    "perennial_deployment_drift_score",
    "Highest per-feature PSI between live traffic and the training reference.",
    ["namespace", "deployment"],
    registry=REGISTRY,
)
DEPLOYMENT_LIVE_ACCURACY = Gauge(
    "perennial_deployment_live_accuracy",
    "Accuracy of served predictions against the feedback labels received so far (0..1).",
    ["namespace", "deployment"],
    registry=REGISTRY,
)


class _ServerState:
    lock = threading.Lock()
    port: int | None = None


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> bool:
    """Serve :data:`REGISTRY` over HTTP on ``addr:port``, once per process.

    Returns True if this call started the server, False if it was already running (on the same
    port). Asking for a second, different port is a programming error.
    """
    if not 1 <= port <= 65535:
        raise ValueError(f"metrics port: {port} is not a TCP port; use 1..65535")
    with _ServerState.lock:
        if _ServerState.port is not None:
            if _ServerState.port != port:
                raise RuntimeError(
                    f"metrics server already runs on port {_ServerState.port}, "
                    f"cannot move it to {port}"
                )
            return False
        start_http_server(port, addr=addr, registry=REGISTRY)
        _ServerState.port = port
        return True


_Series = Counter | Gauge | Histogram
_BY_PIPELINE: tuple[_Series, ...] = (
    RUNS_STARTED,
    RUN_OUTCOMES,
    GATE_FAILURES,
    TRAINING_DURATION,
    TRIGGER_TO_VERDICT,
    CHAMPION_METRIC,
)
_BY_DEPLOYMENT: tuple[_Series, ...] = (
    ROLLOUTS,
    ROLLBACKS,
    DEPLOYMENT_DRIFT_SCORE,
    DEPLOYMENT_LIVE_ACCURACY,
)


def forget_pipeline(namespace: str, name: str) -> None:
    """Drop every series of a deleted TrainingPipeline (as kube-state-metrics does for
    deleted objects): its champion gauge would otherwise report a model nobody serves,
    and churning pipelines would grow the operator's series without bound."""
    for metric in _BY_PIPELINE:
        metric.remove_by_labels({"namespace": namespace, "pipeline": name})


def forget_deployment(namespace: str, name: str) -> None:
    """Drop every series of a deleted ModelDeployment (drift, live accuracy, rollouts)."""
    for metric in _BY_DEPLOYMENT:
        metric.remove_by_labels({"namespace": namespace, "deployment": name})
