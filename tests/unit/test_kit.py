"""controllers.kit: when a handler has given up, and the status it leaves behind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from perennial.controllers.kit import is_last_attempt
from perennial.controllers.settings import HandlerLimits
from perennial.core.conditions import stalled_status

LIMITS: HandlerLimits = {"retries": 3, "timeout": 100.0, "backoff": 15.0}


def test_last_attempt_by_retries_like_kopf() -> None:
    # kopf calls the handler with retry=0, 1, 2 for retries=3; after retry 2 it gives up.
    assert [is_last_attempt(r, timedelta(0), LIMITS) for r in range(3)] == [False, False, True]


def test_last_attempt_by_timeout_like_kopf() -> None:
    assert not is_last_attempt(0, timedelta(seconds=84), LIMITS)
    assert is_last_attempt(0, timedelta(seconds=85), LIMITS)  # 85 + 15 s backoff >= 100


def test_event_handlers_are_never_on_their_last_attempt() -> None:
    assert not is_last_attempt(None, None, LIMITS)


def test_stalled_status_keeps_other_conditions_and_stamps_the_generation() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    body = {
        "metadata": {"generation": 4},
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Ready",
                    "message": "",
                    "lastTransitionTime": "2025-01-01T00:00:00Z",
                }
            ]
        },
    }
    changes = stalled_status(body, "RequestRefused", "refused", now=now)
    assert changes["observedGeneration"] == 4
    assert changes["message"] == "refused"
    by_type = {c["type"]: c for c in changes["conditions"]}
    assert by_type["Stalled"]["status"] == "True"
    assert by_type["Stalled"]["reason"] == "RequestRefused"
    assert by_type["Ready"]["status"] == "False"
    assert by_type["Ready"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert by_type["Reconciling"]["status"] == "False"
    assert all(c["observedGeneration"] == 4 for c in changes["conditions"])
