"""Validate objects against the generated CRDs the way an API server would, offline.

- Structural defaulting (``default`` values are filled in before validation).
- OpenAPI v3.0 schema validation with ``jsonschema``, after translating the Kubernetes
  dialect: ``nullable``, boolean ``exclusiveMinimum``/``exclusiveMaximum``, and unknown
  fields rejected (what ``kubectl apply``'s strict field validation does).
- ``x-kubernetes-list-type: map`` keys must be unique.
- ``x-kubernetes-validations`` CEL rules, evaluated with cel-python (celpy), with
  ``oldSelf`` for transition rules when an old object is given.

Errors are ``(path, message)`` pairs with Kubernetes-style paths (``spec.model.estimator``,
``spec.strategy.canary.steps[1].weight``).
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

ROOT = Path(__file__).resolve().parents[3]
CRD_DIR = ROOT / "crds"
SAMPLES_DIR = ROOT / "manifests" / "samples"

Error = tuple[str, str]


@functools.cache
def load_crd(kind: str) -> dict[str, Any]:
    for path in sorted(CRD_DIR.glob("*.perennial.dev.yaml")):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            return dict(crd)
    raise KeyError(f"no CRD for kind {kind} in {CRD_DIR}")


def openapi(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = load_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every schema node with its path (``[]`` for list items, ``{}`` for map values)."""
    out = [(path, schema)]
    for name, prop in schema.get("properties", {}).items():
        out.extend(walk(prop, f"{path}.{name}" if path else name))
    if isinstance(schema.get("items"), dict):
        out.extend(walk(schema["items"], f"{path}[]"))
    if isinstance(schema.get("additionalProperties"), dict):
        out.extend(walk(schema["additionalProperties"], f"{path}{{}}"))
    return out


# --- defaulting ------------------------------------------------------------------------


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """A copy of ``value`` with the schema's defaults filled in (recursively)."""
    value = copy.deepcopy(value)
    _default_in_place(schema, value)
    return value


def _default_in_place(schema: dict[str, Any], value: Any) -> None:
    if isinstance(value, dict):
        for name, prop in schema.get("properties", {}).items():
            if name not in value and "default" in prop:
                value[name] = copy.deepcopy(prop["default"])
            if name in value:
                _default_in_place(prop, value[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for item in value.values():
                _default_in_place(extra, item)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _default_in_place(schema["items"], item)


# --- OpenAPI v3.0 (Kubernetes dialect) -> JSON Schema 2020-12 ---------------------------


def to_jsonschema(schema: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "default", "description"):
            continue
        if key == "properties":
            out[key] = {name: to_jsonschema(prop) for name, prop in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = to_jsonschema(value)
        elif key == "anyOf":
            out[key] = [to_jsonschema(v) for v in value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            continue
        else:
            out[key] = value
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if schema.get(bound) is True:
            out[bound] = out.pop(plain)
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
        and "additionalProperties" not in schema
    ):
        out["additionalProperties"] = False
    return out


def _format_path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def schema_errors(schema: dict[str, Any], obj: Any) -> list[Error]:
    translated = to_jsonschema(schema)
    metadata = translated.get("properties", {}).get("metadata")
    if isinstance(metadata, dict):
        # ObjectMeta is validated by the API server itself, never pruned: the root schema
        # only restricts name and generateName.
        metadata.pop("additionalProperties", None)
    validator = jsonschema.Draft202012Validator(translated)
    errors = [(_format_path(e.absolute_path), e.message) for e in validator.iter_errors(obj)]
    return sorted(errors) + _map_key_errors(schema, obj, "")


def _map_key_errors(schema: dict[str, Any], value: Any, path: str) -> list[Error]:
    errors: list[Error] = []
    if isinstance(value, dict):
        for name, prop in schema.get("properties", {}).items():
            if name in value:
                errors += _map_key_errors(prop, value[name], f"{path}.{name}" if path else name)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        keys = schema.get("x-kubernetes-list-map-keys")
        if schema.get("x-kubernetes-list-type") == "map" and keys:
            seen: set[tuple[Any, ...]] = set()
            for index, item in enumerate(value):
                key = tuple(item.get(k) for k in keys) if isinstance(item, dict) else (item,)
                if key in seen:
                    errors.append((f"{path}[{index}]", f"Duplicate value: map key {key}"))
                seen.add(key)
        for index, item in enumerate(value):
            errors += _map_key_errors(schema["items"], item, f"{path}[{index}]")
    return errors


# --- CEL -------------------------------------------------------------------------------

_ENV = celpy.Environment()


@functools.cache
def compile_rule(rule: str) -> Any:
    return _ENV.program(_ENV.compile(rule))


def to_cel(schema: dict[str, Any], value: Any) -> Any:
    """A JSON value as CEL sees it, typed by the schema (number -> double, ...)."""
    kind = schema.get("type")
    if value is None:
        return None
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return json_to_cel(value)
    if kind == "object" and isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return celtypes.MapType(
            {
                celtypes.StringType(k): to_cel(
                    props.get(k, extra if isinstance(extra, dict) else {}), v
                )
                for k, v in value.items()
            }
        )
    if kind == "array" and isinstance(value, list):
        return celtypes.ListType([to_cel(schema.get("items", {}), v) for v in value])
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return celtypes.DoubleType(float(value))
    # anything else (including a value of the wrong type, which the schema check reports)
    return json_to_cel(value)


def cel_errors(schema: dict[str, Any], value: Any, old: Any = None, path: str = "") -> list[Error]:
    """Every failing (or failing to evaluate) ``x-kubernetes-validations`` rule."""
    errors: list[Error] = []
    for rule in schema.get("x-kubernetes-validations", []):
        uses_old = "oldSelf" in rule["rule"]
        if uses_old and old is None:
            continue  # transition rules only run on updates
        activation = {"self": to_cel(schema, value)}
        if uses_old:
            activation["oldSelf"] = to_cel(schema, old)
        where = (path + rule.get("fieldPath", "")).lstrip(".")
        try:
            ok = compile_rule(rule["rule"]).evaluate(activation)
        except CELEvalError as exc:
            errors.append((where, f"rule evaluation error: {exc.args[0]}"))
            continue
        if not ok:
            errors.append((where, rule["message"]))
    if isinstance(value, dict):
        for name, prop in schema.get("properties", {}).items():
            if name in value:
                child_old = old.get(name) if isinstance(old, dict) else None
                child = f"{path}.{name}" if path else name
                errors += cel_errors(prop, value[name], child_old, child)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                errors += cel_errors(extra, item, None, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            errors += cel_errors(schema["items"], item, None, f"{path}[{index}]")
    return errors


def api_server_errors(obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[Error]:
    """What an API server with our CRDs installed would answer to a create (or update)."""
    schema = openapi(obj["kind"])
    defaulted = apply_defaults(schema, obj)
    old_defaulted = apply_defaults(schema, old) if old is not None else None
    return schema_errors(schema, defaulted) + cel_errors(schema, defaulted, old_defaulted)


def load_samples() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(SAMPLES_DIR.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs
