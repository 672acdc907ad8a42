"""HTTP limits uvicorn's httptools protocol does not enforce: header size, read time, connections.

What the stack offers (uvicorn 0.55, httptools 0.9, h11 0.16), checked before writing this:

- uvicorn: ``timeout_keep_alive`` (idle time *between* requests; we keep its 5 s) and
  ``limit_concurrency`` (answers 503 to each request over the limit, *after* reading its
  headers, and keeps the connection: it bounds work, not connections or memory);
- h11: ``max_incomplete_event_size`` bounds the header block, but h11 is 3-4x slower than
  httptools here (docs/serving.md, "HTTP stack"); httptools (llhttp) has no header limit,
  and neither has a header or body read timeout.

So the server runs :class:`GuardedHttpToolsProtocol`, uvicorn's httptools protocol with:

- **header size**: more than ``max_header_bytes`` before the end of the header block is a
  ``431`` and the connection is closed (bytes are counted as they arrive, so a 64 MiB
  header costs at most the limit plus one read);
- **header read time**: the header block must be complete ``header_timeout`` seconds
  after the connection opens or the request's first byte arrives, else ``408`` and close
  (a client sending a byte a second is dropped);
- **body read time**: the body must be complete ``body_timeout`` seconds after the
  headers, else ``408`` and close;
- **connections**: a connection beyond ``max_connections`` open ones gets ``503`` with
  ``Retry-After`` and is closed at once.

The body deadline runs from the end of the headers, also while a pipelined request waits
for the one before it (uvicorn stops reading then): a pipelined request with a body
behind a prediction slower than ``body_timeout`` is refused. Clients rarely pipeline.

These answers are written by the protocol: they never reach the app, so they are not
counted as requests (or model errors) in ``/metrics``; each is logged (at most one line per
kind every ``LOG_EVERY_SECONDS``, with a count).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from perennial_runtime.serve.config import ServeConfig

log = logging.getLogger("perennial_runtime.serve")

LOG_EVERY_SECONDS = 10.0
# uvicorn.Config(http=...) takes an import string (also what the CLI and worker processes use).
PROTOCOL = "perennial_runtime.serve.http_limits:GuardedHttpToolsProtocol"


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int = 32 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 256

    @classmethod
    def of(cls, config: ServeConfig) -> HttpLimits:
        return cls(
            max_header_bytes=config.max_header_bytes,
            header_timeout=config.header_timeout,
            body_timeout=config.body_timeout,
            max_connections=config.max_connections,
        )


class _RefusalLog:
    """One log line per kind of refusal at most every ``LOG_EVERY_SECONDS``."""

    def __init__(self) -> None:
        self._last: dict[int, float] = {}
        self._suppressed: dict[int, int] = {}

    def note(self, status: int, message: str) -> None:
        now = time.monotonic()
        last = self._last.get(status)
        if last is not None and now - last < LOG_EVERY_SECONDS:
            self._suppressed[status] = self._suppressed.get(status, 0) + 1
            return
        self._last[status] = now
        more = self._suppressed.pop(status, 0)
        suffix = f" (and {more} more since the last line)" if more else ""
        log.warning("HTTP %d: %s%s", status, message, suffix)


_refusals = _RefusalLog()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus :class:`HttpLimits` (from the app's ``config``, a
    :class:`ServeConfig`; the defaults for any other app)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        served = getattr(self.app, "config", None)  # ServingApp.config
        self.limits = HttpLimits.of(served) if isinstance(served, ServeConfig) else HttpLimits()
        self._deadline: asyncio.TimerHandle | None = None
        self._in_headers = True  # between requests or inside a header block
        self._header_bytes = 0

    # --- connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(
                503,
                f"the server has {self.limits.max_connections} connections open, its limit "
                "(--max-connections); retry shortly",
                [(b"retry-after", b"1")],
            )
            return
        self._arm(self.limits.header_timeout, self._header_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        counted = self._in_headers
        if counted:
            self._header_bytes += len(data)
        super().data_received(data)
        if counted and self._in_headers and self._header_bytes > self.limits.max_header_bytes:
            self._refuse(
                431,
                f"the request headers exceed {self.limits.max_header_bytes} bytes "
                "(--max-header-bytes)",
            )

    # --- parser callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a keep-alive connection's next request
            self._arm(self.limits.header_timeout, self._header_timed_out)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._arm(self.limits.body_timeout, self._body_timed_out)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_headers = True
        self._header_bytes = 0
        super().on_message_complete()

    # --- deadlines ------------------------------------------------------------------------

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _header_timed_out(self) -> None:
        self._deadline = None
        self._refuse(
            408,
            f"the request headers were not complete within {self.limits.header_timeout:g}s "
            "(--header-timeout)",
        )

    def _body_timed_out(self) -> None:
        self._deadline = None
        self._refuse(
            408,
            f"the request body was not complete within {self.limits.body_timeout:g}s of the "
            "headers (--body-timeout)",
        )

    # --- answering ------------------------------------------------------------------------

    def _refuse(
        self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        """Answer ``status`` (unless a response has started) and close the connection."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._disarm()
        _refusals.note(status, message)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # the app (if it runs) sees a disconnect: its receive() and send() stop
            cycle.disconnected = True
            cycle.message_event.set()
            if cycle.response_started:
                transport.close()
                return
        body = orjson.dumps({"error": message})
        head = [STATUS_LINE[status]]
        for name, value in [
            *self.server_state.default_headers,
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
            *(headers or []),
        ]:
            head += [name, b": ", value, b"\r\n"]
        transport.write(b"".join([*head, b"\r\n", body]))
        transport.close()
