"""`make rollouts`, small: its driver end to end through a real `perennial local`.

20 requests/s through the stable endpoint while a retrain is rolled out (RollingUpdate),
then a few seconds of soak with feedback: no request may fail, the new model must answer
after the switch, the soak must sample the server's RSS, and the report must render both
sections into the docs file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.rollouts.run import main

pytestmark = pytest.mark.slow


def test_a_rolling_update_under_load_fails_no_request(tmp_path: Path) -> None:
    docs = tmp_path / "reliability.md"
    argv = ["--rate", "20", "--stages", "1", "--settle", "2", "--soak-minutes", "0.15"]
    argv += ["--soak-rate", "20", "--work", str(tmp_path / "work"), "--output", str(docs)]
    assert main(argv) == 0

    result = json.loads((tmp_path / "work" / "result.json").read_text())
    (stage,) = result["stages"]
    assert (stage["before"], stage["after"], stage["error"]) == ("load-00001", "load-00002", None)
    assert [e[1] for e in stage["events"]][-1] == "RolloutSucceeded"
    requests = result["requests"]
    assert len(requests) > 100
    assert all(r[2] == 200 for r in requests)
    served = [r[4] for r in requests]
    assert served[0] == "load-00001" and served[-1] == "load-00002"
    # After the rollout ended, only the new model answers (the old server was drained).
    ended = stage["window"][1]
    assert {r[4] for r in requests if r[0] > ended + 1.0} == {"load-00002"}
    assert any(r[3] == "batch" for r in requests) and any(r[3] == "single" for r in requests)
    assert {r[3] for r in result["soak_requests"]} == {"single", "batch", "feedback"}
    assert all(r[2] == 200 for r in result["soak_requests"])
    assert len(result["soak_rss"]) >= 2

    text = docs.read_text()
    assert "## Rollouts under load" in text and "## Server soak" in text
    assert "| rolling update | load-00001 -> load-00002 |" in text
