"""The one place that talks to the Kubernetes API (besides kopf itself).

Kind-agnostic calls (:func:`get`, :func:`get_or_none`, :func:`list_objects`, :func:`create`,
:func:`patch`, :func:`delete`) take a :class:`Resource` (``JOBS``, ``TRAINING_RUNS``, ...) and
plain dicts, and go through the official ``kubernetes`` client's ``ApiClient`` so that its
configuration (in-cluster service account or kubeconfig) and authentication apply.

Status is written only through the status subresource, and only through a typed
:class:`StatusApi` per kind (:data:`PIPELINE_STATUS`, :data:`RUN_STATUS`,
:data:`DEPLOYMENT_STATUS`): it checks the field names and values against the kind's
pydantic status model before sending a JSON merge patch to ``.../status``.

Robustness:

- every request is bounded (connect/read timeouts) and retried with exponential backoff on
  409 Conflict (an optimistic-concurrency clash), 429, 5xx and connection errors, at most
  :attr:`RetryPolicy.attempts` times, never sooner than the server's ``Retry-After`` (API
  Priority and Fairness answers 429 with one); other errors are raised at once as
  :class:`ApiError`;
- :func:`create` of a name that already exists returns the existing object (deterministic
  child names make creation idempotent: a restarted operator never duplicates);
- :func:`list_objects` with ``labels=`` sends a label selector AND filters the answer
  client-side, so it is correct against servers (or emulators) that ignore selectors.

Synchronous on purpose: kopf runs sync handlers in its thread pool, and the official client
is synchronous. Tests point the module at an emulator with :func:`configure`.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final, Generic, TypeVar

import kubernetes
from pydantic import BaseModel, ValidationError

from perennial._version import __version__
from perennial.api.constants import (
    GROUP,
    MODEL_DEPLOYMENT,
    MODEL_DEPLOYMENTS,
    TRAINING_PIPELINE,
    TRAINING_PIPELINES,
    TRAINING_RUN,
    TRAINING_RUNS,
    VERSION,
)
from perennial.api.deployment import ModelDeploymentStatus
from perennial.api.pipeline import TrainingPipelineStatus
from perennial.api.run import TrainingRunStatus

__all__ = [
    "DEPLOYMENTS",
    "DEPLOYMENT_STATUS",
    "EVENTS",
    "JOBS",
    "MODEL_DEPLOYMENTS_RESOURCE",
    "PIPELINE_STATUS",
    "PODS",
    "POD_DISRUPTION_BUDGETS",
    "RUN_STATUS",
    "SECRETS",
    "SERVICES",
    "TRAINING_PIPELINES_RESOURCE",
    "TRAINING_RUNS_RESOURCE",
    "ApiError",
    "Resource",
    "RetryPolicy",
    "StatusApi",
    "api_client",
    "configure",
    "create",
    "create_if_absent",
    "delete",
    "get",
    "get_or_none",
    "labels_match",
    "list_objects",
    "owner_reference",
    "patch",
]

logger = logging.getLogger("perennial.k8s.client")

MERGE_PATCH: Final = "application/merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"

# Who we are to the API server: audit logs, API Priority and Fairness flow schemas and the
# emulator's RBAC check in the integration tests tell the operator's requests by it.
USER_AGENT: Final = f"perennial/{__version__}"

# Connect / read timeouts of one request (seconds).
REQUEST_TIMEOUT: Final = (10.0, 60.0)

# Connections kept open to the API server. Every thread that may call it at once keeps one:
# kopf's sync-handler threads (16), asyncio's default executor (the trigger and deployment
# loops), the liveness probe. urllib3's default (5 per core) discarded connections in
# bursts ("Connection pool is full") and the next request paid a new TLS handshake.
CONNECTION_POOL_SIZE: Final = 32

RETRYABLE_STATUS: Final = frozenset({409, 429, 500, 502, 503, 504})
# The longest Retry-After honoured (seconds): API Priority and Fairness asks for ~1 s.
RETRY_AFTER_CAP: Final = 30.0


# --- resources -------------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """A resource type of the API: ``group`` is empty for the core group (v1)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            root = f"{root}/namespaces/{namespace}"
        out = f"{root}/{self.plural}"
        return f"{out}/{name}" if name else out


