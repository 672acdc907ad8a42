"""The two patch formats the emulator applies: JSON merge patch and JSON patch.

Strategic merge patch (what ``kubectl patch`` and the ``kubernetes`` client send for
built-in kinds) is applied as a JSON merge patch: lists are replaced, never merged by key.
Send complete lists (containers, conditions, env) and the result is the same as on a real
API server.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, Final

import jsonpatch
import jsonpointer

from .api_errors import api_error

__all__ = [
    "JSON_PATCH",
    "MERGE_PATCH",
    "STRATEGIC_MERGE_PATCH",
    "PatchError",
    "PatchTestError",
    "apply_json_patch",
    "apply_merge_patch",
    "patched_object",
]


class PatchError(ValueError):
    """A JSON patch that cannot be applied (bad path, bad operation)."""


class PatchTestError(PatchError):
    """A JSON patch whose ``test`` operation did not match (a real server answers 422)."""


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` removes a key, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def apply_json_patch(target: Mapping[str, Any], operations: Sequence[Any]) -> dict[str, Any]:
    """RFC 6902, applied to a copy; raises :class:`PatchTestError` on a failed ``test``."""
    try:
        result = jsonpatch.apply_patch(copy.deepcopy(dict(target)), list(operations))
    except jsonpatch.JsonPatchTestFailed as exc:
        raise PatchTestError(str(exc)) from exc
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        raise PatchError(str(exc)) from exc
    except (TypeError, KeyError) as exc:  # malformed operations (not a dict, no "op")
        raise PatchError(f"malformed JSON patch operation: {exc}") from exc
    if not isinstance(result, dict):
        raise PatchError("a JSON patch must leave an object at the document root")
    return result


MERGE_PATCH: Final = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH: Final = "application/strategic-merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"


def patched_object(
    current: dict[str, Any], content_type: str, body: Any, *, custom_resource: bool
) -> dict[str, Any]:
    """Apply a PATCH request's body by its Content-Type, answering errors as a server would."""
    content_type = content_type.split(";", maxsplit=1)[0].strip().lower()
    if content_type == JSON_PATCH:
        if not isinstance(body, list):
            raise api_error(400, f"a {JSON_PATCH} body must be a JSON array of operations")
        try:
            return apply_json_patch(current, body)
        except PatchTestError as exc:
            raise api_error(
                422, f"the server rejected our request due to an error in our request: {exc}"
            ) from exc
        except PatchError as exc:
            raise api_error(422, f"invalid JSON patch: {exc}") from exc
    if content_type in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
        if content_type == STRATEGIC_MERGE_PATCH and custom_resource:
            raise api_error(
                415,
                "the body of the request was in an unknown format - accepted media types "
                f"include: {JSON_PATCH}, {MERGE_PATCH}, application/apply-patch+yaml "
                "(custom resources do not support strategic merge patch)",
            )
        if not isinstance(body, dict):
            raise api_error(400, f"a {content_type} body must be a JSON object")
        patched = apply_merge_patch(current, body)
        assert isinstance(patched, dict)
        return patched
    raise api_error(
        415,
        f"Content-Type {content_type or '(none)'!r} is not emulated: use {MERGE_PATCH}, "
        f"{STRATEGIC_MERGE_PATCH} (applied as a merge patch) or {JSON_PATCH}; server-side "
        "apply is not emulated",
    )
