"""kmock's KubernetesEmulator, taught to behave like an API server on metadata.

kmock 0.8 stores objects and streams watch events, but leaves out what kopf and kubectl rely
on (see docs/testing.md): ``resourceVersion``, ``uid``, ``creationTimestamp``,
``generation``, names from ``generateName``, HTTP 422 for a failed JSON-patch ``test``, list
``kind``/``apiVersion``. This subclass adds them (the rules are in :mod:`.metadata`), plus:

- watches as on a real server: a watch from a ``resourceVersion`` replays what happened
  after it, so nothing is lost between kopf's LIST and its WATCH;
- the status subresource: the main endpoint keeps the stored status, ``/status`` keeps
  everything but the status; such dropped writes are recorded in :attr:`ignored_writes`;
- ``deletionTimestamp`` and finalizers: an object with finalizers is marked, and removed when
  its last finalizer goes;
- errors with the codes and reasons a real server answers (400, 404, 405, 409, 415, 422);
- server-side tables of custom resources (``kubectl get`` prints the printer columns);
- the field selectors a real server supports for every kind, or for events and pods
  (``metadata.name``, ``involvedObject.uid``, ...: exact equalities).

It applies label selectors (:mod:`.label_selectors`) and refuses what it cannot do
faithfully: other field selectors (HTTP 400 unless the test calls
:meth:`ApiServerEmulator.answer_selectors_unfiltered`), server-side
apply, subresources other than ``status``, collection deletes. It keeps no history of reads:
kmock matches every request against every request it has kept (quadratic: after a few
thousand requests each answer took ~0.2 s), so a request is forgotten once answered and only
writes are kept, in :attr:`ApiServerEmulator.writes`. It has no garbage collector
and no controllers: the test plays them (:mod:`.controllers`). kmock is pinned
(``kmock==0.8``): this class overrides kmock's ``_handle`` and ``_serve_*`` methods, which
are not public API.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextvars
import copy
import os
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any, Final

import aiohttp.web
import attrs
import httpx
import kmock

from .api_errors import api_error, describe
from .discovery import CRD_RESOURCE, api_version_of, crd_resources, read_crd_documents
from .field_selectors import FieldTerm, field_terms, matches
from .kube_api import KubeApi
from .label_selectors import LabelSelectorError, label_filter
from .metadata import (
    created_object,
    deletion_marked,
    is_released,
    timestamp,
    updated_object,
)
from .patches import patched_object
from .rbac import RbacCheck, is_operator, is_resource_request, user_agent
from .tables import printer_columns, render_table, wants_table

__all__ = ["ApiServerEmulator", "IgnoredWrite"]

WatchEvent = dict[str, Any]
ObjectKey = tuple[kmock.resource, str | None, str]

# The alphabet Kubernetes uses for generated name suffixes (no vowels, no look-alikes).
_SUFFIX_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"
_WRITES: Final = (kmock.method.POST, kmock.method.PATCH, kmock.method.PUT, kmock.method.DELETE)
_DROPPED: Final = {
    "create": "status in a create request (create, then write it to /status)",
    "main": "status written to the main endpoint (write it to /status)",
    "status": "non-status fields written to /status (write them to the main endpoint)",
}


@attrs.frozen
class IgnoredWrite:
    """A write a real API server silently drops; the emulator drops it too, and records it."""

    resource: str
    namespace: str | None
    name: str
    endpoint: str  # "create", "main" (PATCH/PUT of the object) or "status"
    detail: str


_ROUTING: Final[contextvars.ContextVar[kmock.Request | None]] = contextvars.ContextVar(
    "emulator_routing", default=None
)
"""The request the current task is answering (see :meth:`ApiServerEmulator.__iter__`)."""


@attrs.define
class _Feed:
    """Every watch event of one resource, in order, and a condition to wait for more."""

    events: list[tuple[int, WatchEvent]] = attrs.field(factory=list)
    grown: asyncio.Condition = attrs.field(factory=asyncio.Condition)


async def _more_events(feed: _Feed, position: int, timeout: float | None) -> bool:
    """Wait until the feed has events past ``position``; False if ``timeout`` ran out."""
    try:
        async with feed.grown:
            await asyncio.wait_for(
                feed.grown.wait_for(lambda: len(feed.events) > position), timeout
            )
    except TimeoutError:
        return False
    return True


@attrs.define
class _InjectedFailure:
    method: str
    resource: kmock.resource
    name: str | None
    subresource: str | None
    matching: Callable[[Any], bool] | None
    applied: bool
    status: int
    message: str
    remaining: int


@attrs.define(kw_only=True)
class ApiServerEmulator(kmock.KubernetesEmulator):
    """The emulator the integration tests run kopf against (see the module docstring)."""

    ignored_writes: list[IgnoredWrite] = attrs.field(factory=list, init=False)
    """Writes a real server would silently drop (the ``emulator`` fixture fails on them)."""

    selector_requests: list[str] = attrs.field(factory=list, init=False)
    """Every LIST/WATCH that carried a label or field selector (``METHOD path?query``)."""

    writes: list[kmock.Request] = attrs.field(factory=list, init=False)
    """Every write request (POST, PUT, PATCH, DELETE) received, in order, refused ones too."""

    operator_reads: list[tuple[str, str, str]] = attrs.field(factory=list, init=False)
    """Every read (``FETCH`` or ``LIST``, watches aside) the operator sent, as (action,
    ``group/version/plural``, user agent): kopf's LIST before each watch (agent ``kopf/``)
    and the reads the watches do not spare it (agent ``perennial/``)."""

    _selectors_unfiltered: bool = attrs.field(default=False, init=False)
    _revision: int = attrs.field(default=0, init=False)
    _names_generated: collections.Counter[str] = attrs.field(
        factory=collections.Counter, init=False
    )
    _state_lock: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False)
    _feeds: collections.defaultdict[kmock.resource, _Feed] = attrs.field(
        factory=lambda: collections.defaultdict(_Feed), init=False
    )
    # By the request object's id(): kmock numbers requests by how many it keeps, and it
    # keeps only the ones in flight here.
    _outcomes: dict[int, dict[str, Any]] = attrs.field(factory=dict, init=False)
    # The keys of every object ever stored, per resource, in order of first appearance: a
    # LIST or a watch's initial state reads one kind without scanning every stored object
    # (kmock keeps them all in one dict; at thousands of objects the scan dominated).
    _keys: collections.defaultdict[kmock.resource, dict[ObjectKey, None]] = attrs.field(
        factory=lambda: collections.defaultdict(dict), init=False
    )
    _custom_resources: set[kmock.resource] = attrs.field(factory=set, init=False)
    _columns: dict[kmock.resource, list[dict[str, Any]]] = attrs.field(factory=dict, init=False)
    _failures: list[_InjectedFailure] = attrs.field(factory=list, init=False)
    rbac: RbacCheck = attrs.field(factory=RbacCheck, init=False)
    """The shipped ClusterRole, enforced on the operator's requests (see :mod:`.rbac`)."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        with warnings.catch_warnings():  # kmock 0.8 uses a deprecated importlib.resources call
            warnings.simplefilter("ignore", DeprecationWarning)
            self.resources.load_bundled()
        # kmock has no action for PUT (replace): answer with the outcome from _handle().
        self.fallback[kmock.method.PUT] << self._serve_outcome
        # Watch streams as JSON (kmock's default, octet-stream, makes `kubectl get -w` fail);
        # this reaction ranks just above kmock's own watch fallback.
        json_stream: Any = kmock.headers({"Content-Type": "application/json"})
        (self.fallback**1)[kmock.action.WATCH] << json_stream << self._serve_watch

    # ----------------------------------------------------------------------------------
    # For tests

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running server."""
        return str(self.url).rstrip("/")

    @property
    def revision(self) -> int:
        """The latest ``resourceVersion`` handed out (monotonic, shared by all kinds)."""
        return self._revision

    def answer_selectors_unfiltered(self) -> None:
        """Let LIST/WATCH with field selectors the emulator does not apply (see
        :mod:`.field_selectors`) through, answered WITHOUT that filtering.

        By default such requests get HTTP 400: the emulator cannot filter, and an unfiltered
        answer would let a test pass where a real cluster returns fewer objects. Call this in
        a test that accepts unfiltered answers; the requests are still recorded in
        :attr:`selector_requests`.
        """
        self._selectors_unfiltered = True

    def fail_requests(
        self,
        method: str,
        resource: str,
        *,
        name: str | None = None,
        subresource: str | None = None,
        matching: Callable[[Any], bool] | None = None,
        applied: bool = False,
        status: int = 500,
        times: int = 1,
        message: str = "injected by the test",
    ) -> None:
        """Answer the next ``times`` matching requests with ``status``, changing nothing
        (``subresource``: only requests to it, e.g. ``status``; ``matching``: only requests
        whose decoded body it accepts). ``applied``: the write IS applied, only its answer
        is the error (a real server's 504 "may still be processing the request")."""
        self._failures.append(
            _InjectedFailure(
                method=method.upper(),
                resource=kmock.resource(resource),
                name=name,
                subresource=subresource,
                matching=matching,
                applied=applied,
                status=status,
                message=message,
                remaining=times,
            )
        )

    def internal_errors(self) -> list[Exception]:
        """Exceptions that were not deliberate API answers: emulator bugs, unsupported calls."""
        return [exc for exc in self.errors if not isinstance(exc, kmock.KubernetesError)]

    def live_objects(self, resource: str | kmock.resource | None = None) -> list[dict[str, Any]]:
        """Copies of the stored objects that exist (of one resource, or of all)."""
        wanted = kmock.resource(resource) if isinstance(resource, str) else resource
        if wanted is None:
            return [copy.deepcopy(obj.raw) for obj in self.objects.values() if not obj.deleted]
        return [copy.deepcopy(obj.raw) for _, obj in self.stored(wanted)]

    def kube_api(self, *, timeout: float | None = None) -> KubeApi:
        """A test client of this emulator (``timeout``: seconds per request, else the
        client's default); close it with ``aclose()``."""
        api = KubeApi(self.base_url, self.resource_path)
        if timeout is not None:
            api._client.timeout = httpx.Timeout(timeout)
        return api

    def resource_path(self, api_version: str, kind: str) -> str:
        """``group/version/plural`` of a kind (how :class:`KubeApi` names resources)."""
        resource = self.resource_for(api_version, kind)
        prefix = f"{resource.group}/" if resource.group else ""
        return f"{prefix}{resource.version}/{resource.plural}"

    def resource_for(self, api_version: str, kind: str) -> kmock.resource:
        """The resource (group/version/plural) serving ``kind`` in ``api_version``."""
        group, _, version = api_version.rpartition("/")
        for resource in self.resources:
            info = self.resources[resource]
            if (resource.group, resource.version, info.kind) == (group, version, kind):
                return resource
        raise LookupError(
            f"no resource serves kind {kind!r} in {api_version!r}: add its CRD with "
            "emulator.add_crd() or emulator.load_crds() first"
        )

    def info(self, resource: kmock.resource) -> kmock.ResourceInfo:
        """Discovery information of a served resource (an HTTP 404 error if unknown)."""
        if resource not in self.resources:
            raise api_error(
                404,
                "the server could not find the requested resource "
                f"({api_version_of(resource)} {resource.plural}); built-in kinds are bundled, "
                "add CRDs with emulator.add_crd()",
            )
        return self.resources[resource]

    async def add_crd(self, crd: Mapping[str, Any]) -> dict[str, Any]:
        """Create a CRD object and serve its resources (as ``kubectl apply`` of a CRD would)."""
        crd_resources(crd)  # raises CrdError, naming the field, before anything is stored
        async with self._state_lock:
            return await self._create(CRD_RESOURCE, None, crd)

    async def load_crds(
        self, paths: Iterable[str | os.PathLike[str]], *, skip_other_kinds: bool = False
    ) -> list[dict[str, Any]]:
        """:meth:`add_crd` for every CRD document in the given YAML files."""
        docs = read_crd_documents(paths, skip_other_kinds=skip_other_kinds)
        return [await self.add_crd(doc) for doc in docs]

    # ----------------------------------------------------------------------------------
    # Routing: writes change the state here, then kmock's router answers (user reactions
    # first, then the _serve_* fallbacks below)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if request.method in _WRITES:
            self.writes.append(request)
        elif request.action in (kmock.action.FETCH, kmock.action.LIST) and is_operator(request):
            res = request.resource
            path = "/".join(filter(None, (res.group, res.version, res.plural))) if res else ""
            self.operator_reads.append(
                (request.action.value.upper(), path or str(request.url), user_agent(request))
            )
        routing = _ROUTING.set(request)
        try:
            return await self._answer(request)
        finally:
            _ROUTING.reset(routing)
            self._forget(request)

    def __iter__(self) -> Iterator[kmock.Request]:
        # kmock routes a request by asking each reaction whether its view of this server's
        # requests contains it, and such a view walks every request in flight (each watch
        # stays in flight for its whole life). While a request is routed (in the task that
        # serves it), the server shows that request alone: the same answer, in constant
        # time instead of a time that grew with the number of concurrent requests.
        current = _ROUTING.get()
        if current is None:
            yield from super().__iter__()
        else:
            yield current

    def _forget(self, request: kmock.Request) -> None:
        """Drop an answered request from kmock's history (and its reactions' lists)."""
        for kept in (self._requests, *(payload._requests for payload in self._payloads)):
            for i in range(len(kept) - 1, -1, -1):
                if kept[i] is request:
                    del kept[i]
                    break

    async def _answer(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if request.resource is not None:
            if is_resource_request(request) and is_operator(request):
                refused = self.rbac.forbidden(request)
            else:
                refused = None
            if refused is not None:
                raise api_error(403, refused)
            failure = self._injected_failure(request)
            if failure is not None and not failure.applied:
                raise api_error(failure.status, failure.message)
            if request.method in _WRITES:
                async with self._state_lock:
                    self._outcomes[id(request)] = await self._write(request)
            if failure is not None:  # applied; the answer is lost
                self._outcomes.pop(id(request), None)
                raise api_error(failure.status, failure.message)
        try:
            # Not super()._handle(): kmock's own would store the write a second time.
            return await kmock.RawHandler._handle(self, request)
        finally:
            self._outcomes.pop(id(request), None)

    def _injected_failure(self, request: kmock.Request) -> _InjectedFailure | None:
        for failure in self._failures:
            if (
                failure.remaining > 0
                and failure.method == request.method.value
                and failure.resource == request.resource
                and failure.name in (None, request.name)
                and failure.subresource in (None, request.subresource)
                and (failure.matching is None or failure.matching(request.data))
            ):
                failure.remaining -= 1
                return failure
        return None

    async def _write(self, request: kmock.Request) -> dict[str, Any]:
        resource = request.resource
        assert resource is not None
        info = self.info(resource)
        namespace = request.namespace
        if info.namespaced and namespace is None:
            raise api_error(
                405 if request.name is None else 404,
                f"{describe(resource)} is namespaced: use /namespaces/{{namespace}}/ in the URL",
            )
        if not info.namespaced and namespace is not None:
            raise api_error(404, f"{describe(resource)} is cluster-scoped: drop the namespace")
        if request.method == kmock.method.POST:
            if request.name is not None:
                raise api_error(405, f"POST to {request.url.path} is not emulated")
            return await self._create(resource, namespace, request.data)
        if request.name is None:
            raise api_error(
                405, f"{request.method.value} of a collection is not emulated: act on each object"
            )
        if request.subresource not in (None, "status") or (
            request.subresource == "status" and "status" not in info.subresources
        ):
            raise api_error(
                404,
                f"subresource {request.subresource!r} of {describe(resource)} is not emulated "
                "(only 'status', for kinds that have it)",
            )
        key: ObjectKey = (resource, namespace, request.name)
        if request.method == kmock.method.DELETE:
            if request.subresource is not None:
                raise api_error(405, "DELETE of a subresource is not allowed")
            return await self._delete(key)
        current = self._live(key)
        if request.method == kmock.method.PUT:
            if not isinstance(request.data, dict):
                raise api_error(400, "the body of a PUT must be a JSON object")
            new, replaced = copy.deepcopy(request.data), True
        else:
            content_type = next(
                (v for k, v in request.headers.items() if k.lower() == "content-type"), ""
            )
            custom = resource in self._custom_resources
            new = patched_object(current, content_type, request.data, custom_resource=custom)
            replaced = False
        return await self._update(key, current, new, request.subresource, replaced=replaced)

    # ----------------------------------------------------------------------------------
    # kmock's fallbacks: discovery, the answers to writes, and the reading endpoints

    async def _serve_version(self, request: kmock.Request) -> kmock.Payload:
        # kmock names the core group "/v1" (kubectl then finds no core kind), and copies short
        # names and categories onto subresources ("jobs/status"): kubectl warns on every
        # short name and fails `kubectl get all`.
        answer = await super()._serve_version(request)
        if isinstance(answer, dict):
            answer["groupVersion"] = str(answer.get("groupVersion", "")).removeprefix("/")
            for entry in answer.get("resources", []):
                if "/" in entry["name"]:
                    entry.update(singularName="", shortNames=[], categories=[])
                    entry["verbs"] = ["get", "patch", "update"]
        return answer

    async def _serve_outcome(self, request: kmock.Request) -> kmock.Payload:
        return self._outcomes[id(request)]

    _serve_create = _serve_update = _serve_delete = _serve_outcome

    async def _serve_fetch(self, request: kmock.Request) -> kmock.Payload:
        resource = request.resource
        assert resource is not None and request.name is not None
        info = self.info(resource)
        if request.subresource not in (None, "status"):
            raise api_error(
                404, f"GET of subresource {request.subresource!r} is not emulated (no logs, scale)"
            )
        namespace = request.namespace if info.namespaced else None
        async with self._state_lock:
            obj = self._live((resource, namespace, request.name))
            revision = str(self._revision)
        return self._as_table(request, [obj], revision) or obj

    async def _serve_list(self, request: kmock.Request) -> kmock.Payload:
        resource = request.resource
        assert resource is not None
        info = self.info(resource)
        selected = self._selection(request)
        async with self._state_lock:
            items = [
                copy.deepcopy(obj.raw)
                for (_, namespace, _), obj in self.stored(resource)
                if request.namespace in (None, namespace) and selected(obj.raw)
            ]
            revision = str(self._revision)
        items.sort(
            key=lambda item: (item["metadata"].get("namespace", ""), item["metadata"]["name"])
        )
        return self._as_table(request, items, revision) or {
            "apiVersion": api_version_of(resource),
            "kind": f"{info.kind}List",
            "metadata": {"resourceVersion": revision},
            "items": items,
        }

    def _as_table(
        self, request: kmock.Request, objects: list[dict[str, Any]], revision: str
    ) -> dict[str, Any] | None:
        columns = self._columns.get(request.resource) if request.resource else None
        if columns is None or not wants_table(request.headers):
            return None
        include = request.params.get("includeObject", "Metadata")
        return render_table(objects, columns, resource_version=revision, include_object=include)

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[kmock.Payload]:
        resource = request.resource
        assert resource is not None
        self.info(resource)
        selected = self._selection(request)
        since = request.params.get("resourceVersion") or "0"
        initial = request.params.get("sendInitialEvents") == "true"
        if not since.isdigit():
            raise api_error(400, f"resourceVersion {since!r} is not a resource version")
        timeout = request.params.get("timeoutSeconds", "")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + int(timeout) if timeout.isdigit() else None

        # The backlog and the position in the feed are taken together: nothing is lost.
        async with self._state_lock:
            feed = self._feeds[resource]
            position = len(feed.events)
            backlog: list[WatchEvent]
            if since == "0" or initial:
                # "Most recent" (or "any"): the current state, as synthetic ADDED events.
                backlog = [
                    {"type": "ADDED", "object": copy.deepcopy(obj.raw)}
                    for _, obj in self.stored(resource)
                ]
            else:
                # The feed is in resourceVersion order: start after `since` without a scan.
                start = bisect.bisect_right(feed.events, int(since), key=lambda e: e[0])
                backlog = [copy.deepcopy(event) for _, event in feed.events[start:]]
            if initial:
                end = {"k8s.io/initial-events-end": "true"}
                meta = {"resourceVersion": str(self._revision), "annotations": end}
                bookmark: WatchEvent = {"type": "BOOKMARK", "object": {"metadata": meta}}

        def wanted(event: WatchEvent) -> bool:
            namespace = event["object"].get("metadata", {}).get("namespace")
            return request.namespace in (None, namespace) and selected(event["object"])

        yield b""  # send the headers now, even if nothing happens for a while
        for event in backlog:
            if wanted(event):
                yield event
        if initial:
            yield bookmark
        while True:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return  # timeoutSeconds: the server ends the watch, the client re-watches
            if not await _more_events(feed, position, remaining):
                return
            for _, event in feed.events[position:]:
                if wanted(event):
                    yield copy.deepcopy(event)
            position = len(feed.events)

    def _selection(self, request: kmock.Request) -> Callable[[Mapping[str, Any]], bool]:
        """The filter of a LIST/WATCH: label selectors and the field selectors a real server
        supports are applied exactly (:mod:`.label_selectors`, :mod:`.field_selectors`);
        other field selectors are refused (HTTP 400) unless the test accepts unfiltered
        answers."""
        labels = request.params.get("labelSelector", "")
        fields = request.params.get("fieldSelector", "")
        if not labels and not fields:
            return lambda obj: True
        self.selector_requests.append(f"{request.method.value} {request.url.path_qs}")
        assert request.resource is not None
        try:
            by_labels = label_filter(labels)
        except LabelSelectorError as exc:
            raise api_error(400, f"labelSelector {labels!r}: {exc}") from None
        terms: list[FieldTerm] | None = field_terms(fields, request.resource) if fields else []
        if terms is None and not self._selectors_unfiltered:
            raise api_error(
                400,
                f"the emulator does not filter by this field selector ({fields!r} on "
                f"{request.url.path}): a real API server would return fewer objects. Filter "
                "client-side (e.g. by ownerReferences), or call "
                "emulator.answer_selectors_unfiltered() in a test that accepts unfiltered "
                "answers",
            )
        exact = terms or []
        return lambda obj: by_labels(obj) and matches(obj, exact)

    # ----------------------------------------------------------------------------------
    # State changes (called with _state_lock held)

    def stored(self, resource: kmock.resource) -> Iterator[tuple[ObjectKey, Any]]:
        """The stored objects of one resource that exist: kmock's views, not copies (read
        only; for the benchmark and the emulator itself)."""
        for key in self._keys.get(resource, ()):
            obj = self.objects[key]
            if not obj.deleted:
                yield key, obj

    def _live(self, key: ObjectKey) -> dict[str, Any]:
        if key not in self.objects or self.objects[key].deleted:
            resource, _, name = key
            raise api_error(404, f'{describe(resource)} "{name}" not found')
        return copy.deepcopy(self.objects[key].raw)

    def _generated_name(self, prefix: str) -> str:
        # Deterministic, unlike a real server: a counter per prefix, written in the alphabet
        # of Kubernetes' random suffixes (the first Pod of Job "x" is "x-bbbbc").
        self._names_generated[prefix] += 1
        number, suffix = self._names_generated[prefix], ""
        for _ in range(5):
            number, digit = divmod(number, len(_SUFFIX_ALPHABET))
            suffix = _SUFFIX_ALPHABET[digit] + suffix
        return prefix + suffix

    async def _store(self, key: ObjectKey, event: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Give ``obj`` the next resourceVersion, store it, and tell the watchers."""
        resource = key[0]
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)
        if key not in self.objects:
            self.objects[key] = obj
            self._keys[resource][key] = None
        elif self.objects[key].deleted:
            self.objects[key].create(obj)
        else:
            self.objects[key].history.append(obj)
        if event == "DELETED":
            self.objects[key].delete()
        feed = self._feeds[resource]
        feed.events.append((self._revision, {"type": event, "object": copy.deepcopy(obj)}))
        async with feed.grown:
            feed.grown.notify_all()
        return copy.deepcopy(obj)

    def _record_dropped(self, key: ObjectKey, endpoint: str) -> None:
        resource, namespace, name = key
        self.ignored_writes.append(
            IgnoredWrite(
                resource=f"{api_version_of(resource)}/{resource.plural}",
                namespace=namespace,
                name=name,
                endpoint=endpoint,
                detail=_DROPPED[endpoint],
            )
        )

    async def _create(
        self, resource: kmock.resource, namespace: str | None, body: Any
    ) -> dict[str, Any]:
        info = self.info(resource)
        obj, status_dropped = created_object(
            body,
            resource=resource,
            info=info,
            namespace=namespace,
            generate_name=self._generated_name,
        )
        key: ObjectKey = (resource, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        if key in self.objects and not self.objects[key].deleted:
            raise api_error(
                409, f'{describe(resource)} "{key[2]}" already exists', reason="AlreadyExists"
            )
        if status_dropped:
            self._record_dropped(key, "create")
        if resource == CRD_RESOURCE:
            self._serve_crd(obj)
        return await self._store(key, "ADDED", obj)

    async def _update(
        self,
        key: ObjectKey,
        current: dict[str, Any],
        new: dict[str, Any],
        subresource: str | None,
        *,
        replaced: bool,
    ) -> dict[str, Any]:
        resource = key[0]
        update = updated_object(
            current,
            new,
            resource=resource,
            info=self.info(resource),
            subresource=subresource,
            replaced=replaced,
        )
        if update.dropped:
            self._record_dropped(key, update.dropped)
        if update.result == current:
            return update.result  # a no-op: no new resourceVersion, no watch event
        if resource == CRD_RESOURCE:
            self._serve_crd(update.result)
        released = is_released(update.result)
        return await self._store(key, "DELETED" if released else "MODIFIED", update.result)

    async def _delete(self, key: ObjectKey) -> dict[str, Any]:
        current = self._live(key)
        if current["metadata"].get("deletionTimestamp"):
            return current  # already marked: waiting for its finalizers
        if current["metadata"].get("finalizers"):
            return await self._store(key, "MODIFIED", deletion_marked(current))
        return await self._store(key, "DELETED", current)

    def _serve_crd(self, crd: dict[str, Any]) -> None:
        """Serve the CRD's resources and set the status the apiextensions controller would."""
        try:
            served = crd_resources(crd)
        except ValueError as exc:
            raise api_error(422, str(exc)) from exc
        spec = crd["spec"]
        for resource, info in served.items():
            self.resources[resource] = info
            self._custom_resources.add(resource)
        for version in spec["versions"]:
            resource = kmock.resource(spec["group"], version["name"], spec["names"]["plural"])
            if resource in served:
                self._columns[resource] = printer_columns(version)
        conditions = (
            ("NamesAccepted", "NoConflicts", "no conflicts found"),
            ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        )
        crd["status"] = {
            "acceptedNames": dict(crd["spec"]["names"]),
            "storedVersions": [v["name"] for v in crd["spec"]["versions"] if v.get("storage")],
            "conditions": [
                {
                    "type": kind,
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": timestamp(),
                }
                for kind, reason, message in conditions
            ],
        }
