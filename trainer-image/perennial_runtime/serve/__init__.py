"""``perennial-runtime serve``: the model server (Open Inference Protocol V2 + /predict).

Modules: ``config`` (options), ``schema`` (request validation), ``fastpath`` (predictors),
``model`` (verify, load, smoke-test), ``windows`` and ``monitor`` (drift, feedback,
metrics), ``v2`` (protocol documents), ``app`` (ASGI), ``http_limits`` (header size,
read timeouts, connections), ``server`` (uvicorn; imports ``app``, never the reverse).
"""

from __future__ import annotations


def main(argv: list[str]) -> int:
    from perennial_runtime.serve.server import main as serve_main

    return serve_main(argv)


__all__ = ["main"]
