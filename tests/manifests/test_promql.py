"""Every PromQL expression we ship parses, and names only metrics and labels that exist.

The expressions: each panel target and template variable of the Grafana dashboard
(manifests/monitoring/dashboards/perennial.json) and each PrometheusRule alert. They are
parsed with ``promql_parser`` (a PromQL parser that follows Prometheus' grammar), after
Grafana's variables are substituted as Grafana would. What exists is read from the exporters
themselves: the operator's registry rendered in the Prometheus text format, and the
``/metrics`` page of a real model server on loopback serving a really trained model, after
real traffic and feedback. Labels are the exported ones plus the target labels Prometheus
adds (the Prometheus Operator's, and the PodMonitor's relabelings).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from perennial.k8s import metrics as operator_metrics
from perennial.k8s.serving import common_labels, pod_template
from perennial_runtime.contract import MIN_DRIFT_SAMPLES, TrainConfig
from testsupport import deadline

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "manifests" / "monitoring" / "dashboards" / "perennial.json"

Build = Callable[[str], list[dict[str, Any]]]

# Labels the Prometheus Operator puts on every target of a ServiceMonitor / PodMonitor.
SERVICE_MONITOR_TARGET_LABELS = {"job", "instance", "namespace", "service", "pod", "container"}
SERVICE_MONITOR_TARGET_LABELS |= {"endpoint"}
POD_MONITOR_TARGET_LABELS = {"job", "instance", "namespace", "pod", "container", "endpoint"}

# Grafana's variables, replaced as Grafana does before sending a query.
GRAFANA_BUILTINS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1d"}
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
_LABEL_VALUES = re.compile(r"^label_values\((?:(.*),\s*)?(\w+)\)$", re.DOTALL)


@dataclass
class Series:
    """One metric name as Prometheus stores it: its labels and, when scraped, their values."""

    labels: set[str]
    values: dict[str, set[str]] = field(default_factory=dict)


Catalogue = dict[str, Series]


# --- what the exporters export ---------------------------------------------------------------


def operator_catalogue() -> Catalogue:
    """The operator's registry as rendered for /metrics; labels from the metric objects."""
    text = generate_latest(operator_metrics.REGISTRY).decode()
    rendered = {family.name: family.type for family in text_string_to_metric_families(text)}
    declared: dict[str, tuple[str, ...]] = {}
    for value in vars(operator_metrics).values():
        if isinstance(value, MetricWrapperBase):
            declared[value._name] = tuple(value._labelnames)
    catalogue: Catalogue = {}
    for name, kind in rendered.items():
        labels = set(declared.get(name, ())) | SERVICE_MONITOR_TARGET_LABELS
        for family in text_string_to_metric_families(text):
            if family.name == name:
                for sample in family.samples:
                    labels |= set(sample.labels)
        for sample_name, extra in sample_names(name, kind):
            catalogue[sample_name] = Series(labels | extra)
    return catalogue


def sample_names(name: str, kind: str) -> Iterator[tuple[str, set[str]]]:
    if kind == "counter":
        yield f"{name}_total", set()
        yield f"{name}_created", set()
    elif kind == "histogram":
        yield f"{name}_bucket", {"le"}
        yield f"{name}_sum", set()
        yield f"{name}_count", set()
        yield f"{name}_created", set()
    else:
        yield name, set()


def scraped_catalogue(text: str, target_labels: set[str]) -> Catalogue:
    """Samples actually present on a scraped page, with their labels and label values."""
    catalogue: Catalogue = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series = catalogue.setdefault(sample.name, Series(set(target_labels)))
            for label, value in sample.labels.items():
                series.labels.add(label)
                series.values.setdefault(label, set()).add(value)
    return catalogue