TRAINING_PIPELINES_RESOURCE: Final = Resource(GROUP, VERSION, TRAINING_PIPELINES, TRAINING_PIPELINE)
TRAINING_RUNS_RESOURCE: Final = Resource(GROUP, VERSION, TRAINING_RUNS, TRAINING_RUN)
MODEL_DEPLOYMENTS_RESOURCE: Final = Resource(GROUP, VERSION, MODEL_DEPLOYMENTS, MODEL_DEPLOYMENT)
JOBS: Final = Resource("batch", "v1", "jobs", "Job")
PODS: Final = Resource("", "v1", "pods", "Pod")
SECRETS: Final = Resource("", "v1", "secrets", "Secret")
SERVICES: Final = Resource("", "v1", "services", "Service")
EVENTS: Final = Resource("", "v1", "events", "Event")
DEPLOYMENTS: Final = Resource("apps", "v1", "deployments", "Deployment")
POD_DISRUPTION_BUDGETS: Final = Resource(
    "policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget"
)


# --- errors and retries ----------------------------------------------------------------


class ApiError(Exception):
    """The API server refused a request (or could not be reached: ``status`` 0)."""

    def __init__(
        self,
        method: str,
        path: str,
        status: int,
        reason: str,
        message: str,
        *,
        retry_after: float | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after  # seconds the server asked to wait (429/503)
        super().__init__(f"{method} {path}: HTTP {status} {reason}: {message}".strip())

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def already_exists(self) -> bool:
        return self.status == 409 and self.reason == "AlreadyExists"

    @property
    def conflict(self) -> bool:
        return self.status == 409 and self.reason != "AlreadyExists"

    @property
    def retryable(self) -> bool:
        return self.status == 0 or (self.status in RETRYABLE_STATUS and not self.already_exists)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter: ``base * 2**n``, capped at ``cap`` seconds."""

    attempts: int = 5
    base: float = 0.2
    cap: float = 5.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def delay(self, attempt: int) -> float:
        raw = min(self.cap, self.base * (2**attempt))
        return float(raw * (0.5 + random.random() / 2))


# --- configuration ---------------------------------------------------------------------


class _State:
    lock = threading.Lock()
    client: Any = None  # kubernetes.client.ApiClient
    explicit = False  # set by configure(): keep this client whatever the default is
    default_seen: Any = None  # the default Configuration the cached client was made from
    retry = RetryPolicy()


def configure(configuration: Any | None = None, *, retry: RetryPolicy | None = None) -> None:
    """Use ``configuration`` (a ``kubernetes.client.Configuration``) from now on; ``None``
    goes back to the ``kubernetes`` package's default configuration (loaded on first use:
    the in-cluster service account in a Pod, else the kubeconfig)."""
    with _State.lock:
        _State.explicit = configuration is not None
        _State.client = _new_client(configuration) if configuration is not None else None
        _State.default_seen = None
        if retry is not None:
            _State.retry = retry


def _new_client(configuration: Any | None = None) -> Any:
    # A copy: the caller's (or the package's default) configuration stays as it was.
    if configuration is None:
        configuration = kubernetes.client.Configuration.get_default_copy()
    else:
        configuration = copy.deepcopy(configuration)
    configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
    client = kubernetes.client.ApiClient(configuration)
    client.user_agent = USER_AGENT
    return client


def _default_configuration() -> Any:
    return getattr(kubernetes.client.Configuration, "_default", None)


def _load_default_configuration() -> None:
    """Load the in-cluster or kubeconfig configuration as the package's default."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubernetes.config.load_incluster_config()
    else:
        kubernetes.config.load_kube_config()


def api_client() -> Any:
    """The shared ``kubernetes.client.ApiClient`` (thread-safe).

    Without :func:`configure`, it follows the ``kubernetes`` package's default
    configuration: loaded on first use, and a new client is made whenever something (a
    test harness, ``kubernetes.config.load_kube_config()``) sets a new default.
    """
    with _State.lock:
        if _State.explicit:
            return _State.client
        if _default_configuration() is None:
            _load_default_configuration()
        default = _default_configuration()
        if _State.client is None or _State.default_seen is not default:
            _State.client = _new_client()
            _State.default_seen = default
        return _State.client


def _json_safe(value: Any) -> Any:
    def default(obj: Any) -> Any:
        if isinstance(obj, datetime | date):
            return obj.isoformat().replace("+00:00", "Z")
        if isinstance(obj, BaseModel):
            return obj.model_dump(mode="json", by_alias=True, exclude_none=True)
        raise TypeError(f"cannot send {type(obj).__name__} to the API server")

    return json.loads(json.dumps(value, default=default))


def _retry_after(exc: Any) -> float | None:
    """The server's ``Retry-After`` (delay-seconds form, as the API server sends it)."""
    headers = getattr(exc, "headers", None) or {}
    value = next((v for k, v in dict(headers).items() if k.lower() == "retry-after"), None)
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    if seconds is None or seconds < 0:
        return None
    return min(seconds, RETRY_AFTER_CAP)


