"""What an API server does to an object's metadata on create, update and delete (pure).

These functions take the stored object and the client's request and return the object to
store, or raise the error a real server would answer with. They never touch storage and never
assign ``resourceVersion`` (the emulator does, once it knows the write is not a no-op).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final

import kmock

from .api_errors import api_error, describe
from .discovery import api_version_of

__all__ = [
    "Update",
    "created_object",
    "deletion_marked",
    "is_released",
    "set_cluster_clock",
    "spec_view",
    "timestamp",
    "updated_object",
]

_NAME: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SERVER_MANAGED: Final = (
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)


def _real_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


_cluster_clock: list[Callable[[], datetime.datetime]] = [_real_now]


def set_cluster_clock(now: Callable[[], datetime.datetime] | None) -> None:
    """The time the emulator and the stand-in controllers stamp on objects (creation,
    deletion, Job/Pod start and end, conditions): real time by default (``None``). A suite
    that runs the operator on a moved clock (bench/chaos) moves the cluster's with it, as
    in a cluster whose nodes agree on the time."""
    _cluster_clock[0] = now or _real_now


def timestamp() -> str:
    """Now, as the API server writes times (UTC, whole seconds)."""
    return _cluster_clock[0]().strftime("%Y-%m-%dT%H:%M:%SZ")


def spec_view(obj: Mapping[str, Any], *, has_status: bool) -> dict[str, Any]:
    """What ``generation`` follows: all but metadata (and status, if it is a subresource)."""
    skipped = {"metadata", "apiVersion", "kind"} | ({"status"} if has_status else set())
    return {key: value for key, value in obj.items() if key not in skipped}


def created_object(
    body: Any,
    *,
    resource: kmock.resource,
    info: kmock.ResourceInfo,
    namespace: str | None,
    generate_name: Callable[[str], str],
) -> tuple[dict[str, Any], bool]:
    """The object to store for a create request, and whether a status was dropped from it."""
    if not isinstance(body, Mapping) or not isinstance(body.get("metadata", {}), Mapping):
        raise api_error(400, "the body of a create request must be an object with metadata")
    api_version = api_version_of(resource)
    for field, expected in (("apiVersion", api_version), ("kind", info.kind)):
        if body.get(field) not in (None, expected):
            raise api_error(
                400, f"{field} {body.get(field)!r} in the body does not match {expected!r} (URL)"
            )
    obj: dict[str, Any] = {"apiVersion": api_version, "kind": info.kind}
    obj |= {key: copy.deepcopy(value) for key, value in body.items() if key not in obj}
    meta = obj.setdefault("metadata", {})
    if info.namespaced:
        if meta.get("namespace") not in (None, "", namespace):
            raise api_error(
                400,
                f"the namespace of the object ({meta.get('namespace')}) does not match the "
                f"namespace on the request ({namespace})",
            )
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
    if meta.get("resourceVersion"):
        raise api_error(400, "resourceVersion should not be set on objects to be created")
    if not meta.get("name"):
        if not meta.get("generateName"):
            raise api_error(422, "metadata.name: Required value: name or generateName is required")
        meta["name"] = generate_name(str(meta["generateName"]))
    name = str(meta["name"])
    if len(name) > 253 or not _NAME.match(name):
        raise api_error(
            422,
            f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 subdomain must "
            "consist of lower case alphanumeric characters, '-' or '.'",
        )
    status_dropped = False
    if "status" in info.subresources:
        status_dropped = obj.pop("status", None) not in (None, {})
    for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
        meta.pop(field, None)
    meta |= {"uid": str(uuid.uuid4()), "creationTimestamp": timestamp(), "generation": 1}
    return obj, status_dropped


@dataclasses.dataclass(frozen=True)
class Update:
    """The object to store after an update, and what a real server would have dropped."""

    result: dict[str, Any]
    dropped: str | None = None  # "main": status sent to the main endpoint; "status": the reverse


def updated_object(
    current: dict[str, Any],
    new: dict[str, Any],
    *,
    resource: kmock.resource,
    info: kmock.ResourceInfo,
    subresource: str | None,
    replaced: bool,
) -> Update:
    """The object to store after a PATCH (``new`` = current with the patch applied) or a
    PUT (``replaced``; ``new`` = the body). Its ``resourceVersion`` is still the current one:
    a result equal to ``current`` is a no-op write."""
    old_meta = current["metadata"]
    new_meta = new.get("metadata")
    name = old_meta["name"]
    if not isinstance(new_meta, dict):
        raise api_error(422, "metadata: Required value: the object must keep its metadata")
    if new_meta.get("resourceVersion") not in (None, "", old_meta["resourceVersion"]):
        raise api_error(
            409,
            f'Operation cannot be fulfilled on {describe(resource)} "{name}": the object has '
            "been modified; please apply your changes to the latest version and try again",
        )
    if new_meta.get("uid") not in (None, "", old_meta["uid"]):
        raise api_error(409, f"Precondition failed: UID in object meta: {old_meta['uid']}")
    for field in ("name", "namespace"):
        if new_meta.get(field, old_meta.get(field)) != old_meta.get(field):
            raise api_error(
                400,
                f"metadata.{field} {new_meta.get(field)!r} does not match the URL "
                f"({old_meta.get(field)!r}); objects cannot be renamed or moved",
            )

    has_status = "status" in info.subresources
    dropped: str | None = None
    if subresource == "status":
        # Only the status is taken from a /status write; metadata and spec stay.
        result = copy.deepcopy(current)
        if "status" in new:
            result["status"] = new["status"]
        else:
            result.pop("status", None)
        if spec_view(new, has_status=True) != spec_view(current, has_status=True):
            dropped = "status"
    else:
        result = new
        if has_status:
            # The main endpoint keeps the stored status (a PUT without status is fine).
            sent = not replaced or "status" in new
            if sent and new.get("status") != current.get("status"):
                dropped = "main"
            if "status" in current:
                result["status"] = current["status"]
            else:
                result.pop("status", None)

    meta = result.setdefault("metadata", {})
    for field in _SERVER_MANAGED:
        if field in old_meta:
            meta[field] = old_meta[field]
        else:
            meta.pop(field, None)
    meta["name"], meta["resourceVersion"] = name, old_meta["resourceVersion"]
    if "namespace" in old_meta:
        meta["namespace"] = old_meta["namespace"]
    result["apiVersion"], result["kind"] = current["apiVersion"], current["kind"]
    if old_meta.get("deletionTimestamp"):
        added = set(meta.get("finalizers") or ()) - set(old_meta.get("finalizers") or ())
        if added:
            raise api_error(
                422,
                "metadata.finalizers: Forbidden: no new finalizers can be added if the object "
                f"is being deleted, found new finalizers {sorted(added)}",
            )
    if spec_view(result, has_status=has_status) != spec_view(current, has_status=has_status):
        meta["generation"] = int(old_meta.get("generation", 0)) + 1
    return Update(result=result, dropped=dropped)


def deletion_marked(current: dict[str, Any]) -> dict[str, Any]:
    """The object with ``deletionTimestamp`` set (it has finalizers to wait for)."""
    result = copy.deepcopy(current)
    meta = result["metadata"]
    meta["deletionTimestamp"] = timestamp()
    meta["deletionGracePeriodSeconds"] = 0
    meta["generation"] = int(meta.get("generation", 0)) + 1
    return result


def is_released(obj: Mapping[str, Any]) -> bool:
    """Marked for deletion and no finalizer left: the server removes it now."""
    meta = obj.get("metadata", {})
    return bool(meta.get("deletionTimestamp")) and not meta.get("finalizers")