@pytest.fixture(scope="module")
def model_server_page(tmp_path_factory: pytest.TempPathFactory) -> str:
    """/metrics of a real server after inference traffic, a bad request and feedback."""
    from sklearn.datasets import load_iris

    from perennial_runtime.serve.config import ServeConfig
    from perennial_runtime.serve.embedded import EmbeddedServer
    from perennial_runtime.training.trainer import train

    root = tmp_path_factory.mktemp("promql-model")
    config = TrainConfig.model_validate(
        {
            "runName": "iris-1",
            "pipelineName": "iris",
            "namespace": "default",
            "data": {"uri": "sklearn://iris", "target": "target"},
            "model": {
                "task": "classification",
                "estimator": "LogisticRegression",
                "params": {"max_iter": 500},
            },
            "evaluation": {"seed": 42},
            "artifactUri": root.as_uri(),
            "image": "ghcr.io/perennial-dev/perennial-runtime:test",
        }
    )
    result = train(config)
    assert result.status == "Succeeded", f"{result.reason}: {result.message}"
    assert result.artifact is not None
    server = EmbeddedServer(
        ServeConfig(model_uri=result.artifact.model_uri, sha256=result.artifact.sha256)
    ).start()
    try:
        server.wait_ready()
        frame = load_iris(as_frame=True).frame
        names = [c for c in frame.columns if c != "target"]
        rows = frame[names].to_numpy(dtype=float)
        targets = frame["target"].tolist()
        with httpx.Client(base_url=server.url, timeout=deadline()) as client:
            answered = 0
            while answered < MIN_DRIFT_SAMPLES:  # enough rows for a drift verdict
                response = client.post("/predict", json={"instances": rows.tolist()})
                assert response.status_code == 200, response.text
                body = response.json()
                feedback = client.post("/feedback", json={"ids": body["ids"], "targets": targets})
                assert feedback.status_code == 200, feedback.text
                answered += len(body["predictions"])
            assert client.post("/predict", json={"instances": "nope"}).status_code == 400
            page = client.get("/metrics")
            assert page.status_code == 200
            return page.text
    finally:
        server.stop()