def _decode_error(exc: Any) -> tuple[int, str, str]:
    status = int(getattr(exc, "status", 0) or 0)
    reason = str(getattr(exc, "reason", "") or "")
    message = str(getattr(exc, "body", "") or "")
    try:
        body = json.loads(message)
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict):
        reason = str(body.get("reason") or reason)
        message = str(body.get("message") or message)
    return status, reason, message


def _request(
    method: str,
    path: str,
    *,
    query: Sequence[tuple[str, str]] = (),
    body: Any = None,
    content_type: str | None = None,
    retry_conflicts: bool = True,
) -> Any:
    """One API call with bounded retries; the decoded JSON answer."""
    policy = _State.retry
    payload = _json_safe(body) if body is not None else None
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    last: ApiError | None = None
    for attempt in range(max(1, policy.attempts)):
        try:
            response = api_client().call_api(
                path,
                method,
                query_params=list(query),
                header_params=dict(headers),
                body=payload,
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except kubernetes.client.exceptions.ApiException as exc:
            status, reason, message = _decode_error(exc)
            last = ApiError(method, path, status, reason, message, retry_after=_retry_after(exc))
        except Exception as exc:  # urllib3 connection errors, timeouts
            if not _is_connection_error(exc):
                raise
            last = ApiError(method, path, 0, "ConnectionError", str(exc))
        else:
            data = response.data
            if not data:
                return {}
            return json.loads(data)
        if not last.retryable or attempt == policy.attempts - 1:
            break
        if last.conflict and not retry_conflicts:
            break
        # Never sooner than the server asked (429 from API Priority and Fairness, 503).
        delay = max(policy.delay(attempt), last.retry_after or 0.0)
        logger.info("%s; retrying in %.1fs (attempt %d)", last, delay, attempt + 1)
        policy.sleep(delay)
    assert last is not None
    raise last


def _is_connection_error(exc: Exception) -> bool:
    import urllib3.exceptions

    return isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError | OSError)


# --- kind-agnostic calls ---------------------------------------------------------------


def get(resource: Resource, name: str, namespace: str | None = None) -> dict[str, Any]:
    """The object; :class:`ApiError` (``not_found``) if it does not exist."""
    out: dict[str, Any] = _request("GET", resource.path(namespace, name))
    return out


def get_or_none(
    resource: Resource, name: str, namespace: str | None = None
) -> dict[str, Any] | None:
    try:
        return get(resource, name, namespace)
    except ApiError as exc:
        if exc.not_found:
            return None
        raise


