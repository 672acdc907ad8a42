"""Monitoring feedback: the operator reads a real ``perennial-runtime serve`` (a model trained
for real, served on 127.0.0.1) through the Service into status.monitoring, and the
pipeline's drift trigger reads those fields and starts a retraining run. A server that
cannot be reached is a condition, not a crash. ``kubectl`` shows the numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from perennial.k8s import metrics

from .deployment_helpers import (
    NOWHERE,
    Serving,
    TrainedModel,
    env_of,
    full_operator,
    iris_model,
    iris_rows,
    metric,
    model_server,
    serving,
    train_iris,
)
from .harness import Kubectl, deadline, wait_for

__all__ = ["full_operator", "iris_model", "serving"]


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    (found,) = [c for c in status["conditions"] if c["type"] == type_]
    return found


async def test_drift_seen_by_the_server_reaches_status_and_triggers_retraining(
    full_operator: Serving, tmp_path: Path
) -> None:
    serving = full_operator
    serving.namespace = "md-drift"
    model = train_iris(tmp_path, "iris-00001")
    await serving.create_pipeline(
        "iris",
        triggers={
            "drift": {
                "deploymentRef": {"name": "iris"},
                "threshold": 0.25,
                "cooldownSeconds": 0,
            }
        },
    )
    md = await serving.create_md(
        "iris", pipeline="iris", replicas=1, monitoring={"scrapeIntervalSeconds": 30}
    )
    # The real trainer's result is the Job's termination message: the run is blessed.
    await serving.training.wait_run("iris-00001")
    await serving.bless("iris-00001", message=model.result.to_json())
    deployment = await serving.wait_serving("iris-serving", "iris-00001")
    env = env_of(deployment)
    assert (env["PERENNIAL_MODEL_URI"], env["PERENNIAL_MODEL_SHA256"]) == (
        model.model_uri,
        model.sha256,
    )

    # The server the Deployment describes, started from the Deployment's own settings.
    with model_server(
        env["PERENNIAL_MODEL_URI"], env["PERENNIAL_MODEL_SHA256"], env["PERENNIAL_MODEL_NAME"]
    ) as server:
        serving.resolver.service = server.url
        async with httpx.AsyncClient(base_url=server.url, timeout=deadline()) as http:
            # Live inputs far from the training data, and some ground truth.
            answer = await http.post(
                "/predict", json={"instances": iris_rows(300, scale=2.5, shift=3.0)}
            )
            assert answer.status_code == 200, answer.text
            ids = answer.json()["ids"]
            feedback = await http.post("/feedback", json={"ids": ids[:150], "targets": [0] * 150})
            assert feedback.status_code == 200, feedback.text

        await serving.ready("iris-serving")
        scraped = await serving.wait_md(
            "iris",
            lambda s: (s.get("monitoring") or {}).get("maxDriftScore") is not None,
            "drift in status.monitoring",
        )
        monitoring = scraped["status"]["monitoring"]
        assert monitoring["maxDriftScore"] >= 0.25
        assert monitoring["driftSamples"] >= 100
        assert set(monitoring["driftScores"]) == {
            "sepal length (cm)",
            "sepal width (cm)",
            "petal length (cm)",
            "petal width (cm)",
        }
        assert monitoring["requests"] == 1 and monitoring["errorRate"] == 0
        assert monitoring["feedbackSamples"] == 150
        assert 0 <= monitoring["liveAccuracy"] <= 1 and "liveRmse" not in monitoring
        assert monitoring["reachable"] is True and monitoring["lastScrapeTime"]
        assert condition(scraped["status"], "MetricsAvailable")["status"] == "True"
        assert metric(
            "perennial_deployment_drift_score", namespace="md-drift", deployment="iris"
        ) == pytest.approx(monitoring["maxDriftScore"], abs=1e-5)

        # The pipeline's drift trigger reads exactly these fields: a retraining run starts.
        run = await serving.training.wait_run("iris-00002")
    assert run["spec"]["trigger"]["type"] == "Drift"
    assert "drift score" in run["spec"]["trigger"]["reason"]
    assert scraped["status"]["phase"] == "Available"
    await serving.wait_events(md, "RolloutSucceeded")

    # Deleted: its drift and live-accuracy series go with it.
    await serving.api.delete("perennial.dev/v1alpha1/modeldeployments", "iris", "md-drift")
    drift_series = {"namespace": "md-drift", "deployment": "iris"}
    await wait_for(
        lambda: (
            metrics.REGISTRY.get_sample_value("perennial_deployment_drift_score", drift_series)
            is None
        )
    )
    assert (
        metrics.REGISTRY.get_sample_value("perennial_deployment_live_accuracy", drift_series)
        is None
    )


async def test_unreachable_server_is_a_condition_not_a_crash(
    serving: Serving, iris_model: TrainedModel, kubectl: Kubectl
) -> None:
    serving.namespace = "md-unreachable"
    md = await serving.serve_first("iris", "iris", monitoring={"scrapeIntervalSeconds": 30})
    assert serving.resolver.service == NOWHERE
    down = await serving.wait_md(
        "iris",
        lambda s: (s.get("monitoring") or {}).get("reachable") is False,
        "a failed scrape recorded",
    )
    metrics_condition = condition(down["status"], "MetricsAvailable")
    assert metrics_condition["status"] == "False"
    assert metrics_condition["reason"] == "ScrapeFailed"
    assert "127.0.0.1:9" in metrics_condition["message"]
    assert down["status"]["phase"] == "Available"  # serving is fine; only metrics are missing
    await serving.wait_events(md, "MetricsUnavailable")
    posted = await serving.api.events_for(md)
    assert [e.type for e in posted if e.reason == "MetricsUnavailable"] == ["Warning"]

    with model_server(iris_model.model_uri, iris_model.sha256) as server:
        serving.resolver.service = server.url
        async with httpx.AsyncClient(base_url=server.url, timeout=deadline()) as http:
            answer = await http.post("/predict", json={"instances": iris_rows(150)})
            assert answer.status_code == 200, answer.text
        serving.clock.advance(30)  # the next scrape is due
        up = await serving.wait_md(
            "iris",
            lambda s: (s.get("monitoring") or {}).get("reachable") is True,
            "the server read again",
        )
    monitoring = up["status"]["monitoring"]
    assert monitoring["driftSamples"] == 150
    assert monitoring["maxDriftScore"] < 0.1  # the training distribution itself
    assert condition(up["status"], "MetricsAvailable")["status"] == "True"
    await serving.wait_events(md, "MetricsAvailable")

    # kubectl shows the model, phase, ready Pods and drift (printer columns).
    table = await kubectl("get", "md", "-n", serving.namespace)
    header, row = table.strip().splitlines()
    assert header.split() == ["NAME", "MODEL", "PHASE", "READY", "DRIFT", "AGE"]
    cells = row.split()
    assert cells[:4] == ["iris", "iris-00001", "Available", "2"]
    assert float(cells[4]) == pytest.approx(monitoring["maxDriftScore"], abs=1e-3)
    described = await kubectl("describe", "md", "iris", "-n", serving.namespace)
    for text in ("Current Model:", "iris-00001", "Last Rollout:", "Succeeded", "Max Drift Score"):
        assert text in described, text


# The machine running the suite may be busy: the waits of the long story get room (they
# return as soon as the condition holds).


async def _decayed_feedback(url: str, rows: int = 150) -> None:
    """Predictions through the server, then ground truth that disagrees with most of them."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        answer = await http.post("/predict", json={"instances": iris_rows(rows)})
        assert answer.status_code == 200, answer.text
        ids = answer.json()["ids"]
        feedback = await http.post("/feedback", json={"ids": ids, "targets": [0] * rows})
        assert feedback.status_code == 200, feedback.text