@pytest.fixture(scope="module")
def catalogue(model_server_page: str, kustomize: Build) -> Catalogue:
    (monitor,) = [o for o in kustomize("monitoring") if o["kind"] == "PodMonitor"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    relabelled = {r["targetLabel"] for r in endpoint.get("relabelings", [])}
    server = scraped_catalogue(model_server_page, POD_MONITOR_TARGET_LABELS | relabelled)
    operator = operator_catalogue()
    both = operator.keys() & server.keys()
    assert not both, f"the operator and the model server both export {sorted(both)}"
    everything = {**operator, **server}
    # Prometheus' own series for every target.
    everything["up"] = Series(SERVICE_MONITOR_TARGET_LABELS | POD_MONITOR_TARGET_LABELS)
    return everything


# --- the expressions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Expression:
    where: str
    promql: str
    # label_values(selector, label): the label must exist on the selected metrics.
    label: str | None = None


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_panels() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows hold their panels
    return out


def substitute(promql: str, variables: dict[str, str], where: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise AssertionError(f"{where}: ${name} is not a variable of the dashboard")
        return variables[name]

    return _VARIABLE.sub(value, promql)


def dashboard_expressions() -> list[Expression]:
    board = dashboard()
    variables = dict(GRAFANA_BUILTINS)
    out: list[Expression] = []
    for var in board["templating"]["list"]:
        variables[var["name"]] = ".*"
    for var in board["templating"]["list"]:
        if var["type"] != "query":
            continue
        where = f"variable {var['name']}"
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = _LABEL_VALUES.match(query)
        assert match and match.group(1), f"{where}: expected label_values(SELECTOR, LABEL)"
        selector = substitute(match.group(1), variables, where)
        out.append(Expression(where, selector, label=match.group(2)))
    for panel in dashboard_panels():
        for target in panel.get("targets", []):
            where = f"panel {panel['title']!r} target {target['refId']}"
            out.append(Expression(where, substitute(target["expr"], variables, where)))
    return out


def rule_expressions(kustomize: Build) -> list[Expression]:
    (rule,) = [o for o in kustomize("monitoring") if o["kind"] == "PrometheusRule"]
    return [
        Expression(f"rule {r.get('alert') or r.get('record')}", r["expr"])
        for group in rule["spec"]["groups"]
        for r in group["rules"]
    ]


# --- checking one expression ------------------------------------------------------------------


def _names(selector: Any) -> list[str]:
    if selector.name:
        return [selector.name]
    for matcher in selector.matchers.matchers:
        if matcher.name == "__name__":
            assert matcher.op in (promql_parser.MatchOp.Equal, promql_parser.MatchOp.Re)
            assert re.fullmatch(r"[\w|]+", matcher.value), matcher.value
            return matcher.value.split("|")
    raise AssertionError("a selector without a metric name")


def problems(expression: Expression, catalogue: Catalogue) -> list[str]:
    """What is wrong with one expression (empty: nothing)."""
    try:
        tree = promql_parser.parse(expression.promql)
    except ValueError as exc:
        return [f"does not parse: {exc}"]
    found: list[str] = []

    def labels_of(names: set[str]) -> set[str]:
        out: set[str] = set()
        for name in names:
            if name in catalogue:
                out |= catalogue[name].labels
        return out

    def visit(node: Any) -> set[str]:
        """Check ``node``; the metric names below it."""
        below = [visit(child) for child in _children(node)]
        names: set[str] = set().union(*below) if below else set()
        if isinstance(node, promql_parser.VectorSelector):
            own = _names(node)
            names |= set(own)
            for name in own:
                series = catalogue.get(name)
                if series is None:
                    found.append(f"{name}: no exporter exports it")
                    continue
                for matcher in node.matchers.matchers:
                    if matcher.name == "__name__":
                        continue
                    if matcher.name not in series.labels:
                        found.append(f"{name} has no label {matcher.name!r}")
                    elif matcher.name in series.values and re.fullmatch(r"[\w|]+", matcher.value):
                        # A literal value or alternation on a scraped label: each must occur.
                        missing = set(matcher.value.split("|")) - series.values[matcher.name]
                        if missing:
                            found.append(f"{name}{{{matcher.name}}} never is {sorted(missing)}")
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            if node.modifier.type == promql_parser.AggModifierType.By:
                unknown = set(node.modifier.labels) - labels_of(names)
                if unknown:
                    found.append(f"aggregation by {sorted(unknown)}: no such label")
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            matching = node.modifier.matching
            if matching is not None and matching.type == promql_parser.LabelModifierType.Include:
                for side in below:
                    unknown = set(matching.labels) - labels_of(side)
                    if unknown:
                        found.append(f"on({', '.join(matching.labels)}): {sorted(unknown)} missing")
        return names

    names = visit(tree)
    if expression.label is not None and expression.label not in labels_of(names):
        found.append(f"label_values: the metrics have no label {expression.label!r}")
    return found


def _children(node: Any) -> list[Any]:
    if isinstance(node, promql_parser.BinaryExpr):
        return [node.lhs, node.rhs]
    if isinstance(node, promql_parser.MatrixSelector):
        return [node.vector_selector]
    if isinstance(node, promql_parser.Call):
        return [a for a in node.args if isinstance(a, promql_parser.Expr)]
    child = getattr(node, "expr", None)
    return [child] if isinstance(child, promql_parser.Expr) else []


# --- the tests ----------------------------------------------------------------------------------


def test_every_dashboard_and_alert_expression_parses_and_names_what_exists(
    catalogue: Catalogue, kustomize: Build
) -> None:
    expressions = dashboard_expressions() + rule_expressions(kustomize)
    assert len(expressions) >= 25
    report = {e.where: p for e in expressions if (p := problems(e, catalogue))}
    assert report == {}


def test_the_checker_catches_what_it_should(catalogue: Catalogue) -> None:
    def check(promql: str, label: str | None = None) -> list[str]:
        return problems(Expression("t", promql, label), catalogue)

    assert check("rate(perennial_requests_total[5m]") != []  # does not parse
    assert check("perennial_no_such_metric") == ["perennial_no_such_metric: no exporter exports it"]
    assert check('perennial_requests_total{outcome="teapot"}') == [
        "perennial_requests_total{outcome} never is ['teapot']"
    ]
    assert check('perennial_rollouts_total{pipeline="x"}') == [
        "perennial_rollouts_total has no label 'pipeline'"
    ]
    assert check("sum by (pipeline) (perennial_requests_total)") == [
        "aggregation by ['pipeline']: no such label"
    ]
    assert check("perennial_model_info * on (feature) perennial_model_ready") != []
    assert check('{__name__=~"perennial_model_ready|perennial_nope"}', "deployment") == [
        "perennial_nope: no exporter exports it"
    ]
    assert check("perennial_model_ready", "pipeline") == [
        "label_values: the metrics have no label 'pipeline'"
    ]
    # What the checker must accept: target labels, histogram buckets, scraped values.
    assert (
        check(
            "histogram_quantile(0.99, sum by (namespace, deployment, track, le) "
            '(rate(perennial_request_duration_seconds_bucket{endpoint=~"infer|predict"}[5m])))'
        )
        == []
    )
    assert check("sum by (kind, handler) (rate(perennial_reconcile_errors_total[5m]))") == []


def test_the_dashboard_covers_what_operators_ask_for() -> None:
    exprs = " ".join(e.promql for e in dashboard_expressions())
    for metric in (
        "perennial_runs_started_total",  # runs by trigger
        "perennial_run_outcomes_total",  # ... and verdict
        "perennial_champion_metric",
        "perennial_training_duration_seconds_bucket",
        "perennial_deployment_drift_score",
        "perennial_deployment_live_accuracy",
        "perennial_requests_total",  # request and error rate
        "perennial_request_duration_seconds_bucket",  # p99
        "perennial_rollouts_total",
        "perennial_rollbacks_total",
        "perennial_reconcile_errors_total",
    ):
        assert metric in exprs, metric
    assert "track" in exprs  # per canary
    board = dashboard()
    assert board["uid"] and board["title"]
    ids = [p["id"] for p in dashboard_panels()]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard_panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and panel["description"], panel["title"]


def test_dashboard_config_map_is_the_raw_json_for_the_sidecar(kustomize: Build) -> None:
    (config_map,) = [o for o in kustomize("monitoring") if o["kind"] == "ConfigMap"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["perennial.json"]) == dashboard()


def test_pod_monitor_selects_model_server_pods_and_maps_their_labels(kustomize: Build) -> None:
    from perennial.api.deployment import ModelDeploymentSpec
    from perennial.core.rollout import ModelRef

    (monitor,) = [o for o in kustomize("monitoring") if o["kind"] == "PodMonitor"]
    spec = monitor["spec"]
    pod = pod_template(
        "iris",
        ModelDeploymentSpec.model_validate({"source": {"pipelineRef": {"name": "iris"}}}),
        ModelRef(run="iris-1", model_uri="file:///m/model.skops", sha256="0" * 64),
        track="canary",
    )
    labels = pod["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert spec["namespaceSelector"] == {"any": True}
    assert labels[spec["jobLabel"]] == common_labels("iris")[spec["jobLabel"]]
    (endpoint,) = spec["podMetricsEndpoints"]
    ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
    assert endpoint["honorLabels"] is True  # keeps the server's own `endpoint` label
    sanitised = {re.sub(r"[^a-zA-Z0-9_]", "_", k): v for k, v in labels.items()}
    mapped = {}
    for relabel in endpoint["relabelings"]:
        (source,) = relabel["sourceLabels"]
        assert source.startswith("__meta_kubernetes_pod_label_"), source
        mapped[relabel["targetLabel"]] = sanitised[
            source.removeprefix("__meta_kubernetes_pod_label_")
        ]
    assert mapped == {"deployment": "iris", "track": "canary", "run": "iris-1"}
