"""The demo's pieces that need no processes: the stream, the summary, the plot, the view."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from perennial.local.demo import manifests, report
from perennial.local.demo.plot import chapters, draw, rolling
from perennial.local.demo.stream import FEATURES, TARGET, DriftingStream, publish
from perennial.local.demo.traffic import BatchRecord, Totals
from perennial.local.demo.view import LiveView
from perennial.local.manifests import load_manifests


def _batch(
    time: float, phase: str, correct: int, *, failed: int = 0, run: str | None = "m-1"
) -> BatchRecord:
    return BatchRecord(
        time=time,
        phase=phase,
        regime="A",
        rows=10,
        correct=correct,
        baseline_correct=5,
        run=run,
        requests=2,
        failed=failed,
    )


def test_the_stream_drifts_and_corrupts_on_demand(tmp_path: Path) -> None:
    stream = DriftingStream(seed=1)
    x, y = stream.sample(2000)
    assert x.shape == (2000, len(FEATURES)) and set(np.unique(y)) == {0, 1}
    stream.set_regime("B")
    shifted, _ = stream.sample(2000)
    assert shifted[:, 0].mean() - x[:, 0].mean() > 1.2  # the covariate shift PSI sees
    clean = stream.window(1000, "A")
    again = DriftingStream(seed=1).window(1000, "A")
    pd.testing.assert_frame_equal(clean, again)  # seeded: the demo is reproducible
    bad = DriftingStream(seed=1).window(1000, "A", corrupt=0.45)
    flipped = (bad[TARGET] != clean[TARGET]).mean()
    assert 0.35 < flipped < 0.55
    path = tmp_path / "data" / "stream.csv"
    publish(clean, path)
    assert list(pd.read_csv(path).columns) == [*FEATURES, TARGET]


def test_the_demo_manifests_are_valid(tmp_path: Path) -> None:
    path = manifests.write(tmp_path / "m.yaml", tmp_path / "stream.csv", manifests.DemoRules())
    found = load_manifests([path])
    pipeline = found.pipelines[("default", manifests.PIPELINE)]
    assert pipeline.spec.triggers.drift is not None
    assert pipeline.spec.data.uri == f"file://{tmp_path / 'stream.csv'}"
    assert ("default", manifests.DEPLOYMENT) in found.deployments


def test_phases_rollouts_and_the_summary() -> None:
    records = [
        _batch(0, "1 v1 serves", 9),
        _batch(10, "1 v1 serves", 10),
        _batch(20, "2 drift, v1 serves", 4),
        _batch(30, "2 drift, v1 serves", 5, failed=1, run=None),
        _batch(40, "2 v2 serves", 9),
    ]
    phases = report.phase_stats(records)
    assert [p.phase for p in phases] == ["1 v1 serves", "2 drift, v1 serves", "2 v2 serves"]
    assert phases[0].accuracy == 0.95 and phases[0].baseline == 0.5
    assert phases[1].accuracy == 0.4  # the failed batch has no answer to score
    assert phases[1].failed == 1
    events = [
        report.TimedEvent(15, "ModelDeployment", "md", "RolloutStarted", "", "Normal", "m-2"),
        report.TimedEvent(35, "ModelDeployment", "md", "RolloutSucceeded", "", "Normal", "m-2"),
        report.TimedEvent(38, "ModelDeployment", "md", "RolloutStarted", "", "Normal", "m-3"),
        report.TimedEvent(45, "ModelDeployment", "md", "RolledBack", "", "Warning", "m-3"),
    ]
    rollouts = report.rollouts(events, records)
    assert [(r.target, r.result, r.requests, r.failed) for r in rollouts] == [
        ("m-2", "Succeeded", 4, 1),
        ("m-3", "RolledBack", 2, 0),
    ]
    run = {
        "metadata": {"name": "m-2"},
        "spec": {
            "trigger": {
                "type": "Drift",
                "reason": "drift (also due, coalesced into this run: PerformanceDecay: x; "
                "DataChange: y)",
            }
        },
        "status": {
            "phase": "Succeeded",
            "primaryMetric": {"candidate": 0.9, "champion": 0.5},
            "gates": [{"name": "accuracy.threshold", "passed": True}],
        },
    }
    rows = report.run_rows([run], served={"m-2"})
    assert rows[0].also == "PerformanceDecay, DataChange"
    assert rows[0].gates == "1 passed" and rows[0].served
    text = report.render(
        runs=rows,
        rollout_list=rollouts,
        phases=phases,
        totals=Totals(10, 1, 50, 5),
        checks=[report.Check("a", True, "fine"), report.Check("b", False, "broken")],
    )
    assert "[PASS] a: fine" in text and "[FAIL] b: broken" in text
    assert any(line.split()[:2] == ["m-3", "RolledBack"] for line in text.splitlines())


def test_the_plot_breaks_lines_at_clock_jumps(tmp_path: Path) -> None:
    records = [_batch(t, "1 v1 serves", 9) for t in (0, 30, 60)]
    records += [_batch(t, "2 v2 serves", 9) for t in (600, 630)]
    xs, _ = rolling(records, baseline=False)
    assert np.isnan(xs[3])  # the gap between minute 1 and minute 10 is not drawn
    assert [c[0] for c in chapters(report.phase_stats(records))] == [
        "1 v1 serves",
        "2 drift, retrain, v2",
    ]
    path = draw(
        tmp_path / "p.png",
        records=records,
        events=[report.TimedEvent(20, "TrainingRun", "m-00002", "RunCreated", "", "Normal")],
        runs=[],
        phases=report.phase_stats(records),
        jumps=[(60, 600)],
    )
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_the_view_on_a_terminal_and_in_a_log() -> None:
    plain = io.StringIO()
    view = LiveView(plain, tty=False, plain_interval=60)
    view.heading("1. Go")
    view.status(["a", "b"], key="k1")
    view.status(["a", "b"], key="k1")  # unchanged: not repeated
    view.status(["a", "c"], key="k2")
    view.event("[+1 min]", "something happened", warning=True)
    out = plain.getvalue()
    assert "\x1b[" not in out
    assert out.count("  | a | b") == 1 and "  | a | c" in out
    terminal = io.StringIO()
    view = LiveView(terminal, tty=True)
    view.status(["one", "two"], key="x")
    view.event("[+1 min]", "news")
    text = terminal.getvalue()
    assert "\x1b[2F\x1b[J" in text  # the status block is redrawn in place
    assert text.index("news") > text.index("two")


def test_the_demo_never_deletes_a_directory_it_did_not_make(tmp_path: Path) -> None:
    from perennial.local.demo.scenario import Demo, DemoSettings

    mine = tmp_path / "important"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    result = Demo(DemoSettings.quick(mine), io.StringIO()).run_story()
    assert not result.passed
    assert result.failure is not None and "was not made by the demo" in result.failure
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    assert (mine / "thesis.tex").read_text() == "years of work"