async def test_a_rollout_is_not_judged_on_the_replaced_models_numbers(
    full_operator: Serving, tmp_path: Path
) -> None:
    """Issue 17: right after a rollout, status.monitoring still held the replaced model's
    live accuracy, and with cooldownSeconds 0 a duplicate run started on it. Every scrape
    now names the run and sha256 it measured; a signal counts only for the model serving
    now, and a rollout drops the old numbers and scrapes again at once."""
    serving = full_operator
    serving.namespace = "md-identity"
    decay = {
        "deploymentRef": {"name": "iris"},
        "threshold": 0.8,
        "minFeedbackSamples": 50,
        "cooldownSeconds": 0,
    }
    await serving.create_pipeline(
        "iris",
        triggers={"performanceDecay": decay},
        gates={
            "metrics": [{"metric": "accuracy", "threshold": 0.8}],
            "beatChampion": {"enabled": False},
        },
    )
    await serving.create_md(
        "iris",
        pipeline="iris",
        replicas=1,
        monitoring={"scrapeIntervalSeconds": 30, "feedbackWindow": 500},
    )
    v1 = train_iris(tmp_path, "iris-00001")
    await serving.training.wait_run("iris-00001")
    await serving.bless("iris-00001", message=v1.result.to_json())
    deployment = await serving.wait_serving("iris-serving", "iris-00001")
    assert env_of(deployment)["PERENNIAL_FEEDBACK_WINDOW"] == "500"

    v2 = train_iris(tmp_path, "iris-00002")  # what the decay-triggered run will produce
    with model_server(v1.model_uri, v1.sha256) as old, model_server(v2.model_uri, v2.sha256) as new:
        serving.resolver.service = old.url
        await _decayed_feedback(old.url)
        await serving.ready("iris-serving")
        scraped = await serving.wait_md(
            "iris",
            lambda s: (s.get("monitoring") or {}).get("feedbackSamples") == 150,
            "v1's live accuracy scraped",
        )
        monitoring = scraped["status"]["monitoring"]
        assert (monitoring["run"], monitoring["sha256"]) == ("iris-00001", v1.sha256)
        assert condition(scraped["status"], "MetricsAvailable")["message"].startswith(
            "iris-00001: 1 requests"
        )
        assert monitoring["liveAccuracy"] < 0.8
        # The decay of the model serving counts: the first retrain.
        run = await serving.training.wait_run("iris-00002")
        assert run["spec"]["trigger"]["type"] == "PerformanceDecay"

        # v2 is blessed and rolled out.
        await serving.bless("iris-00002", message=v2.result.to_json())
        await serving.wait_serving("iris-serving", "iris-00002")
        await serving.ready("iris-serving")
        # The rollout dropped v1's numbers and scraped at once; the answer still came from
        # v1's server (an old Pod the Service has not let go of yet): it names v1.
        after = await serving.wait_md(
            "iris",
            lambda s: (
                (s.get("currentModel") or {}).get("run") == "iris-00002"
                and (s.get("monitoring") or {}).get("run") == "iris-00001"
            ),
            "the first scrape after the rollout",
        )
        assert after["status"]["currentModel"]["sha256"] == v2.sha256
        held = await serving.training.wait_pipeline(
            "iris",
            lambda s: "Performance decay not counted" in (s.get("message") or ""),
            "the stale decay held back",
        )
        assert "iris-00001" in held["status"]["message"], held["status"]["message"]
        assert await serving.training.run("iris-00003") is None

        # The Service reaches v2's server: fresh numbers, nothing to retrain for.
        serving.resolver.service = new.url
        serving.clock.advance(30)
        fresh = await serving.wait_md(
            "iris",
            lambda s: (s.get("monitoring") or {}).get("run") == "iris-00002",
            "v2's own numbers",
        )
        monitoring = fresh["status"]["monitoring"]
        assert monitoring["sha256"] == v2.sha256 and monitoring["feedbackSamples"] == 0
        await serving.training.wait_pipeline(
            "iris",
            lambda s: "not counted" not in (s.get("message") or ""),
            "nothing held back any more",
        )
        assert await serving.training.run("iris-00003") is None

        # v2's own decay does count.
        await _decayed_feedback(new.url)
        serving.clock.advance(30)
        run = await serving.training.wait_run("iris-00003")
    assert run["spec"]["trigger"]["type"] == "PerformanceDecay"
    assert "over 150 feedback samples" in run["spec"]["trigger"]["reason"]
