"""Constant-response apps: the HTTP stack's ceiling, without a model behind it.

Each answers every path (``starlette``: the infer route and ``/ready``): it reads the
whole request body, as the model server must, and returns the same small JSON document.
``asgi`` runs on uvicorn or granian, ``rsgi`` on granian's RSGI interface,
``starlette`` is the same through Starlette's routing and request objects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

BODY = b'{"model_name":"constant","outputs":[{"name":"predict","shape":[1],"data":[0]}]}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]

Message = MutableMapping[str, Any]


async def asgi(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": BODY})


async def rsgi(scope: Any, protocol: Any) -> None:
    await protocol()  # the whole body
    protocol.response_bytes(200, [("content-type", "application/json")], BODY)


def _starlette() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def infer(request: Request) -> Response:
        await request.body()
        return Response(BODY, media_type="application/json")

    async def ready(request: Request) -> Response:
        return Response(b"{}", media_type="application/json")

    return Starlette(
        routes=[
            Route("/v2/models/{name}/infer", infer, methods=["POST"]),
            Route("/ready", ready, methods=["GET"]),
        ]
    )


def __getattr__(name: str) -> Any:  # `starlette` is built on first use (optional import)
    if name == "starlette":
        return _starlette()
    raise AttributeError(name)
