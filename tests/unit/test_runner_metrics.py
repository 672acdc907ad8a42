"""The operator's metrics: conventional names, served on a real port from our own registry."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from perennial.k8s import metrics
from testsupport import deadline

EXPECTED = {
    "perennial_runs_started": ("counter", {"namespace", "pipeline", "trigger"}),
    "perennial_run_outcomes": ("counter", {"namespace", "pipeline", "outcome"}),
    "perennial_gate_failures": ("counter", {"namespace", "pipeline", "gate"}),
    "perennial_training_duration_seconds": ("histogram", {"namespace", "pipeline"}),
    "perennial_trigger_to_verdict_seconds": ("histogram", {"namespace", "pipeline"}),
    "perennial_champion_metric": ("gauge", {"namespace", "pipeline", "metric"}),
    "perennial_reconcile_errors": ("counter", {"kind", "handler"}),
    "perennial_rollouts": ("counter", {"namespace", "deployment", "result"}),
    "perennial_rollbacks": ("counter", {"namespace", "deployment", "reason"}),
    "perennial_deployment_drift_score": ("gauge", {"namespace", "deployment"}),
    "perennial_deployment_live_accuracy": ("gauge", {"namespace", "deployment"}),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _touch_every_metric() -> None:
    metrics.RUNS_STARTED.labels(namespace="ml", pipeline="iris", trigger="Schedule").inc()
    metrics.RUN_OUTCOMES.labels(namespace="ml", pipeline="iris", outcome="Succeeded").inc()
    metrics.GATE_FAILURES.labels(namespace="ml", pipeline="iris", gate="accuracy").inc()
    metrics.TRAINING_DURATION.labels(namespace="ml", pipeline="iris").observe(42.0)
    metrics.TRIGGER_TO_VERDICT.labels(namespace="ml", pipeline="iris").observe(90.0)
    metrics.CHAMPION_METRIC.labels(namespace="ml", pipeline="iris", metric="f1").set(0.93)
    metrics.RECONCILE_ERRORS.labels(kind="TrainingRun", handler="reconcile").inc()
    metrics.ROLLOUTS.labels(namespace="ml", deployment="iris", result="Succeeded").inc()
    metrics.ROLLBACKS.labels(namespace="ml", deployment="iris", reason="AnalysisFailed").inc()
    metrics.DEPLOYMENT_DRIFT_SCORE.labels(namespace="ml", deployment="iris").set(0.12)
    metrics.DEPLOYMENT_LIVE_ACCURACY.labels(namespace="ml", deployment="iris").set(0.93)


def test_every_metric_has_its_conventional_name_type_and_labels() -> None:
    _touch_every_metric()
    families = {family.name: family for family in metrics.REGISTRY.collect()}
    for name, (kind, labels) in EXPECTED.items():
        family = families[name]
        assert family.type == kind, name
        sample_names = {sample.name for sample in family.samples}
        if kind == "counter":
            assert f"{name}_total" in sample_names
        if kind == "histogram":
            assert name.endswith("_seconds")
            assert {f"{name}_bucket", f"{name}_sum", f"{name}_count"} <= sample_names
        for sample in family.samples:
            assert labels <= set(sample.labels), (name, sample.labels)
    # Plus the build info and the standard process/python collectors, in the same registry.
    assert {"perennial_build_info", "process_cpu_seconds", "python_info"} <= set(families)


def test_the_metrics_server_serves_our_registry_once() -> None:
    _touch_every_metric()
    port = _free_port()
    assert metrics.start_metrics_server(port, addr="127.0.0.1") is True
    assert metrics.start_metrics_server(port, addr="127.0.0.1") is False
    with pytest.raises(RuntimeError, match="already runs"):
        metrics.start_metrics_server(port + 1 if port < 65535 else port - 1, addr="127.0.0.1")

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=deadline()) as response:
        text = response.read().decode()
    served = {family.name for family in text_string_to_metric_families(text)}
    assert set(EXPECTED) <= served
    assert (
        'perennial_rollbacks_total{deployment="iris",namespace="ml",reason="AnalysisFailed"}'
        in text
    )


def test_invalid_port_is_refused() -> None:
    with pytest.raises(ValueError, match="metrics port"):
        metrics.start_metrics_server(0)
