"""API faults for the chaos suite (issue #13, part 2): what a real API server does to a
client on a bad day, injected at seeded random into the operator's requests.

- ``500``: an internal error, nothing changed;
- ``429``: throttled by API Priority and Fairness, with ``Retry-After: 1``;
- ``409``: a conflict on a status write (``.../status``), nothing changed;
- ``slow``: the write is applied but the answer comes after the client's read timeout
  (the operator's own client; its timeout is shortened for the suite, see
  :mod:`bench.chaos.operator_process`), so the client retries a write that happened;
- ``drop``: a watch stream ends early (the server closed it);
- ``gone``: a watch resumed from a resourceVersion is answered with an ``ERROR`` event, code
  410 (``Expired``: the version is too old), as a real server does; the client relists.

Each 429 is remembered with when it was answered; the next request of the same client to
the same method and path must come no sooner than ``Retry-After`` (:attr:`early_retries`).
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp.web
import kmock
from tests.integration.harness.api_errors import api_error
from tests.integration.harness.rbac import is_operator, user_agent

from bench.chaos.cluster import WRITES, ChaosEmulator

RETRY_AFTER_SECONDS: Final = 1
# The operator's own client read timeout in the suite (seconds), and how late a slow answer is.
READ_TIMEOUT: Final = 2.0
SLOW_BY: Final = READ_TIMEOUT + 1.0
OWN_CLIENT: Final = "perennial/"
WEIGHTS: Final = {"500": 3, "429": 2, "409": 2, "slow": 2}


@dataclass
class FaultPlan:
    """Seeded choices: a request gets a fault with probability ``rate`` (watch requests
    with ``watch_rate``), of a kind that applies to it."""

    seed: int
    rate: float
    watch_rate: float
    _random: random.Random = field(init=False)
    injected: collections.Counter[str] = field(default_factory=collections.Counter)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def for_request(self, request: kmock.Request, own_client: bool) -> str | None:
        if self._random.random() >= self.rate:
            return None
        kinds = ["500", "429"]
        if request.method.value.upper() in WRITES and request.subresource == "status":
            kinds.append("409")
        if own_client and request.method.value.upper() in WRITES:
            kinds.append("slow")
        kind = self._random.choices(kinds, weights=[WEIGHTS[k] for k in kinds])[0]
        self.injected[kind] += 1
        return kind

    def for_watch(self, resumed: bool) -> str | None:
        if self._random.random() >= self.watch_rate:
            return None
        kind = "gone" if resumed and self._random.random() < 0.5 else "drop"
        self.injected[kind] += 1
        return kind

    def drop_after(self) -> int:
        return self._random.randint(0, 5)


class FaultEmulator(ChaosEmulator):
    """The chaos emulator, injecting :class:`FaultPlan`'s faults into operator requests."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.faults: FaultPlan | None = None
        # (client, method, path, body) of a request answered 429 -> when it may come again
        self.throttled: dict[tuple[str, str, str, str], float] = {}
        self.early_retries: list[str] = []
        self.retries_after_429: list[float] = []  # seconds from the 429 to the retry

    async def _handle(self, request: kmock.Request) -> Any:
        plan = self.faults
        if plan is None or not is_operator(request) or request.resource is None:
            return await super()._handle(request)
        agent = user_agent(request)
        # A retry is the same request again (a new event to the same path is not one).
        body = json.dumps(request.data, sort_keys=True, default=str)
        key = (agent.split("/")[0], request.method.value.upper(), request.url.path_qs, body)
        due = self.throttled.pop(key, None)
        if due is not None:
            waited = time.monotonic() - (due - RETRY_AFTER_SECONDS)
            self.retries_after_429.append(waited)
            if time.monotonic() < due:
                self.early_retries.append(f"{key[:3]}: retried after {waited:.2f}s")
        if request.action == kmock.action.WATCH:
            return await super()._handle(request)
        kind = plan.for_request(request, own_client=agent.startswith(OWN_CLIENT))
        if kind is None:
            return await super()._handle(request)
        if kind == "500":
            raise api_error(500, "injected: internal error")
        if kind == "409":
            raise api_error(409, "injected: the object has been modified", reason="Conflict")
        if kind == "429":
            self.throttled[key] = time.monotonic() + RETRY_AFTER_SECONDS
            status = api_error(429, "injected: too many requests, please try again later")
            return aiohttp.web.json_response(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "message": str(status),
                    "reason": "TooManyRequests",
                    "code": 429,
                },
                status=429,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        answer = await super()._handle(request)  # "slow": applied, answered too late
        await asyncio.sleep(SLOW_BY)
        return answer

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[kmock.Payload]:
        plan = self.faults
        resumed = (request.params.get("resourceVersion") or "0") != "0"
        kind = plan.for_watch(resumed) if plan is not None and is_operator(request) else None
        if kind == "gone":
            yield b""
            yield {
                "type": "ERROR",
                "object": {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "message": "too old resource version (injected)",
                    "reason": "Expired",
                    "code": 410,
                },
            }
            return
        left = plan.drop_after() if kind == "drop" and plan is not None else None
        async for item in super()._serve_watch(request):
            yield item
            if left is not None and item != b"":
                left -= 1
                if left < 0:
                    return  # the server closed the stream early
