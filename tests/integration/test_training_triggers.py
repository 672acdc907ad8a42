"""Triggers against the emulator, with the operator's clock in the test's hand."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from .harness import wait_for
from .training_helpers import MD, TP, Training, result_json, training

__all__ = ["training"]


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def _bless_first(training: Training, pipeline: str) -> None:
    await training.wait_run(f"{pipeline}-00001")
    await training.finish(f"{pipeline}-00001", result_json(f"{pipeline}-00001", accuracy=0.9))


async def test_cron_schedule_fires_and_collapses_missed_times_into_one_run(
    training: Training,
) -> None:
    await training.create_pipeline("nightly", triggers={"schedule": {"cron": "*/5 * * * *"}})
    await _bless_first(training, "nightly")
    tp = await training.wait_pipeline(
        "nightly", lambda s: s.get("nextScheduleTime"), "nextScheduleTime"
    )
    next_time = _time(tp["status"]["nextScheduleTime"])
    assert next_time > training.clock()
    await training.decided()
    assert len(await training.runs("nightly")) == 1  # not due yet

    training.clock.set(next_time)
    second = await training.wait_run("nightly-00002")
    assert second["spec"]["trigger"]["type"] == "Schedule"
    assert "*/5 * * * *" in second["spec"]["trigger"]["reason"]
    await training.finish("nightly-00002", result_json("nightly-00002", accuracy=0.92))

    # The operator "was down" for three schedules: one catch-up run, not three.
    training.clock.advance(3 * 300 + 10)
    third = await training.wait_run("nightly-00003")
    assert "catch-up" in third["spec"]["trigger"]["reason"]
    await training.finish("nightly-00003", result_json("nightly-00003", accuracy=0.93))
    await training.decided()
    assert [r["metadata"]["name"] for r in await training.runs("nightly")] == [
        "nightly-00001",
        "nightly-00002",
        "nightly-00003",
    ]
    tp = await training.pipeline("nightly")
    assert _time(tp["status"]["nextScheduleTime"]) > training.clock()
    assert _time(tp["status"]["lastScheduleTime"]) <= training.clock()


async def test_new_data_is_noticed_at_the_poll_interval(training: Training, tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a,b,target\n1,2,0\n")
    await training.create_pipeline(
        "fresh",
        data={"uri": f"file://{data}", "target": "target"},
        triggers={"dataChange": {"enabled": True, "pollIntervalSeconds": 60}},
    )
    await _bless_first(training, "fresh")
    tp = await training.wait_pipeline(
        "fresh", lambda s: s.get("lastDataFingerprint"), "first fingerprint"
    )
    first = tp["status"]["lastDataFingerprint"]

    data.write_text("a,b,target\n1,2,0\n3,4,1\n")
    await training.decided()
    assert len(await training.runs("fresh")) == 1  # the poll interval has not passed

    training.clock.advance(61)
    run = await training.wait_run("fresh-00002")
    assert run["spec"]["trigger"]["type"] == "DataChange"
    assert first in run["spec"]["trigger"]["reason"]
    tp = await training.wait_pipeline(
        "fresh", lambda s: s.get("lastDataFingerprint") != first, "new fingerprint recorded"
    )
    assert tp["status"]["lastTriggers"]["DataChange"]

    # Unchanged data: polled again, nothing starts.
    await training.finish("fresh-00002", result_json("fresh-00002", accuracy=0.95))
    polled = training.clock.advance(61)
    await training.wait_pipeline(
        "fresh",
        lambda s: s.get("lastDataCheckTime") and _time(s["lastDataCheckTime"]) >= polled,
        "the data polled again",
    )
    await training.decided()
    assert len(await training.runs("fresh")) == 2


async def test_manual_annotation_waits_for_the_active_run_under_forbid(
    training: Training,
) -> None:
    await training.create_pipeline("manual")
    await training.wait_run("manual-00001")
    await training.api.patch(
        TP, "manual", "ml", {"metadata": {"annotations": {"perennial.dev/retrain": "now"}}}
    )
    tp = await training.wait_pipeline(
        "manual", lambda s: "waits for run manual-00001" in (s.get("message") or ""), "deferred"
    )
    assert "Manual" in tp["status"]["message"]
    assert len(await training.runs("manual")) == 1

    await training.finish("manual-00001", result_json("manual-00001", accuracy=0.9))
    second = await training.wait_run("manual-00002")
    assert second["spec"]["trigger"] == {
        "type": "Manual",
        "reason": "annotation perennial.dev/retrain='now'",
        "time": second["spec"]["trigger"]["time"],
    }
    tp = await training.wait_pipeline(
        "manual", lambda s: s.get("lastRetrainToken") == "now", "token consumed"
    )
    # The same value again is not a new request.
    await training.api.patch(TP, "manual", "ml", {"metadata": {"labels": {"touched": "yes"}}})
    await training.handled("manual")
    assert len(await training.runs("manual")) == 2


async def test_replace_cancels_the_active_run(training: Training) -> None:
    await training.create_pipeline("replace", concurrencyPolicy="Replace")
    await training.wait_job("replace-00001")
    await training.controllers.start_job("replace-00001", "ml")
    await training.wait_phase("replace-00001", "Training")
    await training.api.patch(
        TP, "replace", "ml", {"metadata": {"annotations": {"perennial.dev/retrain": "1"}}}
    )
    await training.wait_run("replace-00002")
    old = await training.wait_phase("replace-00001", "Failed")
    assert old["status"]["reason"] == "Replaced"
    assert "replace-00002" in old["status"]["message"]

    async def job_gone() -> bool:
        return await training.api.get_or_none("batch/v1/jobs", "replace-00001", "ml") is None

    await wait_for(job_gone, what="the replaced run's Job is deleted")
    await training.wait_job("replace-00002")


async def test_spec_change_retrains(training: Training) -> None:
    await training.create_pipeline("spec")
    await _bless_first(training, "spec")
    await training.api.patch(TP, "spec", "ml", {"spec": {"model": {"params": {"C": 0.5}}}})
    run = await training.wait_run("spec-00002")
    assert run["spec"]["trigger"]["type"] == "SpecChange"
    assert run["spec"]["pipelineSpec"]["model"]["params"] == {"C": 0.5}
    assert run["spec"]["champion"]["run"] == "spec-00001"
    # Only the run template changed: not a training-relevant change.
    await training.finish("spec-00002", result_json("spec-00002", accuracy=0.91))
    await training.api.patch(TP, "spec", "ml", {"spec": {"suspend": False}})
    await training.handled("spec")
    assert len(await training.runs("spec")) == 2


async def test_drift_on_the_served_model_starts_one_run_per_cooldown(
    training: Training,
) -> None:
    await training.api.create(
        {
            "apiVersion": "perennial.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "served", "namespace": "ml"},
            "spec": {
                "source": {"pipelineRef": {"name": "drifty"}},
                "monitoring": {"enabled": False, "minSamples": 100},
                # The test moves the clock by up to ~20 minutes while a rollout is pending:
                # past the default 600 s the rollout fails and is rolled back (whose
                # numbers then count), which is not what this test is about.
                "progressDeadlineSeconds": 7200,
            },
        }
    )
    await training.create_pipeline(
        "drifty",
        triggers={
            "drift": {
                "deploymentRef": {"name": "served"},
                "threshold": 0.25,
                "cooldownSeconds": 600,
            }
        },
    )
    await _bless_first(training, "drifty")

    async def rolled_out(run: str) -> None:
        """Play the Deployment controller: the champion's Pods are ready and the
        ModelDeployment serves it (drift only counts for the champion, rolled out)."""

        async def template_runs() -> bool:
            found = await training.api.get_or_none("apps/v1/deployments", "served-serving", "ml")
            labels = ((found or {}).get("spec") or {}).get("template", {}).get("metadata", {})
            return (labels.get("labels") or {}).get("perennial.dev/run") == run

        await wait_for(template_runs, timeout=30, what=f"served-serving runs {run}")
        await training.controllers.set_deployment_ready("served-serving", "ml")

        async def serves() -> bool:
            status = (await training.api.get(MD, "served", "ml")).get("status") or {}
            current = (status.get("currentModel") or {}).get("run")
            return current == run and not status.get("rollout")

        await wait_for(serves, timeout=30, what=f"md/served serves {run}")

    await rolled_out("drifty-00001")

    async def serving_reports(score: float, samples: int, run: str | None = None) -> Any:
        """Play the monitoring scrape (again and again: the ModelDeployment controller, if
        present, writes its own status too), until ``run`` exists. The numbers name the
        model serving, as a real server's do."""

        async def scrape_then_look() -> Any:
            status = (await training.api.get(MD, "served", "ml")).get("status") or {}
            current = status.get("currentModel") or {}
            numbers = {"maxDriftScore": score, "driftSamples": samples}
            numbers.update(run=current.get("run"), sha256=current.get("sha256"))
            await training.api.patch_status(MD, "served", "ml", {"monitoring": numbers})
            return await training.run(run) if run else None

        if run is None:
            for _ in range(3):
                await scrape_then_look()
                await training.decided(rounds=2)  # two trigger checks see it
            return None
        return await wait_for(scrape_then_look, what=f"run {run}")

    await serving_reports(0.4, 50)  # too few samples for a verdict
    assert len(await training.runs("drifty")) == 1

    run = await serving_reports(0.4, 500, "drifty-00002")
    assert run["spec"]["trigger"]["type"] == "Drift"
    assert "0.400 >= threshold 0.250" in run["spec"]["trigger"]["reason"]
    await training.finish(
        "drifty-00002",
        result_json(
            "drifty-00002", accuracy=0.93, champion_accuracy=0.9, champion_run="drifty-00001"
        ),
    )
    await rolled_out("drifty-00002")

    # Still drifting, inside the cool-down: no second run; after it: one more.
    training.clock.advance(300)
    await serving_reports(0.4, 500)
    assert len(await training.runs("drifty")) == 2
    training.clock.advance(301)
    await serving_reports(0.4, 500, "drifty-00003")

    # drifty-00003 is blessed; until its rollout is done the deployment still serves
    # drifty-00002, drifting: those numbers describe the model being replaced, past the
    # cool-down or not.
    await training.finish(
        "drifty-00003",
        result_json(
            "drifty-00003", accuracy=0.95, champion_accuracy=0.93, champion_run="drifty-00002"
        ),
    )
    training.clock.advance(601)
    await serving_reports(0.4, 500)
    assert len(await training.runs("drifty")) == 3
    tp = await training.wait_pipeline(
        "drifty",
        lambda s: "Drift not counted" in (s.get("message") or ""),
        "the stale drift explained",
    )
    assert "md/served is rolling out drifty-00003" in tp["status"]["message"]
