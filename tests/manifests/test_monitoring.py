"""The ServiceMonitor scrapes the metrics Service; the alerts use metrics that exist.

test_promql.py parses every alert and dashboard expression and checks metrics and labels
against what the operator and a real model server export."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from perennial.k8s.metrics import REGISTRY

Build = Callable[[str], list[dict[str, Any]]]


def exposed_sample_names() -> set[str]:
    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{s}" for s in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def test_service_monitor_selects_the_metrics_service(kustomize: Build) -> None:
    (monitor,) = [o for o in kustomize("monitoring") if o["kind"] == "ServiceMonitor"]
    (service,) = [o for o in kustomize("base") if o["kind"] == "Service"]
    spec = monitor["spec"]
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert spec["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["honorLabels"] is True
    # The job label the alerts use.
    assert service["metadata"]["labels"][spec["jobLabel"]] == "perennial-operator"


def test_every_alert_uses_existing_metrics_and_is_documented(kustomize: Build) -> None:
    (rule,) = [o for o in kustomize("monitoring") if o["kind"] == "PrometheusRule"]
    exposed = exposed_sample_names()
    alerts = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert {a["alert"] for a in alerts} >= {
        "PerennialOperatorDown",
        "PerennialReconcileErrors",
        "PerennialTrainingRunsFailing",
        "PerennialModelRolledBack",
        "PerennialDriftHigh",
    }
    for alert in alerts:
        used = set(re.findall(r"\bperennial_[a-z_]+", alert["expr"]))
        assert used <= exposed, (alert["alert"], used - exposed)
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
    operator_down = next(a for a in alerts if a["alert"] == "PerennialOperatorDown")
    assert 'job="perennial-operator"' in operator_down["expr"]


def test_drift_alert_threshold_matches_the_design(kustomize: Build) -> None:
    # PSI: warn at 0.1, retrain at 0.25 (DESIGN.md); the alert fires when drift stays high.
    (rule,) = [o for o in kustomize("monitoring") if o["kind"] == "PrometheusRule"]
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert alerts["PerennialDriftHigh"]["expr"].endswith("> 0.25")
