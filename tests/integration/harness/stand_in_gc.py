"""The garbage collector, played by the test when it says so (the emulator has none)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .kube_api import ApiError
from .stand_in_shapes import StandIn

__all__ = ["GarbageCollectorStandIn"]


class GarbageCollectorStandIn(StandIn):
    """``collect_garbage`` / ``cascade_delete``: owner-reference cleanup, on demand."""

    async def collect_garbage(self) -> list[str]:
        """Delete every object whose owners are all gone, until none is left (background
        propagation). Returns ``resource/namespace/name`` of what was deleted."""
        deleted: list[str] = []
        while True:
            objects = self._emulator.live_objects()
            uids = {obj["metadata"]["uid"] for obj in objects}
            orphans = [
                obj
                for obj in objects
                if obj["metadata"].get("ownerReferences")
                and not obj["metadata"].get("deletionTimestamp")
                and all(ref.get("uid") not in uids for ref in obj["metadata"]["ownerReferences"])
            ]
            if not orphans:
                return deleted
            for obj in orphans:
                resource = self._api.resource_of(obj)
                meta = obj["metadata"]
                try:
                    await self._api.delete(resource, meta["name"], meta.get("namespace"))
                except ApiError as exc:
                    if exc.status != 404:
                        raise
                deleted.append(f"{resource}/{meta.get('namespace') or ''}/{meta['name']}")

    async def cascade_delete(self, obj: Mapping[str, Any]) -> list[str]:
        """Delete ``obj``, then :meth:`collect_garbage` (its dependents go once it is gone;
        while finalizers hold it, they stay, as with background propagation)."""
        meta = obj["metadata"]
        await self._api.delete(self._api.resource_of(obj), meta["name"], meta.get("namespace"))
        return await self.collect_garbage()
