"""The stable endpoint: routing, switching, canary split, pinning, draining, errors."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from perennial.local.proxy import BACKEND_HEADER, Backend, StableEndpoint

from .helpers import deadline, wait_for


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    name = "?"
    gate: threading.Event | None = None  # set: answer (the test holds the answer until then)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.gate is not None:
            self.gate.wait(deadline())
        status = 500 if self.path == "/boom" else 200
        payload = json.dumps({"server": self.name, "path": self.path, "body": body.decode()})
        data = payload.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = _answer  # noqa: N815
    do_POST = _answer  # noqa: N815


def _server(name: str, gate: threading.Event | None = None) -> tuple[ThreadingHTTPServer, Backend]:
    handler = type(f"Echo{name}", (_Echo,), {"name": name, "gate": gate})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, Backend(key=name, host="127.0.0.1", port=server.server_address[1], run=name)


@pytest.fixture
def endpoint() -> Iterator[StableEndpoint]:
    proxy = StableEndpoint().start()
    yield proxy
    proxy.stop()


def _call(
    proxy: StableEndpoint, path: str = "/predict", headers: dict[str, str] | None = None
) -> tuple[int, Any, str | None]:
    conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=deadline())
    try:
        conn.request("POST", path, body=b'{"x": 1}', headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read()), response.getheader(BACKEND_HEADER)
    finally:
        conn.close()


def test_no_backend_is_a_clear_503(endpoint: StableEndpoint) -> None:
    status, body, _ = _call(endpoint)
    assert status == 503
    assert "no model is being served yet" in body["error"]
    assert endpoint.stats().unrouted == 1


def test_forwards_and_switches(endpoint: StableEndpoint) -> None:
    one, a = _server("a")
    two, b = _server("b")
    try:
        endpoint.set_routes(a)
        status, body, served_by = _call(endpoint, "/predict")
        assert (status, body["server"], body["path"]) == (200, "a", "/predict")
        assert body["body"] == '{"x": 1}'
        assert served_by == "a"
        endpoint.set_routes(b)
        assert _call(endpoint)[1]["server"] == "b"
        # A request pinned to the old server still reaches it while it is attached.
        assert _call(endpoint, headers={BACKEND_HEADER: "a"})[1]["server"] == "a"
        endpoint.detach("a")
        assert _call(endpoint, headers={BACKEND_HEADER: "a"})[1]["server"] == "b"
        with pytest.raises(ValueError, match="still receives traffic"):
            endpoint.detach("b")
    finally:
        one.shutdown()
        two.shutdown()


def test_canary_weight_is_spread_evenly(endpoint: StableEndpoint) -> None:
    one, a = _server("stable")
    two, b = _server("canary")
    try:
        endpoint.set_routes(a, b, canary_weight=20)
        seen = [_call(endpoint)[1]["server"] for _ in range(20)]
        assert seen.count("canary") == 4
        assert endpoint.backend_stats("canary").requests == 4
        endpoint.set_routes(a, b, canary_weight=0)
        assert {_call(endpoint)[1]["server"] for _ in range(5)} == {"stable"}
    finally:
        one.shutdown()
        two.shutdown()


def test_upstream_errors_count_as_failures(endpoint: StableEndpoint) -> None:
    one, a = _server("a")
    try:
        endpoint.set_routes(a)
        assert _call(endpoint, "/boom")[0] == 500
    finally:
        one.shutdown()
        one.server_close()
    status, body, _ = _call(endpoint)
    assert status == 502
    assert "unreachable" in body["error"]
    assert endpoint.stats().failures == 2
    assert endpoint.backend_stats("a").failures == 2


def test_inflight_requests_are_counted_until_answered(endpoint: StableEndpoint) -> None:
    answer = threading.Event()
    slow, a = _server("slow", gate=answer)
    try:
        endpoint.set_routes(a)
        worker = threading.Thread(target=_call, args=(endpoint,))
        worker.start()
        wait_for("the request in flight", lambda: endpoint.inflight("slow") == 1, step=0.01)
        answer.set()
        worker.join(deadline())
        assert endpoint.inflight("slow") == 0
    finally:
        answer.set()
        slow.shutdown()
