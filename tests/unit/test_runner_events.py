"""The event helper: message cap, object addressing, refusal of bad reasons and types."""

from __future__ import annotations

import pytest

from perennial.k8s.events import (
    MAX_MESSAGE_LENGTH,
    TRUNCATION_MARKER,
    event_target,
    post_event,
    truncate_message,
)


def test_short_messages_are_untouched() -> None:
    assert truncate_message("Gate accuracy passed") == "Gate accuracy passed"
    exact = "x" * MAX_MESSAGE_LENGTH
    assert truncate_message(exact) == exact


def test_long_messages_are_capped_at_1024_characters_and_marked() -> None:
    message = "Traceback: " + "y" * 5000
    cut = truncate_message(message)
    assert len(cut) == MAX_MESSAGE_LENGTH == 1024
    assert cut.startswith("Traceback: yyy")
    assert cut.endswith(TRUNCATION_MARKER)


def test_custom_limit_and_nonsense_limit() -> None:
    assert truncate_message("abcdefghijkl", limit=10) == "abcd [...]"
    with pytest.raises(ValueError, match="limit"):
        truncate_message("abc", limit=3)


def test_target_from_an_object_body() -> None:
    body = {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "iris-00001", "namespace": "ml", "uid": "u-1", "labels": {"a": "b"}},
        "spec": {"x": 1},
    }
    assert event_target(body) == {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "iris-00001", "namespace": "ml", "uid": "u-1"},
    }


def test_target_from_an_object_reference() -> None:
    ref = {"apiVersion": "batch/v1", "kind": "Job", "name": "iris-00001", "namespace": "ml"}
    assert event_target(ref) == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "iris-00001", "namespace": "ml"},
    }


def test_target_needs_kind_and_name() -> None:
    with pytest.raises(ValueError, match="kind"):
        event_target({"metadata": {"name": "x"}})


@pytest.mark.parametrize("reason", ["", "trainingStarted", "Training Started", "A" * 129])
def test_reasons_must_be_camel_case(reason: str) -> None:
    with pytest.raises(ValueError, match="event reason"):
        post_event({"kind": "TrainingRun", "name": "r"}, reason, "message")


def test_type_must_be_normal_or_warning() -> None:
    with pytest.raises(ValueError, match="event type"):
        post_event({"kind": "TrainingRun", "name": "r"}, "GateFailed", "m", type="Error")  # type: ignore[arg-type]
