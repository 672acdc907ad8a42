"""perennial.controllers.run_reconciler.holds: does a run's status already hold a write?

Used after a conflict on a status write that the server may have applied (its answer lost):
only if every change is already there is the write taken as done."""

from __future__ import annotations

from perennial.controllers.run_reconciler import holds

STATUS = {
    "phase": "Succeeded",
    "reason": "ModelBlessed",
    "artifact": {"uri": "s3://m/r", "sha256": "ab", "onnxSha256": "cd"},
    "conditions": [{"type": "Ready", "status": "True"}],
}


def test_every_change_present_holds() -> None:
    assert holds(STATUS, {"phase": "Succeeded", "reason": "ModelBlessed"})
    assert holds(STATUS, {"artifact": {"sha256": "ab"}})  # merged into the mapping there
    assert holds(STATUS, {"conditions": [{"type": "Ready", "status": "True"}]})
    assert holds(STATUS, {"message": None})  # a removal of a key that is absent


def test_any_difference_does_not_hold() -> None:
    assert not holds(STATUS, {"phase": "Failed"})
    assert not holds(STATUS, {"reason": "PodPending"})
    assert not holds(STATUS, {"artifact": {"sha256": "ff"}})
    assert not holds(STATUS, {"conditions": [{"type": "Ready", "status": "False"}]})
    assert not holds(STATUS, {"phase": None})  # a removal of a key still there
    assert not holds({}, {"artifact": {"sha256": "ab"}})
