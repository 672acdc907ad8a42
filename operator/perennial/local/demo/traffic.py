"""The demo's clients: prediction requests, then the ground truth as feedback.

A thread sends batches of the stream's current rows to the stable endpoint's ``/predict``
and the true labels to ``/feedback`` (by the prediction ids, pinned to the server that
made the predictions with the endpoint's ``x-perennial-backend`` header). Every request
that does not get a 2xx answer counts as failed. Each batch is also scored against a
*baseline*: the first model, kept in memory and never retrained, which shows what the
world would look like without continuous training.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from perennial.local.clock import Clock
from perennial.local.demo.stream import DriftingStream, FloatArray
from perennial.local.proxy import BACKEND_HEADER

Predictor = Callable[[FloatArray], Any]


@dataclass(frozen=True)
class BatchRecord:
    time: float  # seconds of the demo's clock since it started
    phase: str
    regime: str
    rows: int
    correct: int
    baseline_correct: int | None
    run: str | None  # the model that answered
    requests: int
    failed: int
    error: str | None = None


@dataclass(frozen=True)
class Totals:
    requests: int
    failed: int
    rows: int
    batches: int


class TrafficGenerator:
    """Sends traffic in a background thread until :meth:`stop`."""

    def __init__(
        self,
        url: str,
        stream: DriftingStream,
        clock: Clock,
        *,
        batch_rows: int = 25,
        rate: float = 20.0,
    ) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.stream = stream
        self.clock = clock
        self.start_time = clock.now()
        self.batch_rows = batch_rows
        self.interval = 1.0 / rate
        self.phase = ""
        self.baseline: Predictor | None = None
        self._records: list[BatchRecord] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: http.client.HTTPConnection | None = None

    # --- control -------------------------------------------------------------------------

    def start(self) -> TrafficGenerator:
        self._thread = threading.Thread(target=self._loop, name="demo-traffic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._conn is not None:
            self._conn.close()

    # --- reading -------------------------------------------------------------------------

    def records(self) -> list[BatchRecord]:
        with self._lock:
            return list(self._records)

    def totals(self) -> Totals:
        with self._lock:
            return Totals(
                requests=sum(r.requests for r in self._records),
                failed=sum(r.failed for r in self._records),
                rows=sum(r.rows for r in self._records),
                batches=len(self._records),
            )

    def rows_since(self, since: float) -> int:
        with self._lock:
            return sum(r.rows for r in self._records if r.time >= since)

    def elapsed(self) -> float:
        return (self.clock.now() - self.start_time).total_seconds()

    # --- the loop ------------------------------------------------------------------------

    def _request(
        self, path: str, payload: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, str | None]:
        body = json.dumps(payload).encode()
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                self._conn.connect()
                assert self._conn.sock is not None
                self._conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                self._conn.request("POST", path, body=body, headers=all_headers)
                response = self._conn.getresponse()
                raw = response.read()
                backend = response.getheader(BACKEND_HEADER)
                try:
                    return response.status, json.loads(raw), backend
                except ValueError:
                    return response.status, raw[:200], backend
            except (OSError, http.client.HTTPException):
                # A keep-alive connection closed by the endpoint: reconnect once.
                self._conn.close()
                self._conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self._one_batch()
            left = self.interval - (time.monotonic() - started)
            if left > 0:
                self._stop.wait(left)

    def _one_batch(self) -> None:
        regime = self.stream.regime.name
        x, y = self.stream.sample(self.batch_rows)
        now = self.elapsed()
        phase = self.phase
        baseline = self.baseline
        base_correct = int((np.asarray(baseline(x)) == y).sum()) if baseline else None
        requests, failed, correct, run, error = 0, 0, 0, None, None
        try:
            requests += 1
            status, body, backend = self._request("/predict", {"instances": x.tolist()})
            if status != 200 or not isinstance(body, dict):
                failed += 1
                error = f"/predict answered {status}: {body}"
            else:
                predictions = np.asarray(body.get("predictions"))
                correct = int((predictions == y).sum())
                run = body.get("run")
                requests += 1
                pin = {BACKEND_HEADER: backend} if backend else None
                status, answer, _ = self._request(
                    "/feedback", {"ids": body.get("ids"), "targets": y.tolist()}, pin
                )
                if status != 200:
                    failed += 1
                    error = f"/feedback answered {status}: {answer}"
        except (OSError, http.client.HTTPException) as exc:
            failed += 1
            error = f"{type(exc).__name__}: {exc}"
        record = BatchRecord(
            time=now,
            phase=phase,
            regime=regime,
            rows=len(y),
            correct=correct,
            baseline_correct=base_correct,
            run=run,
            requests=requests,
            failed=failed,
            error=error,
        )
        with self._lock:
            self._records.append(record)
