"""The server inside the current process, on a thread: for tests, benchmarks, local runs.

    with EmbeddedServer(config) as server:
        server.wait_ready()
        httpx.get(f"{server.url}/v2/health/ready")

The socket is bound before the thread starts (port 0 picks a free port), so ``url`` is
valid at once; the same app, uvicorn settings and background loading as ``serve``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

from perennial_runtime.serve.app import Loader, ServingApp
from perennial_runtime.serve.config import ServeConfig
from perennial_runtime.serve.model import load


class EmbeddedServer:
    def __init__(self, config: ServeConfig, loader: Loader = load, host: str = "127.0.0.1"):
        import uvicorn

        from perennial_runtime.serve.server import uvicorn_options

        self.app = ServingApp(config, loader)
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only for it
        # (without it, a response's two writes wait out the peer's 40 ms delayed ACK).
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, 0))
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        options = uvicorn_options(config)
        options.update(host=host, port=self.port, log_level="warning")
        self._server = uvicorn.Server(uvicorn.Config(self.app, **options))  # type: ignore[arg-type]
        self._thread = threading.Thread(target=self._run, name="perennial-serve", daemon=True)

    def _run(self) -> None:
        factory: Callable[[], asyncio.AbstractEventLoop] | None = None
        if importlib.util.find_spec("uvloop"):
            import uvloop

            factory = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(self._server.serve(sockets=[self._socket]))

    def start(self) -> EmbeddedServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the embedded server did not start")
            time.sleep(0.01)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the model is ready; raise if it was refused or took too long."""
        deadline = time.monotonic() + timeout
        while self.app.state == "loading":
            if time.monotonic() > deadline:
                raise TimeoutError(f"model not ready after {timeout}s: {self.app.reason}")
            time.sleep(0.02)
        if self.app.state != "ready":
            raise RuntimeError(self.app.reason)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._socket.close()

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
