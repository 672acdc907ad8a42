"""What every reconciler repeats: write only what changed, explain an invalid spec."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError


def status_delta(body: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``changes`` that differ from the object's current status."""
    current = body.get("status") or {}
    return {key: value for key, value in changes.items() if current.get(key) != value}


def explain_invalid(exc: ValidationError, fix: str, *, limit: int = 5) -> str:
    """``invalid spec: <field>: <problem>; ... (<fix>)``: every field the user must change."""
    parts = []
    for err in exc.errors()[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{where}: {err['msg']}")
    return "invalid spec: " + "; ".join(parts) + f" ({fix})"
