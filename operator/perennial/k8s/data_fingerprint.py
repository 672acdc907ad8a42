"""The fingerprint of a pipeline's data, for the new-data trigger (I/O through fsspec).

Cheap on purpose: the storage's own metadata (ETag, size, modification time) of the file,
or of every file below a folder (a partitioned parquet dataset), never the content.
``sklearn://`` datasets ship with scikit-learn and never change: their fingerprint is a
constant. The operator polls with its own identity (its ServiceAccount's workload
identity or environment); it never reads the Secret the trainer gets.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from perennial.core.timers import DataCheck
from perennial_runtime.artifacts import storage_options_for

MAX_FILES: Final = 1000
_KEYS: Final = ("ETag", "etag", "size", "Size", "LastModified", "mtime", "updated", "created")


class DataCheckError(Exception):
    """The data's metadata could not be read; the message says where and why."""


def _describe(info: Mapping[str, Any]) -> dict[str, str]:
    return {key: str(info[key]) for key in _KEYS if info.get(key) not in (None, "")}


def fingerprint(uri: str) -> str:
    """A short hash of the data's storage metadata; changes when the data changes."""
    if uri.startswith("sklearn://"):
        return "sklearn-" + uri.removeprefix("sklearn://")
    try:
        import fsspec

        fs, path = fsspec.core.url_to_fs(uri, **storage_options_for(uri))
        info = fs.info(path)
        if info.get("type") == "directory":
            files = sorted(fs.find(path, detail=True).items())[:MAX_FILES]
            parts: Any = [[name, _describe(entry)] for name, entry in files]
        else:
            parts = _describe(info)
    except ImportError as exc:
        raise DataCheckError(
            f"cannot check {uri}: the storage driver is not installed in the operator ({exc})"
        ) from exc
    except FileNotFoundError as exc:
        raise DataCheckError(f"cannot check {uri}: not found") from exc
    except Exception as exc:
        raise DataCheckError(f"cannot check {uri}: {type(exc).__name__}: {exc}") from exc
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def check_data(uri: str, now: datetime) -> DataCheck:
    """Poll the data source: its fingerprint, or why there is none (reported, never raised)."""
    try:
        return DataCheck(time=now, fingerprint=fingerprint(uri))
    except DataCheckError as exc:
        return DataCheck(time=now, error=str(exc))
