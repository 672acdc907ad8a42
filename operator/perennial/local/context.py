"""What the local controllers share: the state store, the clock, the processes, the events.

The local counterpart of "the API server plus the built-in controllers": the pipeline,
run and deployment shells (:mod:`.pipelines`, :mod:`.runs`, :mod:`.deployments`) read and
write objects here and call the same pure core as the operator's kopf handlers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from perennial.api.training import ArtifactsSpec
from perennial.core.conditions import timestamp
from perennial.local.clock import Clock
from perennial.local.jobs import LocalJobs
from perennial.local.proxy import StableEndpoint
from perennial.local.serving import LocalServing
from perennial.local.store import Event, StateStore

log = logging.getLogger("perennial.local")

MAX_EVENT_MESSAGE = 1024  # as the operator's events (perennial.k8s.events)

Listener = Callable[[Event], None]


@dataclass
class Context:
    store: StateStore
    clock: Clock
    jobs: LocalJobs
    listeners: list[Listener] = field(default_factory=list)
    endpoints: dict[tuple[str, str], StableEndpoint] = field(default_factory=dict)
    servings: dict[tuple[str, str], LocalServing] = field(default_factory=dict)
    server_env: dict[str, str] = field(default_factory=dict)  # extra env of model servers

    def event(
        self, body: Mapping[str, Any], reason: str, message: str, type: str = "Normal"
    ) -> Event:
        """Record an event about ``body`` (the local form of a Kubernetes Event)."""
        meta = body.get("metadata") or {}
        event = Event(
            time=timestamp(self.clock.now()),
            kind=str(body.get("kind") or ""),
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            type=type,
            reason=reason,
            message=message if len(message) <= MAX_EVENT_MESSAGE else message[:1018] + " [...]",
        )
        self.store.append_event(event)
        level = logging.WARNING if type == "Warning" else logging.INFO
        log.log(level, "%s/%s %s: %s", event.kind, event.name, reason, event.message)
        for listener in list(self.listeners):
            listener(event)
        return event

    def local_artifact_uri(self, artifacts: ArtifactsSpec) -> str:
        """Where runs store their models here: a PersistentVolumeClaim becomes the folder
        ``<state-dir>/volumes/<claimName>``, mounted at the same ``mountPath``; any other
        location (a plain ``file://`` path, ``s3://``, ``gs://``) is used as it is."""
        volume = artifacts.volume
        uri = artifacts.uri
        if volume is None or not uri.startswith("file://"):
            return uri
        mount = volume.mount_path.rstrip("/")
        path = uri[len("file://") :]
        if path != mount and not path.startswith(mount + "/"):
            return uri
        local = self.store.volume_dir(volume.claim_name)
        local.mkdir(parents=True, exist_ok=True)
        return "file://" + str(local) + path[len(mount) :]
