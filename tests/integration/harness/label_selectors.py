"""Label selectors, applied as a real API server applies them.

The grammar of ``labelSelector`` (k8s.io/apimachinery/pkg/labels): requirements joined by
commas, each one of ``key``, ``!key``, ``key=value``, ``key==value``, ``key!=value``,
``key in (v1,v2)``, ``key notin (v1,v2)``. ``!=`` and ``notin`` also match objects without
the key. A selector the server would refuse gets HTTP 400 naming the requirement.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = ["LabelSelectorError", "label_filter"]

Labels = Mapping[str, str]
_NAME: Final = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_KEY: Final = rf"(?:[A-Za-z0-9][-A-Za-z0-9_.]{{0,252}}/)?{_NAME}"
_VALUE: Final = rf"(?:{_NAME})?"
_EXISTS: Final = re.compile(rf"^(!?)\s*({_KEY})$")
_EQUALITY: Final = re.compile(rf"^({_KEY})\s*(==|=|!=)\s*({_VALUE})$")
_SET: Final = re.compile(rf"^({_KEY})\s+(in|notin)\s*\(([^()]*)\)$")


class LabelSelectorError(ValueError):
    """The selector is not valid; the message names the requirement."""


def _split(selector: str) -> list[str]:
    """The requirements: commas separate them, except inside ``( )``."""
    parts, depth, current = [], 0, []
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return parts


def _requirement(text: str) -> Callable[[Labels], bool]:
    if found := _EXISTS.match(text):
        negated, key = found.group(1) == "!", found.group(2)
        return lambda labels: (key in labels) != negated
    if found := _EQUALITY.match(text):
        key, op, value = found.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if found := _SET.match(text):
        key, op, raw = found.groups()
        values = {v.strip() for v in raw.split(",")}
        if not all(re.fullmatch(_VALUE, v) for v in values):
            raise LabelSelectorError(f"invalid label value in {text!r}")
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    raise LabelSelectorError(f"unable to parse requirement: {text!r}")


def label_filter(selector: str) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate on objects: their ``metadata.labels`` satisfy every requirement."""
    requirements = [_requirement(part) for part in _split(selector) if part]

    def wanted(obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(requirement(labels) for requirement in requirements)

    return wanted
