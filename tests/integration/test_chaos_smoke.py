"""``make chaos`` in small (bench/chaos): the operator, in its own process, killed with
SIGKILL a few times while the scenario plays, then API faults (500, 429, 409, slow
answers, dropped and expired watches); the suite's invariants hold and every round ends in
the undisturbed round's state. Keeps the suite from rotting; the figures come
from ``make chaos`` (100 kills)."""

from __future__ import annotations

from pathlib import Path

from bench.chaos.run import chaos

from testsupport.deadlines import deadline


async def test_kills_leave_no_duplicate_and_the_same_final_state(tmp_path: Path) -> None:
    result = await chaos(
        seed=3,
        kills=3,
        max_rounds=4,
        stage_timeout=deadline(),
        results=tmp_path,
        spread_over=1,
        fault_rounds=1,
        fault_rate=0.1,
    )
    assert sum(result.kills.values()) == 3
    assert result.unexpected_exits == []
    for played in result.rounds + result.fault_rounds:
        assert played.violations == [], (played.kill_points, played.early_retries)
        assert played.converged, played.difference
    assert sum(sum(r.faults.values()) for r in result.fault_rounds) > 0
