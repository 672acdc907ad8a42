"""The ASGI application: routing, body limits, JSON, and the model's lifecycle.

A plain ASGI callable (no framework: measured faster, see docs/serving.md). It answers
liveness at once, loads the model in a background thread (``model.load``: verify, parse,
choose the backend, smoke-test) and reports ready only when that succeeded. A model that fails
verification or its smoke test is never served: readiness stays 503 with the reason, and
the process stays up so ``kubectl logs`` and the readiness body show why. Storage errors
are retried with backoff.

Every error a client can cause is a 4xx ``{"error": "..."}`` naming the problem.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np
import orjson

from perennial_runtime.serve import v2
from perennial_runtime.serve.config import ServeConfig
from perennial_runtime.serve.errors import RequestError, describe
from perennial_runtime.serve.model import LoadError, Prediction, ServedModel, load
from perennial_runtime.serve.monitor import Monitor
from perennial_runtime.serve.schema import Batch

log = logging.getLogger("perennial_runtime.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Loader = Callable[[ServeConfig], ServedModel]
Handler = Callable[[Scope, Receive], Awaitable["Response"]]

# Batches above this many rows are predicted in a thread so health checks stay responsive.
INLINE_ROWS = 1000
RETRY_MAX_SECONDS = 60.0
ROUTE_CACHE_SIZE = 256
_JSON = b"application/json"
_METRICS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


class _DisconnectedError(Exception):
    pass


class Response:
    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: bytes = _JSON,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers


def _json_default(value: Any) -> Any:
    # orjson serialises C-contiguous numpy arrays natively and hands the others (e.g. the
    # Fortran-ordered probabilities of HistGradientBoostingClassifier) to this hook.
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_response(status: int, payload: Any) -> Response:
    return Response(status, orjson.dumps(payload, default=_json_default, option=_DUMPS_OPTIONS))


def error_response(status: int, message: str) -> Response:
    return json_response(status, {"error": message})


class ServingApp:
    """One process's server: state, monitor and request handlers."""

    def __init__(self, config: ServeConfig, loader: Loader = load) -> None:
        self.config = config
        self.loader = loader
        self.monitor = Monitor(config)
        self.model: ServedModel | None = None
        self.state = "loading"  # loading -> ready | failed
        self.reason = "the model is loading"
        self._load_task: asyncio.Task[None] | None = None
        self._routes: dict[tuple[str, str], tuple[str, Handler]] = {}

    # --- ASGI entry ------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1003})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start_loading()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._load_task is not None and not self._load_task.done():
                    self._load_task.cancel()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- model lifecycle -------------------------------------------------------------------------

    def start_loading(self) -> None:
        if self._load_task is None:
            self._load_task = asyncio.get_running_loop().create_task(self._load_forever())

    async def _load_forever(self) -> None:
        delay = 1.0
        attempt = 0
        log.info(
            "loading %s (sha256 %s)",
            self.config.model_uri,
            self.config.sha256 or "not given: --insecure-skip-verify",
        )
        while True:
            attempt += 1
            try:
                served = await asyncio.to_thread(self.loader, self.config)
            except LoadError as exc:
                if exc.transient:
                    self.reason = (
                        f"the model is loading: attempt {attempt} failed: {exc}; "
                        f"retrying in {delay:.0f}s"
                    )
                    log.warning("%s", self.reason)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_SECONDS)
                    continue
                self._fail(str(exc))
                return
            except Exception as exc:
                log.exception("unexpected error while loading the model")
                self._fail(f"unexpected error while loading: {type(exc).__name__}: {exc}")
                return
            self._ready(served)
            return

    def _fail(self, reason: str) -> None:
        self.state = "failed"
        self.monitor.status = "failed"
        self.reason = f"model refused: {reason}"
        log.error(
            "MODEL REFUSED, never becoming ready: %s (model %s)", reason, self.config.model_uri
        )

    def _ready(self, served: ServedModel) -> None:
        self.model = served
        self.monitor.attach(served)
        self.state = "ready"
        self.monitor.status = "ready"
        self.reason = ""
        log.info(
            "model %r (run %s, sha256 %s, %d features, backend %s: %s) ready in %.2fs; "
            "smoke test passed on %d sample rows",
            served.name,
            served.version,
            served.sha256,
            served.schema.width,
            served.backend,
            served.backend_reason,
            served.load_seconds,
            len(served.metadata.sample.instances),
        )

    # --- HTTP -------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        if self._load_task is None:  # a server without lifespan support
            self.start_loading()
        endpoint, handler = self._route(scope["method"], scope["path"])
        try:
            response = await handler(scope, receive)
        except RequestError as exc:
            response = error_response(exc.status, exc.message)
            response.headers = exc.headers
        except _DisconnectedError:
            return
        except Exception as exc:
            log.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            response = error_response(500, f"internal error: {type(exc).__name__}: {exc}")
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        headers = [
            (b"content-type", response.content_type),
            (b"content-length", b"%d" % len(response.body)),
            (b"server-timing", b"app;dur=%.3f" % elapsed_ms),
        ]
        if response.headers:
            headers.extend(response.headers)
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})
        self.monitor.observe(endpoint, response.status, time.perf_counter() - started)
        self.monitor.after_response()

    def _route(self, method: str, path: str) -> tuple[str, Handler]:
        """(endpoint label, handler), memoised: a handler depends on method and path only."""
        key = (method, path)
        route = self._routes.get(key)
        if route is None:
            route = self._route_uncached(method, path)
            if len(self._routes) < ROUTE_CACHE_SIZE:  # stray paths are not remembered
                self._routes[key] = route
        return route

    def _route_uncached(self, method: str, path: str) -> tuple[str, Handler]:
        """(endpoint label, handler); unknown paths and methods get a raising handler."""
        if path == "/predict":
            return "predict", self._post(method, self._predict_handler)
        parts = path.strip("/").split("/")
        if parts[0] == "v2":
            return self._route_v2(method, parts[1:])
        if path == "/feedback":
            return "feedback", self._post(method, self._feedback_handler)
        if path == "/metrics":
            return "metrics", self._get(method, self._metrics)
        if path in ("/healthz", "/livez"):
            return "health", self._get(method, self._liveness)
        if path == "/readyz":
            return "health", self._get(method, self._readiness)
        return "unknown", _not_found(path)

    def _route_v2(self, method: str, parts: list[str]) -> tuple[str, Handler]:
        if not parts or parts == [""]:
            return "server_metadata", self._get(
                method, lambda: json_response(200, v2.server_metadata())
            )
        if parts[0] == "health" and len(parts) == 2 and parts[1] in ("live", "ready"):
            check = self._liveness if parts[1] == "live" else self._readiness
            return "health", self._get(method, check)
        if parts[0] == "models" and len(parts) >= 2:
            name = parts[1]
            rest = parts[2:]
            version: str | None = None
            if len(rest) >= 2 and rest[0] == "versions":
                version, rest = rest[1], rest[2:]
            action = rest[0] if len(rest) == 1 else ("" if not rest else None)
            if action == "infer":

                async def infer(scope: Scope, receive: Receive) -> Response:
                    _allow(method, "POST")
                    model = self._resolve(name, version)
                    return await self._infer(model, await self._json(scope, receive))

                return "infer", infer
            if action == "ready":
                return "model_ready", self._get(method, lambda: self._model_ready(name, version))
            if action == "":
                return "model_metadata", self._get(
                    method,
                    lambda: json_response(200, v2.model_metadata(self._resolve(name, version))),
                )
            if action == "monitoring":
                return "monitoring", self._get(method, lambda: self._monitoring(name, version))
        return "unknown", _not_found("/v2/" + "/".join(parts))

    def _get(self, method: str, handler: Callable[[], Response]) -> Handler:
        async def run(scope: Scope, receive: Receive) -> Response:
            _allow(method, "GET")
            return handler()

        return run

    def _post(self, method: str, handler: Callable[[Any], Awaitable[Response]]) -> Handler:
        async def run(scope: Scope, receive: Receive) -> Response:
            _allow(method, "POST")
            return await handler(await self._json(scope, receive))

        return run

    def _liveness(self) -> Response:
        return json_response(200, {"live": True})

    def _metrics(self) -> Response:
        return Response(200, self.monitor.render(), _METRICS_TYPE)

    def _monitoring(self, name: str, version: str | None) -> Response:
        self._resolve(name, version)
        return Response(200, self.monitor.snapshot().to_json().encode())

    # --- body -------------------------------------------------------------------------------

    async def _json(self, scope: Scope, receive: Receive) -> Any:
        limit = self.config.max_body_bytes
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise RequestError("invalid Content-Length header") from None
                if declared > limit:
                    raise _too_large(declared, limit)
                break
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _DisconnectedError
        body: bytes = message.get("body", b"")
        if message.get("more_body", False):
            chunks = [body]
            size = len(body)
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _DisconnectedError
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise _too_large(size, limit)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
        if len(body) > limit:
            raise _too_large(len(body), limit)
        if not body:
            raise RequestError("the request body is empty; send a JSON object")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise RequestError(f"the request body is not valid JSON: {exc}") from None

    # --- model resolution and readiness ---------------------------------------------------------

    def _resolve(self, name: str, version: str | None) -> ServedModel:
        model = self.model
        known = model.name if model is not None else self.config.model_name
        if known is not None and name != known:
            raise RequestError(f"unknown model {name!r}; this server serves {known!r}", status=404)
        if model is None:
            raise RequestError(f"model {name!r} is not ready: {self.reason}", status=503)
        if version is not None and version != model.version:
            raise RequestError(
                f"model {name!r} has no version {version!r}; the served version is "
                f"{model.version!r}",
                status=404,
            )
        return model

    def _readiness(self) -> Response:
        if self.state == "ready":
            return json_response(200, {"ready": True})
        return json_response(503, {"ready": False, "state": self.state, "error": self.reason})

    def _model_ready(self, name: str, version: str | None) -> Response:
        if self.model is None:
            known = self.config.model_name
            if known is not None and name != known:
                raise RequestError(
                    f"unknown model {name!r}; this server serves {known!r}", status=404
                )
            return json_response(
                503, {"name": name, "ready": False, "state": self.state, "error": self.reason}
            )
        model = self._resolve(name, version)
        return json_response(200, {"name": model.name, "ready": True})

    def _require_model(self) -> ServedModel:
        if self.model is None:
            raise RequestError(f"the model is not ready: {self.reason}", status=503)
        return self.model

    # --- handlers ---------------------------------------------------------------------------

    async def _run(self, model: ServedModel, batch: Batch, proba: bool, rows: str) -> Prediction:
        """``rows`` names a row in error messages (``"instances[{row}]"``)."""
        if batch.rows > INLINE_ROWS:
            return await asyncio.to_thread(model.predict, batch, proba, rows)
        return model.predict(batch, proba, rows)

    async def _predict_handler(self, body: Any) -> Response:
        model = self._require_model()
        if not isinstance(body, dict):
            raise RequestError(
                f'the request must be a JSON object {{"instances": [...]}}, got {describe(body)}'
            )
        if "instances" not in body:
            raise RequestError(
                "'instances' is missing: send {\"instances\": [[...], ...]} with rows as lists "
                "in feature order or as objects keyed by feature name"
            )
        batch = model.schema.from_rows(body["instances"], "instances")
        prediction = await self._run(model, batch, model.is_classifier, "instances[{row}]")
        ids = self.monitor.record(batch, prediction)
        payload: dict[str, Any] = {"predictions": v2.json_array(prediction.values)}
        if prediction.proba is not None:
            payload["probabilities"] = prediction.proba
            payload["classes"] = model.classes
        payload["model"] = model.name
        payload["run"] = model.version
        payload["ids"] = ids
        return json_response(200, payload)

    async def _infer(self, model: ServedModel, body: Any) -> Response:
        batch, outputs, request_id = v2.parse_infer(body, model)
        prediction = await self._run(model, batch, v2.PREDICT_PROBA in outputs, v2.ROW_NAME)
        ids = self.monitor.record(batch, prediction)
        if request_id is None:
            request_id = ".".join(ids[0].split(".", 4)[:4])  # model, process, time, request
        return json_response(200, v2.infer_response(model, prediction, outputs, request_id, ids))

    async def _feedback_handler(self, body: Any) -> Response:
        model = self._require_model()
        if not isinstance(body, dict):
            raise RequestError(f"the feedback must be a JSON object, got {describe(body)}")
        has_ids, has_instances = "ids" in body, "instances" in body
        if has_ids == has_instances:
            raise RequestError(
                'send either {"ids": [...], "targets": [...]} (ids returned by /predict or '
                'infer) or {"instances": [...], "targets": [...]}'
            )
        targets = body.get("targets")
        if not isinstance(targets, list) or not targets:
            raise RequestError(
                f"'targets' must be a non-empty list of ground-truth values, got "
                f"{describe(targets)}"
            )
        model.schema.check_rows(len(targets), "targets")
        key = "ids" if has_ids else "instances"
        given = body[key]
        if not isinstance(given, list) or len(given) != len(targets):
            count = len(given) if isinstance(given, list) else describe(given)
            raise RequestError(
                f"'{key}' must be a list as long as 'targets' ({len(targets)}), got {count}"
            )
        checked = self.monitor.targets(targets)
        if has_ids:
            return json_response(200, self.monitor.feedback_by_ids(given, checked))
        batch = model.schema.from_rows(given, "instances")
        predicted = (await self._run(model, batch, False, "instances[{row}]")).values.tolist()
        self.monitor.score_feedback(predicted, checked)
        return json_response(200, self.monitor.feedback_summary(len(predicted)))


def _allow(method: str, allowed: str) -> None:
    if method != allowed:
        raise RequestError(
            f"method {method} not allowed here; use {allowed}",
            status=405,
            headers=[(b"allow", allowed.encode())],
        )


def _not_found(path: str) -> Handler:
    async def run(scope: Scope, receive: Receive) -> Response:
        raise RequestError(f"no route for {path}; see /v2 and docs/serving.md", status=404)

    return run


def _too_large(size: int, limit: int) -> RequestError:
    return RequestError(
        f"the request body ({size} bytes) exceeds the limit of {limit} bytes "
        "(--max-body-bytes); split the batch",
        status=413,
        headers=[(b"connection", b"close")],  # the rest of the body is not read
    )
