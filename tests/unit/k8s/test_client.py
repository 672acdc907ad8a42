"""perennial.k8s.client against a scripted HTTP server on 127.0.0.1 (real requests)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kubernetes
import pytest

from perennial.k8s import client

Answer = tuple[int, dict[str, Any]] | tuple[int, dict[str, Any], dict[str, str]]


class Script:
    """Answers queued per (method, path); the last answer repeats."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], list[Answer]] = {}
        self.requests: list[tuple[str, str, str, Any]] = []
        self.arrivals: list[float] = []  # time.monotonic() of each request
        self.delay = 0.0  # seconds before each answer (to hold many requests open at once)

    def on(self, method: str, path: str, *answers: Answer) -> None:
        self.answers[(method, path)] = list(answers)

    def answer(self, method: str, path: str) -> Answer:
        queue = self.answers.get((method, path.split("?", maxsplit=1)[0]))
        if not queue:
            return 404, {"kind": "Status", "reason": "NotFound", "message": f"{path} not found"}
        return queue.pop(0) if len(queue) > 1 else queue[0]


@pytest.fixture
def server() -> Iterator[Script]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            script.requests.append(
                (self.command, self.path, self.headers.get("Content-Type", ""), body)
            )
            script.arrivals.append(time.monotonic())
            time.sleep(script.delay)
            status, answer, *extra = script.answer(self.command, self.path)
            data = json.dumps(answer).encode()
            self.send_response(status)
            for header, value in (extra[0] if extra else {}).items():
                self.send_header(header, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _serve  # noqa: N815

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    configuration = kubernetes.client.Configuration()
    configuration.host = f"http://127.0.0.1:{httpd.server_address[1]}"
    client.configure(configuration, retry=client.RetryPolicy(attempts=4, base=0.001))
    try:
        yield script
    finally:
        client.configure(None, retry=client.RetryPolicy())
        httpd.shutdown()
        httpd.server_close()


JOB_PATH = "/apis/batch/v1/namespaces/ns/jobs"


def _status(code: int, reason: str) -> Answer:
    return code, {"kind": "Status", "code": code, "reason": reason, "message": reason.lower()}


def test_paths_of_core_and_group_resources() -> None:
    assert client.PODS.path("ns", "p") == "/api/v1/namespaces/ns/pods/p"
    assert client.JOBS.path("ns") == JOB_PATH
    assert client.TRAINING_RUNS_RESOURCE.path() == "/apis/perennial.dev/v1alpha1/trainingruns"


def test_create_of_an_existing_name_returns_the_existing_object(server: Script) -> None:
    server.on("POST", JOB_PATH, _status(409, "AlreadyExists"))
    server.on("GET", f"{JOB_PATH}/j1", (200, {"metadata": {"name": "j1", "uid": "u-old"}}))
    out = client.create(client.JOBS, {"metadata": {"name": "j1", "namespace": "ns"}})
    assert out["metadata"]["uid"] == "u-old"
    assert [r[0] for r in server.requests] == ["POST", "GET"]


def test_transient_errors_are_retried_then_succeed(server: Script) -> None:
    server.on(
        "GET",
        f"{JOB_PATH}/j1",
        _status(503, "ServiceUnavailable"),
        _status(429, "TooManyRequests"),
        (200, {"metadata": {"name": "j1"}}),
    )
    assert client.get(client.JOBS, "j1", "ns")["metadata"]["name"] == "j1"
    assert len(server.requests) == 3


def test_a_429_is_retried_no_sooner_than_its_retry_after(server: Script) -> None:
    # API Priority and Fairness answers a throttled client 429 with Retry-After (seconds).
    throttled = (*_status(429, "TooManyRequests"), {"Retry-After": "1"})
    server.on("GET", f"{JOB_PATH}/j1", throttled, (200, {"metadata": {"name": "j1"}}))
    assert client.get(client.JOBS, "j1", "ns")["metadata"]["name"] == "j1"
    assert len(server.arrivals) == 2
    assert server.arrivals[1] - server.arrivals[0] >= 1.0  # the policy alone waits ~1 ms


def test_a_write_onto_a_version_is_sent_with_it_and_its_conflict_not_retried(
    server: Script,
) -> None:
    # Optimistic concurrency: the object changed since it was read; sending the same stale
    # write again cannot succeed, the caller must read again.
    server.on("PATCH", f"{JOB_PATH}/j1/status", _status(409, "Conflict"))
    with pytest.raises(client.ApiError) as err:
        client.patch(
            client.JOBS,
            "j1",
            "ns",
            {"status": {"a": 1}},
            subresource="status",
            resource_version="7",
        )
    assert err.value.conflict
    assert len(server.requests) == 1
    assert server.requests[0][3] == {"status": {"a": 1}, "metadata": {"resourceVersion": "7"}}


def test_retries_are_bounded(server: Script) -> None:
    server.on("GET", f"{JOB_PATH}/j1", _status(500, "InternalError"))
    with pytest.raises(client.ApiError) as err:
        client.get(client.JOBS, "j1", "ns")
    assert err.value.status == 500
    assert len(server.requests) == 4


def test_client_errors_are_not_retried(server: Script) -> None:
    server.on("PATCH", f"{JOB_PATH}/j1", _status(422, "Invalid"))
    with pytest.raises(client.ApiError) as err:
        client.patch(client.JOBS, "j1", "ns", {"metadata": {"labels": {"a": "b"}}})
    assert err.value.reason == "Invalid"
    assert len(server.requests) == 1


def test_get_or_none_and_delete_of_missing_objects(server: Script) -> None:
    assert client.get_or_none(client.JOBS, "nope", "ns") is None
    assert client.delete(client.JOBS, "nope", "ns") is False


def test_list_filters_labels_client_side(server: Script) -> None:
    server.on(
        "GET",
        "/api/v1/namespaces/ns/pods",
        (
            200,
            {
                "items": [
                    {"metadata": {"name": "a", "labels": {"job-name": "j1"}}},
                    {"metadata": {"name": "b", "labels": {"job-name": "j2"}}},
                ],
                "metadata": {},
            },
        ),
    )
    pods = client.list_objects(client.PODS, "ns", labels={"job-name": "j1"})
    assert [p["metadata"]["name"] for p in pods] == ["a"]
    assert pods[0]["kind"] == "Pod"
    assert "labelSelector=job-name%3Dj1" in server.requests[0][1]


def test_patch_content_types(server: Script) -> None:
    server.on("PATCH", f"{JOB_PATH}/j1", (200, {}))
    client.patch(client.JOBS, "j1", "ns", {"a": None})
    client.patch(client.JOBS, "j1", "ns", [{"op": "remove", "path": "/a"}])
    assert [r[2] for r in server.requests] == [client.MERGE_PATCH, client.JSON_PATCH]
    assert server.requests[0][3] == {"a": None}


def test_status_is_written_to_the_status_subresource(server: Script) -> None:
    path = "/apis/perennial.dev/v1alpha1/namespaces/ns/trainingruns/r1/status"
    server.on("PATCH", path, (200, {"status": {"phase": "Training"}}))
    client.RUN_STATUS.write("r1", "ns", {"phase": "Training", "jobName": "r1", "message": None})
    method, sent_path, content_type, body = server.requests[0]
    assert (method, sent_path, content_type) == ("PATCH", path, client.MERGE_PATCH)
    assert body == {"status": {"phase": "Training", "jobName": "r1", "message": None}}


def test_status_writer_rejects_unknown_fields_and_bad_values() -> None:
    with pytest.raises(client.StatusFieldError, match="no field"):
        client.PIPELINE_STATUS.check({"champoin": {"run": "x"}})
    with pytest.raises(client.StatusFieldError, match="phase"):
        client.RUN_STATUS.check({"phase": "Exploded"})
    client.PIPELINE_STATUS.check({"champion": None, "runSequence": 3})


def test_owner_reference_needs_a_uid() -> None:
    owner = {"apiVersion": "v1", "kind": "X", "metadata": {"name": "a", "uid": "u"}}
    ref = client.owner_reference(owner)
    assert ref == {
        "apiVersion": "v1",
        "kind": "X",
        "name": "a",
        "uid": "u",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    with pytest.raises(ValueError, match="uid"):
        client.owner_reference({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a"}})


def test_concurrent_requests_keep_their_connections(
    server: Script, caplog: pytest.LogCaptureFixture
) -> None:
    # As many threads as the operator runs at once (kopf's handler threads and asyncio's
    # default executor): every connection goes back to the pool, none is discarded (and
    # none reopened: a TLS handshake per request against a real API server).
    server.on("GET", f"{JOB_PATH}/j1", (200, {"metadata": {"name": "j1"}}))
    server.delay = 0.2
    threads = [
        threading.Thread(target=client.get, args=(client.JOBS, "j1", "ns")) for _ in range(24)
    ]
    with caplog.at_level(logging.WARNING, logger="urllib3"):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        server.delay = 0.0
        for _ in range(24):  # one after another: each reuses a kept connection
            client.get(client.JOBS, "j1", "ns")
    assert len(server.requests) == 48
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]


def test_follows_the_default_configuration_when_not_configured(server: Script) -> None:
    # The harness (or kubernetes.config.load_kube_config) sets the package's default
    # configuration; an unconfigured client follows each new default.
    explicit = client.api_client().configuration.host
    server.on("GET", f"{JOB_PATH}/j1", (200, {"metadata": {"name": "j1"}}))
    previous = kubernetes.client.Configuration.get_default_copy()
    default = kubernetes.client.Configuration(host=explicit)
    kubernetes.client.Configuration.set_default(default)
    try:
        client.configure(None)
        assert client.get(client.JOBS, "j1", "ns")["metadata"]["name"] == "j1"
        first = client.api_client()
        assert client.api_client() is first
        kubernetes.client.Configuration.set_default(kubernetes.client.Configuration(host=explicit))
        assert client.api_client() is not first
    finally:
        kubernetes.client.Configuration.set_default(previous)
