"""Turn a pydantic model's JSON schema into a Kubernetes *structural* schema.

Kubernetes accepts a subset of OpenAPI v3 in a CRD: no ``$ref``, every node typed, no
``anyOf``/``oneOf`` except ``[integer, string]`` under ``x-kubernetes-int-or-string``,
``properties`` and ``additionalProperties`` never together, OpenAPI 3.0 booleans for
``exclusiveMinimum``/``exclusiveMaximum``. This module does that translation:

- ``$ref`` targets are inlined; a field's own description and default win over the
  referenced model's.
- ``Optional[X]`` becomes plain ``X`` (``nullable: true`` only where the field asks for it
  with ``json_schema_extra={"nullable": True}``).
- ``dict[str, Any]`` becomes ``x-kubernetes-preserve-unknown-fields: true``.
- A ``default_factory`` becomes a ``default``, spelled out in full: the API server checks
  a default against the CEL rules as written, without nested defaulting.
- Anything Kubernetes would reject raises :class:`SchemaError` at generation time.
"""

from __future__ import annotations

import copy
from typing import Any

import pydantic_core
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

INT_OR_STRING = "x-kubernetes-int-or-string"
PRESERVE_UNKNOWN = "x-kubernetes-preserve-unknown-fields"

_KEPT_KEYS = frozenset(
    {
        "type",
        "description",
        "properties",
        "required",
        "items",
        "additionalProperties",
        "enum",
        "default",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "format",
        "nullable",
        "anyOf",
    }
)
_DROPPED_KEYS = frozenset({"title", "examples", "$defs"})
_TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean"})
_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}
_INT_OR_STRING_BRANCHES = [{"type": "integer"}, {"type": "string"}]


class SchemaError(ValueError):
    """The model cannot be expressed as a Kubernetes structural schema."""


class CrdJsonSchema(GenerateJsonSchema):
    """pydantic's generator, but a ``default_factory`` is rendered as a ``default``."""

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        factory = schema.get("default_factory")
        if factory is None or schema.get("default_factory_takes_data"):
            return super().default_schema(schema)
        json_schema = self.generate_inner(schema["schema"])
        value = factory()  # type: ignore[call-arg]
        return {**json_schema, "default": encode_default(value)}


def encode_default(value: Any) -> Any:
    """A default as JSON, spelled out in full (unset optional fields left out).

    kube-apiserver checks a default against its node's schema and CEL rules as written,
    without applying the nested defaults first: ``{}`` under a rule such as
    ``self.type != 'Canary' || has(self.canary)`` is refused ("no such key: type").
    """
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    return pydantic_core.to_jsonable_python(value, by_alias=True)


def model_schema(model: type[BaseModel], *, keep_defaults: bool = True) -> dict[str, Any]:
    """The structural schema of ``model`` (validation mode, camelCase names)."""
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=CrdJsonSchema)
    defs = raw.get("$defs", {})
    return _convert(raw, defs, path=model.__name__, keep_defaults=keep_defaults)


