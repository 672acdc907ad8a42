"""The test side's Kubernetes client: a thin async httpx wrapper over the emulator's API.

Resources are named as ``"group/version/plural"`` (``"batch/v1/jobs"``,
``"perennial.dev/v1alpha1/trainingruns"``) or ``"v1/plural"`` for the core group. Every call
goes over HTTP, so the operator sees the same watch events as it would for ``kubectl``.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import httpx
import kmock

from .deadlines import deadline

__all__ = ["ApiError", "KubeApi", "PostedEvent", "resource_path"]


class ApiError(Exception):
    """A non-2xx answer; ``status``/``reason``/``message`` come from the Kubernetes Status."""

    def __init__(self, method: str, url: str, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        self.reason = body.get("reason", "") if isinstance(body, dict) else ""
        self.message = body.get("message", "") if isinstance(body, dict) else str(body)
        super().__init__(f"{method} {url}: HTTP {status} {self.reason}: {self.message}")


@attrs.frozen
class PostedEvent:
    """One Kubernetes event about an object, from ``v1`` or ``events.k8s.io/v1``."""

    type: str
    reason: str
    message: str
    raw: dict[str, Any] = attrs.field(eq=False, repr=False)


def resource_path(resource: str, namespace: str | None = None, name: str | None = None) -> str:
    """The URL path of a collection or object (``name``) of ``resource``."""
    parsed = kmock.resource(resource)
    if parsed.version is None or parsed.plural is None:
        raise ValueError(
            f"resource {resource!r}: name it as 'group/version/plural' or 'v1/plural' "
            "(e.g. 'batch/v1/jobs', 'v1/pods')"
        )
    root = f"/apis/{parsed.group}/{parsed.version}" if parsed.group else f"/api/{parsed.version}"
    path = f"{root}/namespaces/{namespace}" if namespace else root
    path = f"{path}/{parsed.plural}"
    return f"{path}/{name}" if name else path


class KubeApi:
    """create/get/list/patch/patch_status/delete over HTTP, plus :meth:`events_for`."""

    def __init__(self, base_url: str, resolve: Callable[[str, str], str]) -> None:
        """``resolve(apiVersion, kind)`` returns the resource name (used by :meth:`create`)."""
        self._client = httpx.AsyncClient(base_url=base_url, timeout=deadline())
        self._resolve = resolve

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._client.request(method, path, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            raise ApiError(method, path, response.status_code, body)
        return body

    def resource_of(self, obj: Mapping[str, Any]) -> str:
        """The resource name of an object, from its ``apiVersion`` and ``kind``."""
        return self._resolve(obj["apiVersion"], obj["kind"])

    async def create(self, body: Mapping[str, Any], *, namespace: str | None = None) -> Any:
        """POST ``body``; the resource comes from its apiVersion/kind, the namespace from
        ``namespace=`` or ``metadata.namespace``."""
        resource = self.resource_of(body)
        namespace = namespace or body.get("metadata", {}).get("namespace")
        return await self._request("POST", resource_path(resource, namespace), json=dict(body))

    async def get(self, resource: str, name: str, namespace: str | None = None) -> Any:
        return await self._request("GET", resource_path(resource, namespace, name))

    async def get_or_none(self, resource: str, name: str, namespace: str | None = None) -> Any:
        """Like :meth:`get`, but ``None`` when the object does not exist."""
        try:
            return await self.get(resource, name, namespace)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(
        self, resource: str, namespace: str | None = None, *, label_selector: str = ""
    ) -> builtins.list[dict[str, Any]]:
        """All objects (of one namespace, or of all), or those matching ``label_selector``."""
        params = {"labelSelector": label_selector} if label_selector else None
        body = await self._request("GET", resource_path(resource, namespace), params=params)
        items: builtins.list[dict[str, Any]] = body["items"]
        return items

    async def patch(
        self,
        resource: str,
        name: str,
        namespace: str | None,
        patch: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        subresource: str | None = None,
    ) -> Any:
        """A dict is sent as a JSON merge patch, a list as a JSON patch."""
        path = resource_path(resource, namespace, name)
        if subresource:
            path = f"{path}/{subresource}"
        payload: dict[str, Any] | builtins.list[dict[str, Any]]
        if isinstance(patch, Mapping):
            content_type, payload = "application/merge-patch+json", dict(patch)
        else:
            content_type, payload = "application/json-patch+json", [dict(op) for op in patch]
        return await self._request(
            "PATCH", path, json=payload, headers={"Content-Type": content_type}
        )

    async def patch_status(
        self, resource: str, name: str, namespace: str | None, status: Mapping[str, Any]
    ) -> Any:
        """Merge ``status`` into the object's status through the ``/status`` subresource."""
        return await self.patch(
            resource, name, namespace, {"status": dict(status)}, subresource="status"
        )

    async def delete(self, resource: str, name: str, namespace: str | None = None) -> Any:
        return await self._request("DELETE", resource_path(resource, namespace, name))

    async def reread(self, obj: Mapping[str, Any]) -> Any:
        """The current state of ``obj`` (``None`` if it is gone)."""
        meta = obj["metadata"]
        return await self.get_or_none(self.resource_of(obj), meta["name"], meta.get("namespace"))

    async def events_for(self, obj: Mapping[str, Any]) -> builtins.list[PostedEvent]:
        """Events about ``obj`` (matched by uid), oldest first, from both event APIs."""
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        found: builtins.list[tuple[int, PostedEvent]] = []
        for item in await self.list("v1/events", namespace):
            if item.get("involvedObject", {}).get("uid") == meta["uid"]:
                event = PostedEvent(
                    type=item.get("type", ""),
                    reason=item.get("reason", ""),
                    message=item.get("message", ""),
                    raw=item,
                )
                found.append((int(item["metadata"]["resourceVersion"]), event))
        for item in await self.list("events.k8s.io/v1/events", namespace):
            if item.get("regarding", {}).get("uid") == meta["uid"]:
                event = PostedEvent(
                    type=item.get("type", ""),
                    reason=item.get("reason", ""),
                    message=item.get("note", ""),
                    raw=item,
                )
                found.append((int(item["metadata"]["resourceVersion"]), event))
        return [event for _, event in sorted(found, key=lambda pair: pair[0])]
