"""HTTP limits of the model server, over raw sockets on 127.0.0.1 (issue 12, item 8).

Oversized headers, clients too slow to send their headers or body, and connections beyond
the limit are answered by the HTTP layer (431, 408, 503) and closed; none is held, none
reaches the app as a 5xx. Each wait below waits for the server to answer or close (the
socket timeout only bounds a broken server); the limits are set small so it comes soon.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from perennial_runtime.serve.config import ServeConfig
from perennial_runtime.serve.embedded import EmbeddedServer
from testsupport import deadline

# Seconds a socket read may block before the test fails (a hung server): the one deadline.
BOUND = deadline()


def answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of the next response."""
    sock.settimeout(BOUND)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"closed without a response; got {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body[:length]


def closed(sock: socket.socket) -> bool:
    """Whether the server closes the connection (waits for it, at most ``BOUND``)."""
    sock.settimeout(BOUND)
    try:
        while chunk := sock.recv(65536):
            del chunk
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def connect(server: EmbeddedServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=BOUND)


def send_all(sock: socket.socket, data: bytes, chunk: int = 64 * 1024) -> int:
    """Send until done or the server closes; the number of bytes it took."""
    sent = 0
    try:
        for start in range(0, len(data), chunk):
            sock.sendall(data[start : start + chunk])
            sent += len(data[start : start + chunk])
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent


@pytest.fixture(scope="module")
def run(trained_run: Any) -> Any:
    return trained_run("iris")


def start(run: Any, **limits: Any) -> EmbeddedServer:
    config = ServeConfig(model_uri=run.model_uri, sha256=run.sha256, **limits)
    server = EmbeddedServer(config).start()
    server.wait_ready(BOUND)
    return server


@pytest.fixture(scope="module")
def strict(run: Any) -> Iterator[EmbeddedServer]:
    server = start(run, max_header_bytes=8192, header_timeout=0.5, body_timeout=0.5)
    yield server
    server.stop()


def live(path: str = "/v2/health/live", extra: bytes = b"") -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: test\r\n%s\r\n" % (path.encode(), extra)


def test_headers_over_the_limit_get_431_and_the_connection_closes(
    strict: EmbeddedServer,
) -> None:
    with connect(strict) as sock:  # under the limit: served
        sock.sendall(live(extra=b"X-Fine: " + b"a" * 6000 + b"\r\n"))
        assert answer(sock)[0] == 200

    with connect(strict) as sock:  # one 16 MiB header, never finished
        taken = send_all(sock, b"GET / HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * (16 << 20))
        status, headers, body = answer(sock)
        assert closed(sock)
    assert status == 431, body
    assert headers["connection"] == "close"
    assert b"the request headers exceed 8192 bytes (--max-header-bytes)" in body
    assert taken < 16 << 20  # the server stopped reading long before the end

    with connect(strict) as sock:  # many small headers add up too
        send_all(sock, b"GET / HTTP/1.1\r\n" + b"X-Many: b\r\n" * 2000)
        assert answer(sock)[0] == 431


def test_clients_too_slow_with_their_headers_are_dropped(strict: EmbeddedServer) -> None:
    with connect(strict) as sock:  # connects and says nothing
        status, _, body = answer(sock)
        assert closed(sock)
    assert status == 408
    assert b"not complete within 0.5s (--header-timeout)" in body

    with connect(strict) as sock:  # half a request line, then nothing
        sock.sendall(b"GET /v2/health/li")
        assert answer(sock)[0] == 408
        assert closed(sock)

    with connect(strict) as sock:  # a keep-alive connection's next request, half sent
        sock.sendall(live())
        assert answer(sock)[0] == 200
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: te")
        assert answer(sock)[0] == 408
        assert closed(sock)


def test_a_body_slower_than_the_limit_is_dropped(strict: EmbeddedServer) -> None:
    with connect(strict) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"instances": '
        )
        status, _, body = answer(sock)
        assert closed(sock)
    assert status == 408
    assert b"the request body was not complete within 0.5s of the headers" in body

    with httpx.Client(base_url=strict.url, timeout=BOUND) as client:  # still serving
        metrics = client.get("/metrics").text
    assert 'perennial_requests_total{endpoint="predict",outcome="server_error"} 0.0' in metrics


def test_many_slow_clients_are_all_dropped(run: Any) -> None:
    """The issue's 300 clients at one byte a second, scaled down to 40: none is held."""
    server = start(run, header_timeout=0.5)
    sockets = []
    try:
        for _ in range(40):
            sock = connect(server)
            sock.sendall(b"G")
            sockets.append(sock)
        assert {answer(sock)[0] for sock in sockets} == {408}
        assert all(closed(sock) for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()
        server.stop()


def test_connections_beyond_the_limit_get_503_and_are_closed(run: Any) -> None:
    server = start(run, max_connections=3, header_timeout=60)
    held = [connect(server) for _ in range(3)]
    try:
        with connect(server) as extra:  # accepted after the three: over the limit
            status, headers, body = answer(extra)
            assert closed(extra)
        assert status == 503
        assert headers["retry-after"] == "1"
        assert b"the server has 3 connections open, its limit (--max-connections)" in body
        for sock in held:  # the ones within the limit are served
            sock.sendall(live())
            assert answer(sock)[0] == 200
        held.pop().close()
        with httpx.Client(base_url=server.url, timeout=BOUND) as client:
            for _ in range(200):  # until the server has seen the close
                response = client.get("/v2/health/ready")
                if response.status_code == 200:
                    break
            assert response.status_code == 200, response.text
            metrics = client.get("/metrics").text
        assert 'outcome="server_error"} 1' not in metrics  # 503s never reached the app
    finally:
        for sock in held:
            sock.close()
        server.stop()


def test_limit_options_from_flags_and_environment() -> None:
    from perennial_runtime.serve.config import ConfigError, parse_args
    from perennial_runtime.serve.http_limits import PROTOCOL, HttpLimits
    from perennial_runtime.serve.server import uvicorn_options

    base = ["--model-uri", "m", "--insecure-skip-verify"]
    defaults = parse_args(base, {})
    assert HttpLimits.of(defaults) == HttpLimits(32 * 1024, 10.0, 30.0, 256)
    env = {
        "PERENNIAL_MAX_HEADER_BYTES": "4096",
        "PERENNIAL_HEADER_TIMEOUT": "2.5",
        "PERENNIAL_BODY_TIMEOUT": "7",
        "PERENNIAL_MAX_CONNECTIONS": "64",
    }
    config = parse_args([*base, "--max-connections", "32"], env)  # flags win
    assert HttpLimits.of(config) == HttpLimits(4096, 2.5, 7.0, 32)
    options = uvicorn_options(config)
    assert options["http"] == PROTOCOL and options["h11_max_incomplete_event_size"] == 4096
    bad = [
        ([*base, "--header-timeout", "0"], {}, "--header-timeout must be a positive number"),
        (base, {"PERENNIAL_BODY_TIMEOUT": "soon"}, "PERENNIAL_BODY_TIMEOUT must be a number"),
        ([*base, "--max-header-bytes", "10"], {}, "--max-header-bytes must be at least 1024"),
    ]
    for argv, environ, message in bad:
        with pytest.raises(ConfigError, match=message):
            parse_args(argv, environ)
