"""API discovery for the emulator: built-in kinds and CustomResourceDefinitions.

kmock answers the discovery endpoints (``/api``, ``/apis``, ``/apis/{group}/{version}``) from
its ``resources`` table. The built-in kinds come from kmock's bundled table (taken from a
recent K3s cluster); every CRD is translated here into one entry per served version,
including its subresources, so kopf sends ``patch.status`` to ``/status`` as it does on a
real cluster.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import kmock
import yaml

__all__ = [
    "CRD_RESOURCE",
    "STANDARD_VERBS",
    "CrdError",
    "api_version_of",
    "crd_resources",
    "read_crd_documents",
]

CRD_RESOURCE: Final = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
STANDARD_VERBS: Final = frozenset(
    {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
)


class CrdError(ValueError):
    """A CRD document the emulator cannot register (the message names the field)."""


def api_version_of(resource: kmock.resource) -> str:
    """``v1`` for the core group, ``group/version`` otherwise."""
    return f"{resource.group}/{resource.version}" if resource.group else f"{resource.version}"


def _field(doc: Mapping[str, Any], path: str, where: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise CrdError(f"{where}: `{path}` is missing; a CRD needs it to be served")
        value = value[part]
    return value


def crd_resources(crd: Mapping[str, Any]) -> dict[kmock.resource, kmock.ResourceInfo]:
    """Discovery entries for every served version of a CRD (pure)."""
    where = f"CRD {crd.get('metadata', {}).get('name', '<unnamed>')!r}"
    if crd.get("apiVersion") != "apiextensions.k8s.io/v1" or crd.get("kind") != (
        "CustomResourceDefinition"
    ):
        raise CrdError(
            f"{where}: expected apiVersion apiextensions.k8s.io/v1 and kind "
            f"CustomResourceDefinition, got {crd.get('apiVersion')!r} / {crd.get('kind')!r}"
        )
    group = _field(crd, "spec.group", where)
    kind = _field(crd, "spec.names.kind", where)
    plural = _field(crd, "spec.names.plural", where)
    scope = _field(crd, "spec.scope", where)
    versions = _field(crd, "spec.versions", where)
    if scope not in ("Namespaced", "Cluster"):
        raise CrdError(f"{where}: `spec.scope` must be Namespaced or Cluster, got {scope!r}")
    if not isinstance(versions, list) or not versions:
        raise CrdError(f"{where}: `spec.versions` must list at least one version")
    names = crd["spec"]["names"]
    result: dict[kmock.resource, kmock.ResourceInfo] = {}
    for index, version in enumerate(versions):
        name = _field(version, "name", f"{where} spec.versions[{index}]")
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        result[kmock.resource(group, name, plural)] = kmock.ResourceInfo(
            namespaced=scope == "Namespaced",
            kind=kind,
            singular=names.get("singular") or kind.lower(),
            verbs=set(STANDARD_VERBS),
            shortnames=set(names.get("shortNames") or ()),
            categories=set(names.get("categories") or ()),
            subresources=set(subresources),
        )
    return result


@functools.lru_cache(maxsize=64)
def _parse_yaml_file(path: str, mtime_ns: int) -> tuple[Any, ...]:
    # Cached per (path, mtime): the generated CRDs are large and loaded by every test.
    # Callers deep-copy what they take, so the cached documents are never mutated.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path, encoding="utf-8") as stream:
        return tuple(doc for doc in yaml.load_all(stream, Loader=loader) if doc)


def read_crd_documents(
    paths: Iterable[str | os.PathLike[str]], *, skip_other_kinds: bool = False
) -> Iterator[dict[str, Any]]:
    """Yield every CRD document of the given YAML files; other kinds are an error, or
    skipped with ``skip_other_kinds`` (e.g. the kustomization.yaml beside the CRDs)."""
    for path in paths:
        file = Path(path)
        for cached in _parse_yaml_file(str(file.resolve()), file.stat().st_mtime_ns):
            doc = copy.deepcopy(cached)
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                if skip_other_kinds:
                    continue
                raise CrdError(
                    f"{file}: every document must be a CustomResourceDefinition, "
                    f"got kind {doc.get('kind') if isinstance(doc, dict) else type(doc)!r}"
                )
            yield doc
