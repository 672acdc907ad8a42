"""The local runner's state: the objects a cluster's API server would hold, on disk.

``<state-dir>/objects/<plural>/<namespace>/<name>.json`` holds each TrainingPipeline,
TrainingRun and ModelDeployment in the wire shape of the API (camelCase ``metadata``,
``spec``, ``status``), so the pure core reads exactly what it reads in a cluster and
``status`` has the fields ``kubectl get -o yaml`` would show. Writes are atomic (a
temporary file renamed over the old one), so a runner killed at any moment leaves every
object either before or after a change, never half-written. ``events.jsonl`` is the event
log; ``jobs/``, ``serving/`` and ``volumes/`` hold the training processes' files, the model
servers' state and logs, and the artifact volumes.

One runner at a time: :meth:`StateStore.lock` takes an exclusive lock on
``runner.lock`` and names the process that holds it otherwise.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from perennial.api.constants import (
    MODEL_DEPLOYMENT,
    MODEL_DEPLOYMENTS,
    TRAINING_PIPELINE,
    TRAINING_PIPELINES,
    TRAINING_RUN,
    TRAINING_RUNS,
)
from perennial.api.deployment import ModelDeployment
from perennial.api.pipeline import TrainingPipeline
from perennial.api.run import TrainingRun

KINDS: dict[str, tuple[str, type[Any]]] = {
    TRAINING_PIPELINE: (TRAINING_PIPELINES, TrainingPipeline),
    TRAINING_RUN: (TRAINING_RUNS, TrainingRun),
    MODEL_DEPLOYMENT: (MODEL_DEPLOYMENTS, ModelDeployment),
}

Body = dict[str, Any]


class StateError(RuntimeError):
    """The state directory cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class Event:
    """One entry of the event log: the local form of a Kubernetes Event."""

    time: str
    kind: str
    namespace: str
    name: str
    type: str  # Normal or Warning
    reason: str
    message: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step (same-directory rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, payload: Any) -> None:
    write_atomic(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise StateError(f"{path} is not valid JSON ({exc}); delete it or the state dir") from exc


class StateStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._lock_file: IO[str] | None = None

    # --- the runner's lock ---------------------------------------------------------------

    def lock(self) -> None:
        """Take the state directory for this process, or explain who holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        handle = (self.root / "runner.lock").open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise StateError(
                f"{self.root} is in use by {holder}; stop that runner first or pass another "
                "--state-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"perennial local (pid {os.getpid()})\n")
        handle.flush()
        self._lock_file = handle

    def unlock(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    # --- objects -------------------------------------------------------------------------

    def _path(self, kind: str, namespace: str, name: str) -> Path:
        plural = KINDS[kind][0]
        return self.root / "objects" / plural / namespace / f"{name}.json"

    def get(self, kind: str, namespace: str, name: str) -> Body | None:
        body = read_json(self._path(kind, namespace, name))
        return body if isinstance(body, dict) else None

    def list_objects(self, kind: str, namespace: str | None = None) -> list[Body]:
        base = self.root / "objects" / KINDS[kind][0]
        folders = [base / namespace] if namespace else sorted(p for p in base.glob("*"))
        out: list[Body] = []
        for folder in folders:
            for path in sorted(folder.glob("*.json")):
                body = read_json(path)
                if isinstance(body, dict):
                    out.append(body)
        return out

    def save(self, body: Mapping[str, Any]) -> Body:
        """Write an object; it must validate against its API model (the CRD's shape)."""
        kind = str(body.get("kind"))
        if kind not in KINDS:
            raise StateError(f"cannot store an object of kind {kind!r}")
        try:
            KINDS[kind][1].model_validate(body)
        except ValidationError as exc:
            name = (body.get("metadata") or {}).get("name")
            raise StateError(f"refusing to store an invalid {kind} {name}: {exc}") from exc
        meta = body["metadata"]
        write_json(self._path(kind, meta["namespace"], meta["name"]), dict(body))
        return dict(body)

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        path = self._path(kind, namespace, name)
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed

    # --- events --------------------------------------------------------------------------

    @property
    def events_path(self) -> Path:
        return self.root / "events.jsonl"

    def append_event(self, event: Event) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with self.events_path.open("a", encoding="utf-8") as fh:
            fh.write(event.to_json() + "\n")

    def events(self) -> list[Event]:
        if not self.events_path.exists():
            return []
        out = []
        for line in self.events_path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(Event(**json.loads(line)))
            except (ValueError, TypeError):
                continue  # a line cut short by a crash
        return out

    # --- folders of the local workloads --------------------------------------------------

    def job_dir(self, namespace: str, run: str) -> Path:
        return self.root / "jobs" / namespace / run

    def serving_dir(self, namespace: str, deployment: str) -> Path:
        return self.root / "serving" / namespace / deployment

    def volume_dir(self, claim: str) -> Path:
        return self.root / "volumes" / claim


@contextmanager
def locked(store: StateStore) -> Iterator[StateStore]:
    store.lock()
    try:
        yield store
    finally:
        store.unlock()
