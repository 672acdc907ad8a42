"""Every ``default`` in the generated CRDs is one a real API server accepts.

When a CRD is created, kube-apiserver validates each ``default`` against the schema of its
node (types, bounds, enums, unknown fields) and evaluates every ``x-kubernetes-validations``
rule of that node and of the nested nodes the default value reaches, on the default value
exactly as written: nested defaults are NOT applied to it first. A CRD whose default fails
a rule is refused (``default: Invalid value: ... evaluating rule: ...``) and nothing installs.
"""

from __future__ import annotations

from typing import Any

import pytest

from perennial.api.crdgen import KINDS

from .crd_support import cel_errors, openapi, schema_errors, walk

KIND_NAMES = [info.kind for info in KINDS]


def default_problems(schema: dict[str, Any]) -> list[str]:
    """What kube-apiserver would say about the defaults of ``schema`` (empty: none)."""
    problems: list[str] = []
    for path, node in walk(schema):
        if "default" not in node:
            continue
        value = node["default"]
        for where, message in schema_errors(node, value) + cel_errors(node, value):
            problems.append(f"{path}.default{'.' + where if where else ''}: {message}")
    return problems


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_every_default_satisfies_its_schema_and_cel_rules(kind: str) -> None:
    assert default_problems(openapi(kind)) == []


def test_the_check_finds_a_default_that_breaks_a_rule_as_written() -> None:
    """The fault a real API server found: ``default: {}`` under a rule reading a field
    that only nested defaulting would fill in."""
    schema = {
        "type": "object",
        "properties": {
            "strategy": {
                "type": "object",
                "default": {},
                "properties": {
                    "type": {"type": "string", "default": "RollingUpdate"},
                    "canary": {"type": "object"},
                },
                "x-kubernetes-validations": [
                    {"rule": "self.type != 'Canary' || has(self.canary)", "message": "canary"}
                ],
            }
        },
    }
    (problem,) = default_problems(schema)
    assert problem.startswith("strategy.default")
    assert "no such key" in problem or "evaluation error" in problem


def test_the_check_finds_a_default_out_of_bounds_or_of_the_wrong_shape() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "integer", "minimum": 1, "default": 0},
            "b": {
                "type": "object",
                "properties": {"x": {"type": "string"}},
                "default": {"y": "pruned"},
            },
        },
    }
    problems = "\n".join(default_problems(schema))
    assert "a.default" in problems
    assert "b.default" in problems
