"""All kopf settings, in one startup handler, plus the limits every handler must declare.

kopf's defaults are tuned for quick experiments: unbounded watch requests, five-minute API
timeouts, kopf's own finalizer and annotation names. A production operator pins each of
them. :func:`apply_settings` is pure (it only assigns fields of the settings object it is
given) so tests check it on a fresh ``kopf.OperatorSettings()`` without a cluster.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any, Final, TypedDict

import kopf

from perennial.k8s.builders.training_job import MANAGED_BY as TRAINING_MANAGED_BY
from perennial.k8s.serving import MANAGED_BY as SERVING_MANAGED_BY

__all__ = [
    "ANNOTATION_PREFIX",
    "DIFFBASE_KEY",
    "EVENT_NAME_PREFIX",
    "FINALIZER",
    "HANDLER_LIMITS",
    "REPORTING_COMPONENT",
    "HandlerLimits",
    "apply_settings",
    "configure_operator",
    "reporting_instance",
]

FINALIZER: Final = "perennial.dev/finalizer"
ANNOTATION_PREFIX: Final = "perennial.dev"
DIFFBASE_KEY: Final = "last-handled-configuration"
REPORTING_COMPONENT: Final = "perennial-operator"
EVENT_NAME_PREFIX: Final = "perennial-event-"

# Watch streams. The API server ends each watch request after SERVER_TIMEOUT; kopf then
# re-lists and re-watches. The client gives up slightly later, so only a stalled connection
# (no FIN, no data: the failure behind kopf #614/#698) is cut client-side. kopf also drops a
# stream that has carried no event, not even a bookmark, for INACTIVITY_TIMEOUT.
# An int: kopf sends it verbatim as `timeoutSeconds`, which the API server parses as an
# integer ("300.0" is a bad request).
WATCH_SERVER_TIMEOUT: Final = 300
WATCH_CLIENT_TIMEOUT: Final = 330.0
WATCH_CONNECT_TIMEOUT: Final = 15.0
WATCH_INACTIVITY_TIMEOUT: Final = 70.0

# Of the built-in kinds it watches, the operator lists and watches only the objects it made
# (a server-side label selector): without one, every Job, Pod and Deployment of the cluster
# would stream through it and sit in kopf's memory. Trainer and tracking Jobs and their Pods
# carry managed-by=perennial, model servers' Deployments and Pods managed-by=
# perennial-operator (set after any user labels, so a template cannot change them).
_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
OWN_OBJECTS: Final[Mapping[tuple[str, str, str], str]] = {
    ("batch", "v1", "jobs"): f"{_MANAGED_BY}={TRAINING_MANAGED_BY[_MANAGED_BY]}",
    ("apps", "v1", "deployments"): f"{_MANAGED_BY}={SERVING_MANAGED_BY[_MANAGED_BY]}",
    ("", "v1", "pods"): (
        f"{_MANAGED_BY} in ({TRAINING_MANAGED_BY[_MANAGED_BY]},{SERVING_MANAGED_BY[_MANAGED_BY]})"
    ),
}
LIST_CHUNK_SIZE: Final = 500

# Ordinary API requests (GET/PATCH/POST): bounded, retried a few times, then the handler sees
# the error and its own retry/backoff takes over.
REQUEST_TIMEOUT: Final = 60.0
CONNECT_TIMEOUT: Final = 10.0
API_ERROR_BACKOFFS: Final = (1.0, 2.0, 4.0, 8.0)
EVENT_POST_BACKOFFS: Final = (1.0, 2.0, 4.0)

# After patching an object (its handlers' progress, the last handled spec), kopf waits for
# the watch to deliver that version before it runs change handlers again; past the wait it
# goes on with the body it has, which lacks its own patch, and runs the create handler a
# second time. kopf's default (5 s) was outlasted by the watch's lag when thousands of
# pipelines were created at once (make bench-operator counts the repeats). The wait ends
# as soon as the version arrives.
CONSISTENCY_TIMEOUT: Final = 60.0

# Handler execution: the delay before retrying a handler that raised an arbitrary error.
DEFAULT_HANDLER_BACKOFF: Final = 15.0
SYNC_HANDLER_THREADS: Final = 16
# Per-object workers running at once; bounds memory and API pressure on a big cluster.
WORKER_LIMIT: Final = 100


class HandlerLimits(TypedDict):
    """Keyword arguments every kopf resource handler takes: ``@kopf.on.create(..., **limits)``."""

    retries: int
    timeout: float
    backoff: float


HANDLER_LIMITS: Final[HandlerLimits] = {"retries": 10, "timeout": 600.0, "backoff": 15.0}
"""The default bound for every handler: 10 attempts, 10 minutes in total, 15 s apart.

