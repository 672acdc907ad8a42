"""`make bench-ct --quick`: the continuous-training benchmark's driver end to end.

One sudden stream (the concept turns 220 degrees at window 1), 3 windows of 300 rows,
driven through a real `perennial local` process: the never-retrained model must stay
wrong after the change, the dataChange pipeline must retrain on window 1's labels and
serve window 2 well, and the report must carry both.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from bench.ct.run import main

pytestmark = pytest.mark.slow


def test_quick_bench_drives_the_local_runner(tmp_path: Path) -> None:
    out = tmp_path / "docs" / "ct.md"
    assert main(["--quick", "--workdir", str(tmp_path / "work"), "--out", str(out)]) == 0

    results = json.loads((tmp_path / "work" / "results.json").read_text())
    summaries = {s["config"]: s for s in results["summaries"]}
    assert set(summaries) == {"never retrained", "dataChange"}
    (stream,) = results["streams"]
    assert stream["changes"] == [1]
    windows = {(w["config"], w["window"]): w for w in stream["windows"]}
    assert sorted(windows) == sorted(
        (c, i) for c in ("never retrained", "dataChange") for i in (1, 2)
    )
    for w in windows.values():
        assert w["rows"] == 300
        assert w["feedback_accepted"] == 300, w  # every label reached its prediction
        assert w["feedback_unknown"] == 0

    floor, retrained = summaries["never retrained"], summaries["dataChange"]
    assert floor["retrains"] == 0
    assert floor["missed"] == 1 and floor["lag_windows"] is None
    runs = [r for r in stream["runs"] if r["config"] == "dataChange"]
    assert [r["trigger"] for r in runs] == ["Initial", "DataChange", "DataChange"]
    assert [r["data_window"] for r in runs] == [0, 1, 2]
    assert retrained["retrains"] == 2 and retrained["rejected"] == 0
    # The concept changed at window 1: both served it with the first model (trained on
    # window 0); window 2 is served by the model trained on window 1's labels.
    assert windows[("dataChange", 2)]["runs"] == {runs[1]["name"]: 300}
    assert retrained["lag_windows"] == 1.0
    assert windows[("never retrained", 2)]["accuracy"] < 0.5
    assert windows[("dataChange", 2)]["accuracy"] > 0.75
    assert retrained["accuracy"] > floor["accuracy"] + 0.2

    doc = out.read_text()
    assert "| dataChange" in doc and "| never retrained" in doc
    assert f"{retrained['accuracy']:.3f}" in doc
    svg = ET.parse(out.with_name("ct-pareto.svg")).getroot()
    assert svg.tag.endswith("svg")
