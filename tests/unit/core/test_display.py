"""Metric values in printer columns read rounded (kubectl get tp / tr)."""

from __future__ import annotations

from perennial.core.display import display_value
from perennial.core.pipeline_plan import ChampionRecord


def test_four_decimals() -> None:
    assert display_value(0.958041958041958) == "0.9580"
    assert display_value(1) == "1.0000"
    assert display_value(52.123456) == "52.1235"


def test_champion_status_carries_the_rounded_value() -> None:
    status = ChampionRecord(run="iris-00001", metric="accuracy", value=0.958041958041958)
    assert status.to_status()["value"] == 0.958041958041958
    assert status.to_status()["valueDisplay"] == "0.9580"
    assert "valueDisplay" not in ChampionRecord(run="iris-00001").to_status()


def test_run_status_carries_rounded_candidate_and_champion() -> None:
    from perennial.core.run_verdict import verdict_from_result

    from .test_run_verdict import CONFIG, result

    verdict = verdict_from_result(
        result(0.958041958041958, 0.9440559440559441), CONFIG, had_champion=True
    )
    primary = verdict.status["primaryMetric"]
    assert primary["candidateDisplay"] == "0.9580"
    assert primary["championDisplay"] == "0.9441"
