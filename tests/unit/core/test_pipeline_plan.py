"""perennial.core.pipeline_plan: which run to start, cancel or prune; what to remember."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from perennial.api.enums import ConcurrencyPolicy, TriggerType
from perennial.api.pipeline import TrainingPipelineSpec
from perennial.core.pipeline_plan import (
    ANNOTATION_CONSUMED,
    ChampionRecord,
    Consumed,
    Memory,
    PipelineFacts,
    RunSummary,
    ServingModel,
    deployment_references,
    next_champion,
    plan,
    recover,
    sequence_of,
    summarize_run,
    watch_list,
)
from perennial.core.schedule import decide
from perennial.core.triggers import DecaySignal, DriftSignal

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CREATED = NOW - timedelta(days=1)
HASH = "h-current"
SEEN = Memory(run_sequence=3, spec_hash=HASH, data_fingerprint="fp1")


def run(seq: int, phase: str | None = "Succeeded", **kw: object) -> RunSummary:
    return RunSummary(name=f"p-{seq:05d}", sequence=seq, phase=phase, **kw)  # type: ignore[arg-type]


def blessed(seq: int, value: float = 0.9) -> RunSummary:
    return run(
        seq,
        "Succeeded",
        sha256=f"{seq:064d}",
        model_uri=f"file:///m/p-{seq:05d}/model.skops",
        metric="accuracy",
        value=value,
        finished=NOW - timedelta(hours=10 - seq),
    )


def drifting(serving_run: str | None, deployment: str = "iris") -> DriftSignal:
    """A deployment reporting drift above the threshold while it serves ``serving_run``."""
    return DriftSignal(
        score=0.4,
        samples=500,
        threshold=0.25,
        min_samples=100,
        cooldown_seconds=3600,
        last_fired=None,
        deployment=deployment,
        serving_run=serving_run,
        measured_run=serving_run,  # the scrape was of the model serving
    )


CHAMPION_3 = ChampionRecord(run="p-00003", sha256=f"{3:064d}")


def facts(**kw: object) -> PipelineFacts:
    base = PipelineFacts(pipeline="p", now=NOW, spec_hash=HASH, memory=SEEN)
    return replace(base, **kw)  # type: ignore[arg-type]


def test_a_new_pipeline_starts_its_initial_run() -> None:
    out = plan(facts(memory=Memory()))
    assert out.create is not None
    assert (out.create.name, out.create.trigger.type) == ("p-00001", TriggerType.INITIAL)
    assert out.memory.run_sequence == 1 and out.memory.spec_hash == HASH
    assert out.memory.last_triggers == {"Initial": NOW}
    assert (out.phase, out.ready, out.reconciling) == ("Training", False, True)


def test_nothing_due_means_idle_and_ready() -> None:
    out = plan(facts(runs=(blessed(3),)))
    assert out.create is None and out.cancel == () and out.deferred == ()
    assert (out.phase, out.ready, out.reason) == ("Idle", True, "Idle")
    assert "Champion p-00003 (accuracy 0.9000)" in out.message


def test_several_due_triggers_coalesce_into_one_run_and_are_all_consumed() -> None:
    schedule = decide("0 * * * *", NOW, last_scheduled=NOW - timedelta(hours=1), created=CREATED)
    out = plan(
        facts(
            manual_token="t1",
            spec_hash="h-new",
            schedule=schedule,
            data_fingerprint="fp2",
        )
    )
    assert out.create is not None
    assert out.create.trigger.type is TriggerType.MANUAL
    assert [t.type for t in out.create.coalesced] == [
        TriggerType.SPEC_CHANGE,
        TriggerType.DATA_CHANGE,
        TriggerType.SCHEDULE,
    ]
    assert "coalesced" in out.create.reason
    memory = out.memory
    assert (memory.retrain_token, memory.spec_hash, memory.data_fingerprint) == (
        "t1",
        "h-new",
        "fp2",
    )
    assert memory.schedule_time == NOW
    assert set(memory.last_triggers) == {"Manual", "SpecChange", "DataChange", "Schedule"}


def test_forbid_defers_and_keeps_the_trigger_for_later() -> None:
    active = run(4, "Training", trigger="Schedule")
    out = plan(facts(runs=(blessed(3), active), manual_token="t1"))
    assert out.create is None
    assert [t.type for t in out.deferred] == [TriggerType.MANUAL]
    assert out.memory.retrain_token is None  # not consumed
    assert out.memory.run_sequence == 4  # the active run was recovered
    assert "waits for run p-00004 to finish" in out.message
    # Once it finished, the same facts start the run.
    done = plan(facts(runs=(blessed(3), run(4, "Rejected")), manual_token="t1", memory=out.memory))
    assert done.create is not None and done.create.name == "p-00005"


def test_replace_cancels_the_active_run() -> None:
    out = plan(
        facts(
            runs=(run(4, "Training"),),
            manual_token="t1",
            policy=ConcurrencyPolicy.REPLACE,
        )
    )
    assert out.cancel == ("p-00004",)
    assert out.create is not None and out.create.name == "p-00005"
    assert out.message.startswith("Replacing p-00004 with run p-00005")


def test_suspend_starts_nothing_and_says_why() -> None:
    out = plan(facts(suspend=True, manual_token="t1"))
    assert out.create is None and out.deferred
    assert (out.phase, out.reason) == ("Suspended", "Suspended")
    assert "spec.suspend" in out.message


def test_a_run_created_before_a_crash_is_recovered_not_repeated() -> None:
    consumed = Consumed(spec_hash="h-new", retrain_token="t1", triggers=("Manual",), time=NOW)
    unrecorded = run(4, None, consumed=consumed)  # status still says run_sequence 3
    out = plan(facts(runs=(blessed(3), unrecorded), spec_hash="h-new", manual_token="t1"))
    assert out.create is None and out.deferred == ()
    assert out.memory.run_sequence == 4 and out.memory.retrain_token == "t1"
    assert out.memory.spec_hash == "h-new"


def test_the_next_sequence_passes_every_existing_run() -> None:
    out = plan(facts(memory=Memory(), runs=(blessed(7),), manual_token="x"))
    assert out.create is not None and out.create.name == "p-00008"


def test_first_data_fingerprint_is_remembered_without_a_run() -> None:
    out = plan(facts(memory=replace(SEEN, data_fingerprint=None), data_fingerprint="fp9"))
    assert out.create is None and out.memory.data_fingerprint == "fp9"


@pytest.mark.parametrize(
    ("elapsed", "fires"),
    [(0, False), (3599, False), (3600, True), (7200, True)],
)
def test_drift_cooldown_boundaries(elapsed: int, fires: bool) -> None:
    signal = drifting("p-00003")
    memory = replace(
        SEEN,
        last_triggers={"Drift": NOW - timedelta(seconds=elapsed)},
        champion=CHAMPION_3,
    )
    out = plan(facts(memory=memory, runs=(blessed(3),), drift=signal))
    assert (out.create is not None) is fires


def test_drift_held_behind_a_run_does_not_fire_again_for_the_replaced_model() -> None:
    # The champion p-00003 drifts while p-00004 (scheduled) trains: Forbid holds the drift.
    memory = replace(SEEN, champion=CHAMPION_3)
    training = run(4, "Training", trigger="Schedule")
    out = plan(facts(memory=memory, runs=(blessed(3), training), drift=drifting("p-00003")))
    assert out.create is None and [t.type for t in out.deferred] == [TriggerType.DRIFT]

    # p-00004 is blessed; the deployment still serves p-00003 and its numbers still look
    # bad: they describe the model just replaced, so no second, identical retrain.
    later = NOW + timedelta(minutes=5)
    runs = (blessed(3), blessed(4))
    out = plan(facts(now=later, memory=out.memory, runs=runs, drift=drifting("p-00003")))
    assert out.memory.champion is not None and out.memory.champion.run == "p-00004"
    assert out.create is None and out.deferred == ()
    assert "Drift not counted: md/iris serves p-00003, not the champion p-00004" in out.message

    # Rolling out p-00004: still not counted.
    rolling = replace(drifting("p-00003"), rollout_to="p-00004")
    out = plan(facts(now=later + timedelta(minutes=1), memory=out.memory, runs=runs, drift=rolling))
    assert out.create is None
    assert "md/iris is rolling out p-00004" in out.message

    # p-00004 serves, but the numbers are still the ones scraped from p-00003's server
    # (the scrape before the rollout ended): not counted, whatever the cool-down says.
    stale = replace(drifting("p-00004"), measured_run="p-00003")
    held = plan(facts(now=later + timedelta(minutes=2), memory=out.memory, runs=runs, drift=stale))
    assert held.create is None
    assert (
        "Drift not counted: md/iris's monitoring was measured on p-00003, not on p-00004 "
        "serving now; waiting for a scrape of it"
    ) in held.message

    # p-00004 serves and drifts itself: that counts.
    out = plan(
        facts(
            now=later + timedelta(minutes=2),
            memory=out.memory,
            runs=runs,
            drift=drifting("p-00004"),
        )
    )
    assert out.create is not None and out.create.trigger.type is TriggerType.DRIFT
    assert "not counted" not in out.message


def test_no_drift_or_decay_trigger_without_a_champion() -> None:
    decay = DecaySignal(
        metric="accuracy",
        value=0.5,
        samples=500,
        threshold=0.8,
        min_samples=50,
        cooldown_seconds=0,
        last_fired=None,
        deployment="iris",
        serving_run="p-00003",
        measured_run="p-00003",
    )
    out = plan(facts(runs=(run(3, "Rejected"),), drift=drifting("p-00003"), decay=decay))
    assert out.create is None and out.deferred == ()
    assert "Drift not counted: there is no champion yet" in out.message
    assert "Performance decay not counted: there is no champion yet" in out.message


def test_decay_of_a_deployment_pinned_to_another_run_is_not_counted() -> None:
    decay = DecaySignal(
        metric="accuracy",
        value=0.5,
        samples=500,
        threshold=0.8,
        min_samples=50,
        cooldown_seconds=0,
        last_fired=None,
        deployment="pinned",
        serving_run="p-00002",
        measured_run="p-00002",
    )
    memory = replace(SEEN, champion=CHAMPION_3)
    out = plan(facts(memory=memory, runs=(blessed(3),), decay=decay))
    assert out.create is None
    assert "md/pinned serves p-00002, not the champion p-00003" in out.message
    counted = plan(
        facts(
            memory=memory,
            runs=(blessed(3),),
            decay=replace(decay, serving_run="p-00003", measured_run="p-00003"),
        )
    )
    assert counted.create is not None
    assert counted.create.trigger.type is TriggerType.PERFORMANCE_DECAY


def test_after_the_champion_was_rolled_back_the_model_serving_instead_counts() -> None:
    # md/iris rolled p-00004 back and serves p-00003 until a new model is blessed: its
    # drift is the only thing that can bring one (outside a cool-down).
    memory = replace(SEEN, champion=ChampionRecord(run="p-00004", sha256=f"{4:064d}"))
    back = replace(drifting("p-00003"), rolled_back=("p-00004",))
    out = plan(facts(memory=memory, runs=(blessed(3), blessed(4)), drift=back))
    assert out.create is not None and out.create.trigger.type is TriggerType.DRIFT
    other = replace(back, rolled_back=("p-00002",))
    assert plan(facts(memory=memory, runs=(blessed(3), blessed(4)), drift=other)).create is None


def test_signals_count_only_when_measured_on_the_model_file_serving() -> None:
    memory = replace(SEEN, champion=CHAMPION_3)
    serving = replace(drifting("p-00003"), serving_sha256="a" * 64)
    same_file = replace(serving, measured_sha256="a" * 64)
    assert plan(facts(memory=memory, runs=(blessed(3),), drift=same_file)).create is not None
    # Same run name, another file (a run re-created under the same name): not the same model.
    other_file = replace(serving, measured_sha256="b" * 64)
    out = plan(facts(memory=memory, runs=(blessed(3),), drift=other_file))
    assert out.create is None
    assert "measured on p-00003 (sha256 bbbbbbbbbbbb), not on p-00003 serving now" in out.message
    # Numbers that name no model at all (an older server) are not trusted.
    unnamed = replace(serving, measured_run=None)
    out = plan(facts(memory=memory, runs=(blessed(3),), drift=unnamed))
    assert out.create is None
    assert "monitoring does not name the model it was measured on" in out.message


def test_a_quiet_stale_signal_is_not_mentioned() -> None:
    quiet = replace(drifting("p-00002"), score=0.01)
    out = plan(facts(memory=replace(SEEN, champion=CHAMPION_3), runs=(blessed(3),), drift=quiet))
    assert out.create is None and "not counted" not in out.message


def test_serving_model_of_a_model_deployment() -> None:
    md = {
        "metadata": {"name": "iris"},
        "status": {
            "currentModel": {"run": "p-00003", "sha256": "c" * 64},
            "rollout": {"toRun": "p-00004"},
            "rolledBackRuns": ["p-00002"],
            "monitoring": {"run": "p-00002", "sha256": "d" * 64, "liveAccuracy": 0.5},
        },
    }
    assert ServingModel.of(md) == ServingModel(
        "iris", "p-00003", "p-00004", ("p-00002",), "c" * 64, "p-00002", "d" * 64
    )
    assert ServingModel.of({"metadata": {"name": "new"}}) == ServingModel("new", None, None)


def test_champion_moves_only_forward() -> None:
    current = ChampionRecord(run="p-00005", sha256="x")
    assert next_champion(current, (blessed(3), blessed(5))) is current
    newer = next_champion(current, (blessed(5), blessed(6, 0.93)))
    assert newer is not None and (newer.run, newer.value) == ("p-00006", 0.93)
    # The champion's run was deleted: its name still orders it.
    assert next_champion(current, (blessed(4),)) is current
    assert next_champion(None, (run(2, "Rejected"),)) is None


def test_champion_change_is_reported_and_recorded() -> None:
    out = plan(facts(runs=(blessed(3),)))
    assert out.champion_changed
    assert out.memory.champion is not None and out.memory.champion.run == "p-00003"
    again = plan(facts(runs=(blessed(3),), memory=out.memory))
    assert not again.champion_changed


def test_pruning_keeps_the_champion_and_referenced_runs() -> None:
    runs = (
        blessed(1),
        run(2, "Rejected", finished=NOW - timedelta(hours=8)),
        run(3, "Rejected", finished=NOW - timedelta(hours=7)),
        run(4, "Failed", finished=NOW - timedelta(hours=6)),
        run(5, "Failed", finished=NOW - timedelta(hours=5)),
        run(6, "Training"),
    )
    memory = replace(SEEN, run_sequence=6)
    out = plan(facts(runs=runs, memory=memory, successful_limit=1, failed_limit=1))
    assert out.prune == ("p-00002", "p-00004")
    protected = plan(
        facts(
            runs=runs,
            memory=memory,
            successful_limit=1,
            failed_limit=1,
            protected=frozenset({"p-00002"}),
        )
    )
    assert protected.prune == ("p-00004",)


def test_a_failed_last_run_makes_the_pipeline_not_ready() -> None:
    out = plan(
        facts(runs=(blessed(2), run(3, "Failed", reason="DeadlineExceeded", message="slow")))
    )
    assert (out.ready, out.reason) == (False, "LastRunFailed")
    assert "Last run p-00003 failed: DeadlineExceeded (slow)" in out.message


def test_consumed_round_trips_through_the_annotation() -> None:
    consumed = Consumed(
        spec_hash="h",
        retrain_token="t",
        schedule_time=NOW,
        data_fingerprint="f",
        triggers=("Manual", "Schedule"),
        time=NOW,
    )
    assert Consumed.from_annotation(consumed.to_annotation()) == consumed
    assert Consumed.from_annotation("not json") is None
    assert Consumed.from_annotation("[1]") is None


def test_summarize_run_reads_an_api_object() -> None:
    body = {
        "metadata": {
            "name": "p-00012",
            "labels": {"perennial.dev/run-sequence": "12"},
            "annotations": {ANNOTATION_CONSUMED: Consumed(triggers=("Initial",)).to_annotation()},
        },
        "spec": {"trigger": {"type": "Initial"}},
        "status": {
            "phase": "Succeeded",
            "completionTime": "2026-06-01T11:00:00Z",
            "artifact": {"modelUri": "m", "sha256": "s"},
            "primaryMetric": {"name": "accuracy", "candidate": 0.9},
        },
    }
    summary = summarize_run(body)
    assert (summary.sequence, summary.phase, summary.trigger, summary.value) == (
        12,
        "Succeeded",
        "Initial",
        0.9,
    )
    assert summary.consumed is not None and summary.consumed.triggers == ("Initial",)
    assert not summary.active


@pytest.mark.parametrize(
    ("name", "labels", "expected"),
    [("p-00042", None, 42), ("p-x", None, 0), ("p-00042", {"perennial.dev/run-sequence": "7"}, 7)],
)
def test_sequence_of(name: str, labels: dict[str, str] | None, expected: int) -> None:
    assert sequence_of(name, labels) == expected


def test_recover_folds_runs_in_order() -> None:
    memory = recover(
        Memory(run_sequence=1),
        (
            run(3, consumed=Consumed(spec_hash="h3", time=NOW, triggers=("SpecChange",))),
            run(
                2,
                consumed=Consumed(
                    spec_hash="h2", retrain_token="t", time=NOW, triggers=("Manual",)
                ),
            ),
            run(1, consumed=Consumed(spec_hash="h1")),
        ),
    )
    assert (memory.run_sequence, memory.spec_hash, memory.retrain_token) == (3, "h3", "t")


def test_deployment_references() -> None:
    mds: list[dict[str, Any]] = [
        {
            "spec": {"source": {"runRef": {"name": "pinned"}}, "rollbackTo": "back"},
            "status": {
                "currentModel": {"run": "current"},
                "history": [{"run": "old1"}, {"run": "old2"}],
                "rollout": {"fromRun": "from", "toRun": "to"},
            },
        },
        {"spec": {}, "status": {}},
    ]
    assert deployment_references(mds) == {"pinned", "back", "current", "old1", "old2", "from", "to"}


def test_watch_list_describes_every_trigger() -> None:
    spec = TrainingPipelineSpec.model_validate(
        {
            "data": {"uri": "s3://b/d.csv", "target": "y"},
            "model": {"task": "regression", "estimator": "Ridge"},
            "artifacts": {"uri": "s3://b/m"},
            "triggers": {
                "schedule": {"cron": "@daily"},
                "dataChange": {"enabled": True, "pollIntervalSeconds": 120},
                "drift": {"deploymentRef": {"name": "md"}},
                "performanceDecay": {"deploymentRef": {"name": "md"}, "threshold": 50},
            },
        }
    )
    text = "; ".join(watch_list(spec, NOW))
    assert "schedule '@daily', next at 2026-06-01T12:00:00Z" in text
    assert "polled every 120s" in text
    assert "drift of md/md" in text and "live rmse of md/md" in text


@pytest.mark.parametrize(
    ("now", "deadline", "due"),
    [
        (datetime(2026, 6, 1, 2, 59, 59, tzinfo=UTC), None, False),  # a second early
        (datetime(2026, 6, 1, 3, 0, 0, tzinfo=UTC), None, True),  # exactly on time
        (datetime(2026, 6, 1, 3, 0, 59, tzinfo=UTC), 60, True),  # late, inside the deadline
        (datetime(2026, 6, 1, 3, 1, 1, tzinfo=UTC), 60, False),  # too late: skipped
        (datetime(2026, 6, 4, 3, 0, 5, tzinfo=UTC), None, True),  # three missed: one run
    ],
)
def test_schedule_edges_through_the_plan(now: datetime, deadline: int | None, due: bool) -> None:
    last = datetime(2026, 5, 31, 3, 0, tzinfo=UTC)
    decision = decide(
        "0 3 * * *", now, last_scheduled=last, created=CREATED, starting_deadline_seconds=deadline
    )
    memory = replace(SEEN, schedule_time=last)
    out = plan(facts(now=now, schedule=decision, memory=memory))
    assert (out.create is not None) is due
    if due:
        assert out.create is not None and out.create.trigger.type is TriggerType.SCHEDULE
        assert out.memory.schedule_time == decision.scheduled_time
    else:
        assert out.memory.schedule_time == last


def _decaying(last_fired: datetime | None) -> DecaySignal:
    return DecaySignal(
        metric="accuracy",
        value=0.6,
        samples=500,
        threshold=0.8,
        min_samples=50,
        cooldown_seconds=3600,
        last_fired=last_fired,
        deployment="iris",
        serving_run="p-00003",
        measured_run="p-00003",
    )


def _decay_run(seq: int, phase: str) -> RunSummary:
    consumed = Consumed(spec_hash=HASH, triggers=("PerformanceDecay",), time=NOW)
    return run(seq, phase, trigger="PerformanceDecay", consumed=consumed)


def test_decay_retrains_the_gates_keep_rejecting_back_off() -> None:
    # The champion p-00003 decays; the retrains it caused (p-00004, p-00005) were both
    # rejected: its cool-down is 4 x 3600 s, not 3600 s, and the status says so.
    memory = replace(SEEN, run_sequence=5, champion=CHAMPION_3)
    runs = (blessed(3), _decay_run(4, "Rejected"), _decay_run(5, "Rejected"))
    fired = NOW - timedelta(hours=2)
    memory = replace(memory, last_triggers={"PerformanceDecay": fired})
    held = plan(facts(memory=memory, runs=runs, decay=_decaying(fired)))
    assert held.create is None
    assert "Performance decay held until 2026-06-01T14:00:00+00:00" in held.message
    assert "the last 2 retrain(s) it started were rejected" in held.message

    later = fired + timedelta(hours=4)
    out = plan(facts(now=later, memory=memory, runs=runs, decay=_decaying(fired)))
    assert out.create is not None and out.create.trigger.type is TriggerType.PERFORMANCE_DECAY
    assert "held" not in out.message

    # A run between them that was not rejected (here: one that failed) ends the row.
    runs = (blessed(3), _decay_run(4, "Rejected"), _decay_run(5, "Failed"))
    out = plan(facts(memory=memory, runs=runs, decay=_decaying(fired)))
    assert out.create is not None


def test_the_backoff_is_capped() -> None:
    memory = replace(SEEN, run_sequence=12, champion=CHAMPION_3)
    runs = (blessed(3), *(_decay_run(seq, "Rejected") for seq in range(4, 13)))
    fired = NOW - timedelta(hours=16)  # 9 rejections in a row: 16 x, not 512 x
    memory = replace(memory, last_triggers={"PerformanceDecay": fired})
    out = plan(facts(memory=memory, runs=runs, decay=_decaying(fired)))
    assert out.create is not None
