"""bench/ct's pure parts: the seeded streams and the figures computed from a run."""

from __future__ import annotations

import numpy as np
import pytest
from bench.ct.configs import CONFIGS, by_name
from bench.ct.driver import RunRecord, Settings, StreamResult, WindowRecord
from bench.ct.metrics import summarise
from bench.ct.report import overall, pareto
from bench.ct.streams import STREAMS, DriftingStream


def test_streams_are_reproducible_from_the_seed() -> None:
    a = DriftingStream(STREAMS["recurring"], 8, 200, seed=3).window(5)
    b = DriftingStream(STREAMS["recurring"], 8, 200, seed=3).window(5)
    c = DriftingStream(STREAMS["recurring"], 8, 200, seed=4).window(5)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_declared_changes_are_where_the_world_jumps(name: str) -> None:
    stream = DriftingStream(STREAMS[name], 12, 100, seed=1)
    jumps = {
        t
        for t in range(2, 12)
        if abs(stream.world(t).angle - stream.world(t - 1).angle) > 30
        or abs(stream.world(t).shift - stream.world(t - 1).shift) > 1
    }
    assert set(stream.changes) == jumps


def test_a_change_makes_the_old_rule_wrong() -> None:
    stream = DriftingStream(STREAMS["sudden"], 12, 4000, seed=2)
    before, after = stream.window(0), stream.window(stream.changes[0])
    w = np.linalg.lstsq(before.x, before.y - 0.5, rcond=None)[0]
    accuracy = lambda win: float((((win.x @ w) > 0).astype(int) == win.y).mean())  # noqa: E731
    assert accuracy(before) > 0.85
    assert accuracy(after) < 0.6


def _result() -> StreamResult:
    result = StreamResult(
        stream="s",
        description="",
        windows=6,
        rows=10,
        label_delay=0,
        changes=(2, 4),
        settings=Settings(speed=100.0),
        configs=["a"],
    )
    served = {1: ("a-1", 9), 2: ("a-1", 2), 3: ("a-2", 8), 4: ("a-2", 5), 5: ("a-2", 4)}
    for window, (run, correct) in served.items():
        result.records.append(WindowRecord("a", window, 10, correct, {run: 10}))
    result.runs = [
        RunRecord("a", "a-1", "Initial", "Succeeded", 0, 0),
        RunRecord("a", "a-2", "DataChange", "Succeeded", 2, 2),
        RunRecord("a", "a-3", "PerformanceDecay", "Rejected", 4, 4),
    ]
    result.step_started = {w: 10.0 * w for w in range(1, 6)}
    result.serving_since = {("a", "a-1"): 1.0, ("a", "a-2"): 27.0}
    return result


def test_summary_of_a_run() -> None:
    (s,) = summarise(_result())
    assert s.accuracy == pytest.approx((0.9 + 0.2 + 0.8 + 0.5 + 0.4) / 5)
    assert (s.retrains, s.rejected, s.failed) == (2, 1, 0)
    # change at 2: a-2 (trained on window 2) served window 3, 7 real s after window 2
    # started (x speed 100); change at 4: the only later run was rejected.
    assert s.lag_windows == 1.0
    assert s.lag_seconds == pytest.approx(700.0)
    assert s.missed == 1
    assert s.staleness == pytest.approx((1 + 2 + 1 + 2 + 3) / 5)


def test_pareto_front() -> None:
    points = [("floor", 0.4, 0, 0, 0.0), ("cheap", 0.7, 2, 0, 0.0), ("costly", 0.72, 7, 0, 0.0)]
    points.append(("worse", 0.6, 3, 0, 0.0))
    assert pareto(points) == {"floor", "cheap", "costly"}
    assert [p[0] for p in overall([], ["x"])] == []


def test_configurations_are_named_uniquely() -> None:
    names = [c.name for c in CONFIGS]
    assert len(set(names)) == len(names)
    with pytest.raises(ValueError, match="unknown configuration"):
        by_name(["nope"])
