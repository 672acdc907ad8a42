"""An open-loop load generator for one stable endpoint, in its own process.

Requests are sent at seeded Poisson arrival times whatever the answers do (open loop: a
slow or broken endpoint does not slow the sender down, so its latency is not hidden), a
share of them as batches. Each latency is measured from the instant the request was *due*,
not from when a connection became free (no coordinated omission). With ``--feedback`` each
answered prediction's ground truth is sent to ``/feedback`` by the returned ids, pinned to
the server that answered (the endpoint's ``x-perennial-backend`` header), as a client
with delayed labels would.

Prints ``ready`` when it starts sending. Runs until ``--seconds`` have passed or SIGTERM,
then waits for the requests in flight (bounded by the request timeout) and writes one
JSON line per request to ``--out``:
``[due (unix seconds), latency ms, status (0: no answer), kind, run that answered]``
(kind: ``single``, ``batch`` or ``feedback``).

    python -m bench.rollouts.loadgen --url http://127.0.0.1:8765 --rate 200 --out r.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

BACKEND_HEADER = "x-perennial-backend"  # perennial.local.proxy.BACKEND_HEADER
Record = tuple[float, float, int, str, str | None]


def _rows() -> tuple[list[list[float]], list[int]]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    return np.asarray(data.data).tolist(), np.asarray(data.target).tolist()


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.url = args.url.rstrip("/")
        self.rate = args.rate
        self.batch_share = args.batch_share
        self.batch_rows = args.batch_rows
        self.feedback = args.feedback
        self.timeout = aiohttp.ClientTimeout(total=args.timeout)
        self.rng = random.Random(args.seed)
        self.x, self.y = _rows()
        self.records: list[Record] = []
        self.stop = asyncio.Event()

    def _sample(self, rows: int) -> tuple[list[list[float]], list[int]]:
        picks = [self.rng.randrange(len(self.x)) for _ in range(rows)]
        return [self.x[i] for i in picks], [self.y[i] for i in picks]

    async def _post(
        self, session: aiohttp.ClientSession, path: str, body: Any, headers: dict[str, str]
    ) -> tuple[int, Any, str | None]:
        async with session.post(self.url + path, json=body, headers=headers) as response:
            raw = await response.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = None
            return response.status, payload, response.headers.get(BACKEND_HEADER)

    async def _one(self, session: aiohttp.ClientSession, due: float, rows: int) -> None:
        kind = "batch" if rows > 1 else "single"
        x, y = self._sample(rows)
        status, run, body, backend = 0, None, None, None
        try:
            status, body, backend = await self._post(session, "/predict", {"instances": x}, {})
            if isinstance(body, dict):
                run = body.get("run")
        except (aiohttp.ClientError, TimeoutError, OSError):
            status = 0
        self.records.append((due, (time.time() - due) * 1e3, status, kind, run))
        if not (self.feedback and status == 200 and isinstance(body, dict)):
            return
        sent = time.time()
        pin = {BACKEND_HEADER: backend} if backend else {}
        try:
            status, _, _ = await self._post(
                session, "/feedback", {"ids": body.get("ids"), "targets": y}, pin
            )
        except (aiohttp.ClientError, TimeoutError, OSError):
            status = 0
        self.records.append((sent, (time.time() - sent) * 1e3, status, "feedback", run))

    async def run(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        connector = aiohttp.TCPConnector(limit=512, force_close=False)
        tasks: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(connector=connector, timeout=self.timeout) as session:
            start = time.time()
            due = start
            print("ready", flush=True)  # the parent starts its clock on this line
            while not self.stop.is_set() and due - start < seconds:
                due += self.rng.expovariate(self.rate)
                delay = due - time.time()
                if delay > 0:
                    try:
                        await asyncio.wait_for(self.stop.wait(), delay)
                        break
                    except TimeoutError:
                        pass
                rows = self.batch_rows if self.rng.random() < self.batch_share else 1
                task = asyncio.create_task(self._one(session, due, rows))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(tasks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rollouts.loadgen", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--batch-share", type=float, default=0.2, help="share of batches")
    parser.add_argument("--batch-rows", type=int, default=100, help="rows per batch")
    parser.add_argument("--feedback", action="store_true", help="send the labels back")
    parser.add_argument("--seconds", type=float, default=3600.0, help="upper bound")
    parser.add_argument("--timeout", type=float, default=10.0, help="per request")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    load = Load(args)
    asyncio.run(load.run(args.seconds))
    with args.out.open("w", encoding="utf-8") as out:
        for record in sorted(load.records):
            out.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