def _resolve(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    """Inline ``$ref`` (or a single-entry ``allOf``); the node's own keys win."""
    node = dict(node)
    if "allOf" in node:
        parts = node.pop("allOf")
        if len(parts) != 1:
            raise SchemaError(f"{path}: allOf with {len(parts)} entries is not supported")
        node = {**parts[0], **node}
    ref = node.pop("$ref", None)
    if ref is None:
        return node
    name = ref.rsplit("/", 1)[-1]
    if name not in defs:
        raise SchemaError(f"{path}: unresolved reference {ref}")
    target = _resolve(defs[name], defs, path)
    merged = {**target, **node}
    rules = target.get("x-kubernetes-validations", []) + node.get("x-kubernetes-validations", [])
    if rules:
        merged["x-kubernetes-validations"] = rules
    return merged


def _collapse_union(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    branches = node.pop("anyOf")
    has_null = any(b.get("type") == "null" for b in branches)
    rest = [b for b in branches if b.get("type") != "null"]
    wants_null = bool(node.pop("nullable", False))
    if node.get(INT_OR_STRING):
        node["anyOf"] = rest
        return node
    if sorted(rest, key=lambda b: str(b.get("type"))) == _INT_OR_STRING_BRANCHES:
        raise SchemaError(f"{path}: int-or-string needs x-kubernetes-int-or-string")
    if len(rest) != 1:
        raise SchemaError(
            f"{path}: a union of {len(rest)} types is not a structural schema; "
            "use one type (Optional is fine)"
        )
    merged = {**_resolve(rest[0], defs, path), **node}
    if has_null and wants_null:
        merged["nullable"] = True
    return merged


def _convert(
    node: dict[str, Any], defs: dict[str, Any], *, path: str, keep_defaults: bool
) -> dict[str, Any]:
    node = _resolve(node, defs, path)
    if "anyOf" in node:
        node = _collapse_union(node, defs, path)
    else:
        node.pop("nullable", None)  # only an Optional field can be null

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "const":
            out["enum"] = [value]
        elif key.startswith("x-kubernetes-"):
            out[key] = copy.deepcopy(value)
        elif key not in _KEPT_KEYS:
            raise SchemaError(f"{path}: {key!r} is not supported in a CRD schema")
        else:
            out[key] = copy.deepcopy(value)

    if "description" in out:
        out["description"] = " ".join(str(out["description"]).split())
    if "default" in out and (out["default"] is None or not keep_defaults):
        del out["default"]
    for bound in ("Minimum", "Maximum"):
        exclusive = out.get(f"exclusive{bound}")
        if exclusive is not None and not isinstance(exclusive, bool):
            out[bound.lower()] = exclusive
            out[f"exclusive{bound}"] = True

    kind = out.get("type")
    if kind == "object":
        _convert_object(out, defs, path=path, keep_defaults=keep_defaults)
    elif kind == "array":
        items = out.get("items")
        if not isinstance(items, dict):
            raise SchemaError(f"{path}: an array needs an items schema")
        out["items"] = _convert(items, defs, path=f"{path}[]", keep_defaults=keep_defaults)
    elif kind is None and not (out.get(INT_OR_STRING) or out.get(PRESERVE_UNKNOWN)):
        raise SchemaError(f"{path}: every schema node needs a type")
    return out


def _convert_object(
    out: dict[str, Any], defs: dict[str, Any], *, path: str, keep_defaults: bool
) -> None:
    extra = out.pop("additionalProperties", None)
    properties = out.get("properties")
    if properties:
        if isinstance(extra, dict) and extra:
            raise SchemaError(f"{path}: properties and additionalProperties together")
        out["properties"] = {
            name: _convert(prop, defs, path=f"{path}.{name}", keep_defaults=keep_defaults)
            for name, prop in properties.items()
        }
        if "required" in out:
            out["required"] = sorted(out["required"])
        return
    out.pop("properties", None)
    if extra is True or extra == {} or extra is None:
        # a free-form map (dict[str, Any]): keep whatever the user wrote
        out[PRESERVE_UNKNOWN] = True
    elif isinstance(extra, dict):
        out["additionalProperties"] = _convert(
            extra, defs, path=f"{path}{{}}", keep_defaults=keep_defaults
        )


def structural_problems(schema: dict[str, Any], path: str = "") -> list[str]:
    """What a real API server would reject as non-structural (empty: fine)."""
    problems: list[str] = []
    here = path or "<root>"
    if not path and schema.get("type") != "object":
        problems.append("<root>: the root schema must be of type object")
    kind = schema.get("type")
    if kind is not None and kind not in _TYPES:
        problems.append(f"{here}: unknown type {kind!r}")
    if schema.get("additionalProperties") is False:
        problems.append(f"{here}: additionalProperties: false is forbidden (fields are pruned)")
    python_types = _PYTHON_TYPES.get(str(kind))
    if python_types and "enum" in schema:
        wrong = [
            v
            for v in schema["enum"]
            if not isinstance(v, python_types) or (kind != "boolean" and isinstance(v, bool))
        ]
        if wrong:
            problems.append(f"{here}: enum values {wrong!r} are not of type {kind}")
    for key in ("$ref", "allOf", "oneOf", "not", "uniqueItems", "title", "const"):
        if key in schema:
            problems.append(f"{here}: {key} is not allowed")
    int_or_string = schema.get(INT_OR_STRING) is True
    if "anyOf" in schema and not (int_or_string and schema["anyOf"] == _INT_OR_STRING_BRANCHES):
        problems.append(f"{here}: anyOf is only allowed for int-or-string")
    if "type" not in schema and not int_or_string and not schema.get(PRESERVE_UNKNOWN):
        problems.append(f"{here}: no type")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{here}: properties and additionalProperties together")
    for bound in ("exclusiveMinimum", "exclusiveMaximum"):
        if bound in schema and not isinstance(schema[bound], bool):
            problems.append(f"{here}: {bound} must be a boolean in OpenAPI v3.0")
    list_type = schema.get("x-kubernetes-list-type")
    if list_type is not None and schema.get("type") != "array":
        problems.append(f"{here}: x-kubernetes-list-type on a non-array")
    if list_type == "map":
        items = schema.get("items", {})
        keys = schema.get("x-kubernetes-list-map-keys") or []
        if items.get("type") != "object" or not keys:
            problems.append(f"{here}: list-type map needs object items and map keys")
        for key in keys:
            prop = items.get("properties", {}).get(key)
            if prop is not None and prop.get("type") not in (
                "string",
                "integer",
                "number",
                "boolean",
            ):
                problems.append(f"{here}: map key {key!r} must be a scalar")
            if prop is None or (key not in items.get("required", []) and "default" not in prop):
                problems.append(f"{here}: map key {key!r} must be required or defaulted")
    if list_type == "set" and schema.get("items", {}).get("type") in ("object", "array"):
        problems.append(f"{here}: list-type set needs scalar items")
    for name, prop in schema.get("properties", {}).items():
        problems.extend(structural_problems(prop, f"{path}.{name}"))
    if isinstance(schema.get("items"), dict):
        problems.extend(structural_problems(schema["items"], f"{path}[]"))
    if isinstance(schema.get("additionalProperties"), dict):
        problems.extend(structural_problems(schema["additionalProperties"], f"{path}{{}}"))
    return problems