def labels_match(obj: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether ``obj`` carries every one of ``labels``."""
    have = (obj.get("metadata") or {}).get("labels") or {}
    return all(have.get(key) == value for key, value in labels.items())


def list_objects(
    resource: Resource,
    namespace: str | None = None,
    *,
    labels: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Every object of ``resource`` (in ``namespace``, or everywhere), in pages of 500.

    With ``labels`` the server is asked to filter (``labelSelector``) and the answer is
    filtered again here, so a server that ignores selectors cannot leak other objects in.
    """
    query: list[tuple[str, str]] = [("limit", "500")]
    if labels:
        query.append(("labelSelector", ",".join(f"{k}={v}" for k, v in sorted(labels.items()))))
    items: list[dict[str, Any]] = []
    token: str | None = None
    for _ in range(1000):
        page_query = [*query, ("continue", token)] if token else query
        body = _request("GET", resource.path(namespace), query=page_query)
        for item in body.get("items") or ():
            item.setdefault("apiVersion", resource.api_version)
            item.setdefault("kind", resource.kind)
            items.append(item)
        token = (body.get("metadata") or {}).get("continue") or None
        if not token:
            break
    if labels:
        items = [item for item in items if labels_match(item, labels)]
    return items


def create(
    resource: Resource, body: Mapping[str, Any], namespace: str | None = None
) -> dict[str, Any]:
    """Create ``body``; if an object of that name already exists, return it instead.

    Names are deterministic, so "already exists" means an earlier attempt (perhaps of an
    operator that restarted since) succeeded.
    """
    return create_if_absent(resource, body, namespace)[0]


def create_if_absent(
    resource: Resource, body: Mapping[str, Any], namespace: str | None = None
) -> tuple[dict[str, Any], bool]:
    """Like :func:`create`, and whether this call created the object (False: it existed)."""
    namespace = namespace or (body.get("metadata") or {}).get("namespace")
    try:
        out: dict[str, Any] = _request("POST", resource.path(namespace), body=dict(body))
        return out, True
    except ApiError as exc:
        name = (body.get("metadata") or {}).get("name")
        if not exc.already_exists or not name:
            raise
        logger.info("%s %s/%s already exists: kept", resource.kind, namespace, name)
        existing = get_or_none(resource, name, namespace)
        if existing is None:  # deleted in between: a real conflict, let the caller retry
            raise
        return existing, False


def patch(
    resource: Resource,
    name: str,
    namespace: str | None,
    changes: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    subresource: str | None = None,
    resource_version: str | None = None,
) -> dict[str, Any]:
    """A mapping is sent as a JSON merge patch (``None`` deletes a key), a sequence as a JSON
    patch (RFC 6902; e.g. with a ``test`` of ``/metadata/resourceVersion``).

    ``resource_version`` (merge patch only): apply only to that version of the object
    (optimistic concurrency); a newer one answers 409 Conflict, raised at once (retrying
    the same stale write cannot succeed: the caller reads again and decides again)."""
    path = resource.path(namespace, name)
    if subresource:
        path = f"{path}/{subresource}"
    if isinstance(changes, Mapping):
        body: Any = dict(changes)
        if resource_version is not None:
            metadata = dict(body.get("metadata") or {})
            metadata["resourceVersion"] = resource_version
            body["metadata"] = metadata
        content_type = MERGE_PATCH
    else:
        body = [dict(op) for op in changes]
        content_type = JSON_PATCH
    out: dict[str, Any] = _request(
        "PATCH",
        path,
        body=body,
        content_type=content_type,
        retry_conflicts=resource_version is None,
    )
    return out


def delete(
    resource: Resource,
    name: str,
    namespace: str | None = None,
    *,
    propagation: str = "Background",
) -> bool:
    """Delete the object and (with ``Background``/``Foreground``) its dependents;
    False if it was already gone."""
    body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
    try:
        _request(
            "DELETE", resource.path(namespace, name), body=body, content_type="application/json"
        )
    except ApiError as exc:
        if exc.not_found:
            return False
        raise
    return True


def owner_reference(owner: Mapping[str, Any], *, controller: bool = True) -> dict[str, Any]:
    """An ownerReference to ``owner`` (an object body as read from the API): the garbage
    collector deletes the dependent when the owner goes."""
    meta = owner.get("metadata") or {}
    if not meta.get("uid") or not meta.get("name"):
        raise ValueError("owner reference: the owner needs metadata.name and metadata.uid")
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


# --- status, one typed writer per kind --------------------------------------------------

StatusT = TypeVar("StatusT", bound=BaseModel)


class StatusFieldError(ValueError):
    """A status write named a field the kind's status does not have, or a wrong value."""


@dataclass(frozen=True)
class StatusApi(Generic[StatusT]):
    """Reads and writes the status of one kind, only via the ``status`` subresource."""

    resource: Resource
    model: type[StatusT]

    def _aliases(self) -> set[str]:
        return {f.alias or name for name, f in self.model.model_fields.items()}

    def check(self, changes: Mapping[str, Any]) -> None:
        """Raise :class:`StatusFieldError` for unknown fields or values of the wrong shape."""
        unknown = sorted(set(changes) - self._aliases())
        if unknown:
            raise StatusFieldError(
                f"{self.resource.kind} status has no field(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(self._aliases()))}"
            )
        present = {
            key: value for key, value in _json_safe(dict(changes)).items() if value is not None
        }
        try:
            self.model.model_validate(present)
        except ValidationError as exc:
            raise StatusFieldError(f"{self.resource.kind} status: {exc}") from exc

    def read(self, name: str, namespace: str | None) -> StatusT:
        """The current status (empty if the object has none yet)."""
        obj = get(self.resource, name, namespace)
        return self.model.model_validate(obj.get("status") or {})

    def write(
        self,
        name: str,
        namespace: str | None,
        changes: Mapping[str, Any] | StatusT,
        *,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """Merge ``changes`` into the status (a ``None`` value clears that field); the
        updated object. A model instance writes every field it has set. With
        ``resource_version``, only onto that version (see :func:`patch`)."""
        if isinstance(changes, BaseModel):
            data: dict[str, Any] = changes.model_dump(mode="json", by_alias=True, exclude_none=True)
        else:
            data = dict(changes)
        self.check(data)
        return patch(
            self.resource,
            name,
            namespace,
            {"status": data},
            subresource="status",
            resource_version=resource_version,
        )


PIPELINE_STATUS: Final = StatusApi(TRAINING_PIPELINES_RESOURCE, TrainingPipelineStatus)
RUN_STATUS: Final = StatusApi(TRAINING_RUNS_RESOURCE, TrainingRunStatus)
DEPLOYMENT_STATUS: Final = StatusApi(MODEL_DEPLOYMENTS_RESOURCE, ModelDeploymentStatus)