A handler that still fails after that is given up on (kopf logs it and stops retrying until
the object changes): no more 40,000-retry loops."""


def reporting_instance(environ: Mapping[str, str]) -> str:
    """The ``reportingInstance`` of our events: the pod name, or the host name locally."""
    return environ.get("POD_NAME") or environ.get("HOSTNAME") or "local"


def apply_settings(settings: kopf.OperatorSettings, *, namespaced: bool, instance: str) -> None:
    """Set every kopf setting we rely on (no I/O)."""
    # Our own finalizer and annotation names, not kopf's defaults (kopf.zalando.org/...).
    # v1=False: this operator never ran with kopf's legacy key format, so write one key each.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX, v1=False
    )
    settings.persistence.consistency_timeout = CONSISTENCY_TIMEOUT
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key=DIFFBASE_KEY, v1=False
    )

    # Events are posted explicitly (perennial.k8s.events.post_event), never from log lines.
    settings.posting.enabled = True
    settings.posting.loggers = False
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = REPORTING_COMPONENT
    settings.posting.reporting_instance = instance
    settings.posting.event_name_prefix = EVENT_NAME_PREFIX
    settings.posting.default_backoffs = EVENT_POST_BACKOFFS

    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT
    settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT
    settings.watching.connect_timeout = WATCH_CONNECT_TIMEOUT
    settings.watching.inactivity_timeout = WATCH_INACTIVITY_TIMEOUT
    settings.watching.chunk_size = LIST_CHUNK_SIZE
    for resource, selector in OWN_OBJECTS.items():
        settings.watching.label_selectors[resource] = selector

    settings.networking.request_timeout = REQUEST_TIMEOUT
    settings.networking.connect_timeout = CONNECT_TIMEOUT
    settings.networking.error_backoffs = API_ERROR_BACKOFFS

    settings.execution.default_backoff = DEFAULT_HANDLER_BACKOFF
    settings.execution.max_workers = SYNC_HANDLER_THREADS

    # kopf removed time-based event batching (queueing.batch_window is deprecated and inert):
    # events of one object are processed in order by one worker; we only bound the workers.
    settings.queueing.worker_limit = WORKER_LIMIT

    # Keep-alives of the peering object every few seconds would drown the log.
    settings.peering.stealth = True

    # A namespaced operator must not need cluster-scoped permissions: scanning lists all
    # namespaces and watches CRDs cluster-wide, so it is off. The CRDs are then discovered once
    # at startup (install them before the operator) and the namespaces are taken as given.
    settings.scanning.disabled = namespaced


@kopf.on.startup(id="perennial-settings")
def configure_operator(*, settings: kopf.OperatorSettings, logger: kopf.Logger, **_: Any) -> None:
    """kopf startup handler: apply :func:`apply_settings` to the running operator."""
    # kopf has already mapped clusterwide=/namespaces= into settings.peering.clusterwide.
    namespaced = not settings.peering.clusterwide
    apply_settings(settings, namespaced=namespaced, instance=reporting_instance(os.environ))
    logger.info(
        "kopf settings applied: finalizer %s, annotations %s/, %s scope",
        FINALIZER,
        ANNOTATION_PREFIX,
        "namespaced" if namespaced else "cluster-wide",
    )
