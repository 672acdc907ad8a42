"""Base classes of the API models and the CEL rules attached to them.

Every model is camelCase on the wire and snake_case in Python. Specs reject unknown
fields (a typo is an error, not a silently ignored setting). Status models ignore unknown
fields, so an object written by another version of the operator (or carrying a
``status.kopf`` block) still parses.

Cross-field rules are written once as :class:`CelRule` (rule + message). The CRD carries
the rule as ``x-kubernetes-validations``; the model's Python validator raises the same
message, so an object rejected by the API server is rejected the same way by the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

CEL_KEY = "x-kubernetes-validations"


@dataclass(frozen=True)
class CelRule:
    """One ``x-kubernetes-validations`` entry.

    ``rule`` is evaluated by the API server with ``self`` bound to the object the rule is
    attached to; ``message`` is shown when it is false; ``field_path`` (relative, e.g.
    ``.estimator``) makes the API server report the error on that field.
    """

    rule: str
    message: str
    field_path: str | None = None

    def to_schema(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out

    def error(self) -> ValueError:
        """The Python mirror's error: the same message the API server would give."""
        return ValueError(self.message)


def cel_list(values: Sequence[str]) -> str:
    """A CEL list literal of strings: ``['a', 'b']``."""
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def cel_field(*rules: CelRule) -> dict[str, Any]:
    """``json_schema_extra`` for a field that carries its own CEL rules."""
    return {CEL_KEY: [r.to_schema() for r in rules]}


def cel_rules_of(model: type[BaseModel]) -> tuple[CelRule, ...]:
    """The rules of a model class, inherited ones first."""
    rules: list[CelRule] = []
    for klass in reversed(model.__mro__):
        own = klass.__dict__.get("cel_rules", ())
        rules.extend(r for r in own if r not in rules)
    return tuple(rules)


def _attach_cel_rules(schema: dict[str, Any], model: type[Any]) -> None:
    if isinstance(model, type) and issubclass(model, BaseModel):
        rules = cel_rules_of(model)
        if rules:
            schema[CEL_KEY] = [r.to_schema() for r in rules]


def one_of(choices: Sequence[str], what: str) -> AfterValidator:
    """A validator accepting only ``choices``; the error lists them."""
    allowed = tuple(choices)

    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"unknown {what} {value!r}; choose one of: {', '.join(allowed)}")
        return value

    return AfterValidator(check)


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, CEL rules in the schema."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        json_schema_extra=_attach_cel_rules,
    )

    # Cross-field rules of this class (see CelRule); subclasses inherit them.
    cel_rules: ClassVar[tuple[CelRule, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        """The wire form: camelCase keys, JSON types, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class SpecModel(ApiModel):
    """A part of a ``spec``: unknown fields are an error."""


class StatusModel(ApiModel):
    """A part of a ``status``: unknown fields are ignored (written by other versions)."""

    model_config = ConfigDict(extra="ignore")
