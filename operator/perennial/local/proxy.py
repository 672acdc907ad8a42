"""The stable local endpoint: a small reverse proxy on a fixed loopback port.

It plays the part of the Kubernetes Service in front of the serving pods. The runner
points it at model servers (``set_routes``); a new server gets traffic only once the
runner has seen it ready and its smoke test pass, and the old one keeps answering the
requests already sent to it (``inflight``) before it is stopped, so a rollout or a
rollback drops no request.

Routing: a request carrying ``x-perennial-backend: KEY`` (the value of the same header on
an earlier response) goes to that server while it is still attached, so feedback reaches
the server that made the prediction; everything else goes to the canary for
``canary_weight`` percent of requests (spread evenly, not at random) and to the stable
server otherwise. With no server yet the answer is 503 with a JSON error.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("perennial.local.proxy")

BACKEND_HEADER = "x-perennial-backend"
UPSTREAM_TIMEOUT = 30.0
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "server",
        "date",
    }
)


@dataclass(frozen=True)
class Backend:
    """One model server behind the endpoint."""

    key: str  # unique per server process, e.g. "demo-00002@41233"
    host: str
    port: int
    run: str


@dataclass
class BackendStats:
    requests: int = 0
    failures: int = 0
    inflight: int = 0


@dataclass(frozen=True)
class EndpointStats:
    requests: int
    failures: int  # 5xx answers and upstream errors the endpoint returned
    unrouted: int  # 503s because no server was attached yet


class StableEndpoint:
    """A threaded reverse proxy whose routes can be switched atomically."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._attached: dict[str, Backend] = {}
        self._stats: dict[str, BackendStats] = {}
        self._stable: Backend | None = None
        self._canary: Backend | None = None
        self._canary_weight = 0
        self._counter = 0
        self._requests = 0
        self._failures = 0
        self._unrouted = 0
        self._local = threading.local()
        endpoint = self

        class Handler(_ProxyHandler):
            proxy = endpoint

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> StableEndpoint:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.2},
                name=f"endpoint-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    # --- routes --------------------------------------------------------------------------

    def attach(self, backend: Backend) -> None:
        """Make a server reachable by its key (pinned requests) without routing to it."""
        with self._lock:
            self._attached[backend.key] = backend
            self._stats.setdefault(backend.key, BackendStats())

    def set_routes(
        self, stable: Backend | None, canary: Backend | None = None, canary_weight: int = 0
    ) -> None:
        """Route new requests: ``canary_weight`` percent to ``canary``, the rest to stable."""
        with self._lock:
            for backend in (stable, canary):
                if backend is not None:
                    self._attached[backend.key] = backend
                    self._stats.setdefault(backend.key, BackendStats())
            self._stable = stable
            self._canary = canary if canary_weight > 0 else None
            self._canary_weight = max(0, min(100, canary_weight)) if canary else 0

    def detach(self, key: str) -> None:
        """Forget a server (it is about to be stopped); it must not be routed to."""
        with self._lock:
            if (self._stable and self._stable.key == key) or (
                self._canary and self._canary.key == key
            ):
                raise ValueError(f"backend {key} still receives traffic; re-route first")
            self._attached.pop(key, None)

    def routes(self) -> tuple[Backend | None, Backend | None, int]:
        with self._lock:
            return self._stable, self._canary, self._canary_weight

    def inflight(self, key: str) -> int:
        with self._lock:
            stats = self._stats.get(key)
            return stats.inflight if stats else 0

    def backend_stats(self, key: str) -> BackendStats:
        with self._lock:
            stats = self._stats.get(key, BackendStats())
            return BackendStats(stats.requests, stats.failures, stats.inflight)

    def stats(self) -> EndpointStats:
        with self._lock:
            return EndpointStats(self._requests, self._failures, self._unrouted)

    # --- used by the handler -------------------------------------------------------------

    def _choose(self, pinned: str | None) -> Backend | None:
        with self._lock:
            self._requests += 1
            backend: Backend | None = None
            if pinned and pinned in self._attached:
                backend = self._attached[pinned]
            elif self._canary is not None and self._canary_weight > 0:
                # Even spread: request n goes to the canary when the running share of
                # canary requests would otherwise fall below the weight.
                self._counter += 1
                before = (self._counter - 1) * self._canary_weight // 100
                after = self._counter * self._canary_weight // 100
                backend = self._canary if after > before else self._stable
            else:
                backend = self._stable
            if backend is None:
                self._unrouted += 1
                return None
            stats = self._stats.setdefault(backend.key, BackendStats())
            stats.inflight += 1
            stats.requests += 1
            return backend

    def _done(self, backend: Backend, failed: bool) -> None:
        with self._lock:
            stats = self._stats.setdefault(backend.key, BackendStats())
            stats.inflight -= 1
            if failed:
                stats.failures += 1
                self._failures += 1

    def _connection(self, backend: Backend, fresh: bool) -> http.client.HTTPConnection:
        pool: dict[str, http.client.HTTPConnection] | None = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        conn = pool.get(backend.key)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = _NoDelayConnection(backend.host, backend.port, timeout=UPSTREAM_TIMEOUT)
            pool[backend.key] = conn
        return conn

    def forward(
        self, backend: Backend, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send one request upstream; a stale keep-alive connection is retried once."""
        last: Exception | None = None
        for attempt in range(2):
            conn = self._connection(backend, fresh=attempt > 0)
            try:
                conn.request(method, path, body=body or None, headers=headers)
                response = conn.getresponse()
                data = response.read()
                return response.status, response.getheaders(), data
            except (OSError, http.client.HTTPException) as exc:
                last = exc
                conn.close()
        raise ConnectionError(f"model server {backend.key} unreachable: {last}")


class _NoDelayConnection(http.client.HTTPConnection):
    """Small requests and answers go out at once (no Nagle / delayed-ACK stalls)."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _ProxyHandler(BaseHTTPRequestHandler):
    proxy: StableEndpoint
    protocol_version = "HTTP/1.1"
    server_version = "perennial-local"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _reply(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        backend = self.proxy._choose(self.headers.get(BACKEND_HEADER))
        if backend is None:
            payload = {"error": "no model is being served yet: waiting for a blessed model"}
            self._reply(503, json.dumps(payload).encode(), [("Content-Type", "application/json")])
            return
        forwarded = {
            k: v
            for k, v in self.headers.items()
            if k.lower() not in _HOP_BY_HOP and k.lower() not in {"host", BACKEND_HEADER}
        }
        failed = True
        try:
            status, upstream_headers, data = self.proxy.forward(
                backend, self.command, self.path, forwarded, body
            )
            failed = status >= 500
        except ConnectionError as exc:
            status, upstream_headers = 502, [("Content-Type", "application/json")]
            data = json.dumps({"error": str(exc)}).encode()
        finally:
            self.proxy._done(backend, failed)
        headers = [(k, v) for k, v in upstream_headers if k.lower() not in _HOP_BY_HOP]
        headers.append((BACKEND_HEADER, backend.key))
        self._reply(status, data, headers)
