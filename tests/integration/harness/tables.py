"""Server-side tables for custom resources: what ``kubectl get`` prints (pure).

``kubectl get`` asks for ``as=Table``; a real API server renders a CRD's
``additionalPrinterColumns`` (Name first; Name and Age when none are declared). The emulator
does the same for custom resources, so a test can check the columns users see. Built-in
kinds are answered with plain lists (kubectl then prints NAME and AGE only).

Supported column paths: ``.a.b``, ``.a[0].b`` and ``.a[?(@.type=="Ready")].status``; a
cell with any other expression reads ``<unsupported jsonPath>``.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

__all__ = ["UNSUPPORTED", "human_duration", "printer_columns", "render_table", "wants_table"]

UNSUPPORTED: Final = "<unsupported jsonPath>"
_STEP: Final = re.compile(
    r"""\.(?P<key>[A-Za-z0-9_-]+)
      | \[(?P<index>\d+)\]
      | \[\?\(@\.(?P<field>[A-Za-z0-9_-]+)\s*==\s*["'](?P<value>[^"']*)["']\)\]""",
    re.VERBOSE,
)
_AGE: Final = {
    "name": "Age",
    "type": "date",
    "jsonPath": ".metadata.creationTimestamp",
    "description": "CreationTimestamp is a timestamp representing the server time when this "
    "object was created.",
}


def wants_table(headers: Mapping[str, str]) -> bool:
    """Whether the request's Accept header asks for a ``meta.k8s.io`` Table."""
    accept = next((value for key, value in headers.items() if key.lower() == "accept"), "")
    return "as=Table" in accept


def printer_columns(version: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The columns a CRD version declares, or the default Age column."""
    return [dict(column) for column in version.get("additionalPrinterColumns") or [_AGE]]


def _lookup(obj: Any, path: str) -> tuple[bool, Any]:
    position, value = 0, obj
    while position < len(path):
        step = _STEP.match(path, position)
        if step is None:
            return False, UNSUPPORTED
        position = step.end()
        if step["key"] is not None:
            value = value.get(step["key"]) if isinstance(value, Mapping) else None
        elif step["index"] is not None:
            index = int(step["index"])
            value = value[index] if isinstance(value, list) and index < len(value) else None
        else:
            matches = [
                item
                for item in (value if isinstance(value, list) else [])
                if isinstance(item, Mapping) and str(item.get(step["field"])) == step["value"]
            ]
            value = matches[0] if matches else None
        if value is None:
            return True, None
    return True, value


def human_duration(seconds: float) -> str:
    """Kubernetes' short human durations (``5s``, ``3m2s``, ``4h``, ``2d3h``, ``400d``)."""
    if seconds < -1:
        return "<invalid>"
    total = max(int(seconds), 0)
    minutes, hours, days = total // 60, total // 3600, total // 86400
    if total < 120:
        return f"{total}s"
    if minutes < 10:
        return f"{minutes}m{total % 60}s" if total % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y{days % 365}d" if days < 365 * 8 else f"{days // 365}y"


def _cell(column: Mapping[str, Any], obj: Mapping[str, Any], now: datetime.datetime) -> Any:
    supported, value = _lookup(obj, str(column.get("jsonPath", "")))
    if not supported or value is None:
        return value
    kind = column.get("type")
    if kind == "date":
        try:
            when = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
        return human_duration((now - when).total_seconds())
    if kind == "integer" and isinstance(value, int | float):
        return int(value)
    if kind == "number" and isinstance(value, int | float):
        return value
    if kind == "boolean" and isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def render_table(
    objects: Sequence[Mapping[str, Any]],
    columns: Sequence[Mapping[str, Any]],
    *,
    resource_version: str,
    include_object: str = "Metadata",
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table of ``objects`` (Name, then the printer columns)."""
    now = now or datetime.datetime.now(datetime.UTC)
    definitions = [
        {
            "name": "Name",
            "type": "string",
            "format": "name",
            "description": "Name must be unique within a namespace.",
            "priority": 0,
        }
    ] + [
        {
            "name": column["name"],
            "type": column.get("type", "string"),
            "format": column.get("format", ""),
            "description": column.get("description", ""),
            "priority": column.get("priority", 0),
        }
        for column in columns
    ]
    rows = []
    for obj in objects:
        row: dict[str, Any] = {
            "cells": [obj["metadata"]["name"]] + [_cell(c, obj, now) for c in columns]
        }
        if include_object == "Object":
            row["object"] = dict(obj)
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": dict(obj["metadata"]),
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }
