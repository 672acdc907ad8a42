"""Run the server: uvicorn (uvloop + httptools) with one or more worker processes."""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

from perennial_runtime.serve.config import CONFIG_JSON_ENV, ConfigError, ServeConfig, parse_args

if TYPE_CHECKING:
    from perennial_runtime.serve.app import ServingApp

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(stream=sys.stderr, format=LOG_FORMAT)
    logging.getLogger("perennial_runtime").setLevel(level.upper())


def uvicorn_options(config: ServeConfig) -> dict[str, object]:
    import importlib.util

    from perennial_runtime.serve.http_limits import PROTOCOL

    return {
        "host": config.host,
        "port": config.port,
        "log_level": config.log_level,
        "access_log": config.access_log,
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        # httptools plus our limits (http_limits.py); h11 bounds only the header size
        "http": PROTOCOL if importlib.util.find_spec("httptools") else "h11",
        "h11_max_incomplete_event_size": config.max_header_bytes,
        "lifespan": "on",
        "server_header": False,
        # no X-Forwarded-* rewriting middleware on every request: the app never reads
        # the client address
        "proxy_headers": False,
        "timeout_graceful_shutdown": 10,
    }


def run(config: ServeConfig) -> int:
    import uvicorn
    from prometheus_client import disable_created_metrics

    # No *_created series: they double the scrape for nothing. Process-wide, so only here
    # (and in the worker factory), never in an imported app.
    disable_created_metrics()  # type: ignore[no-untyped-call]

    options = uvicorn_options(config)
    if config.workers > 1:
        # Workers are separate processes: each rebuilds the app from the environment.
        os.environ[CONFIG_JSON_ENV] = config.to_json()
        uvicorn.run(
            "perennial_runtime.serve.server:app_from_env",
            factory=True,
            workers=config.workers,
            **options,  # type: ignore[arg-type]
        )
    else:
        from perennial_runtime.serve.app import ServingApp

        uvicorn.run(ServingApp(config), **options)  # type: ignore[arg-type]
    return 0


def app_from_env() -> ServingApp:
    """uvicorn ``--factory`` entry for worker processes (``--workers N``)."""
    from prometheus_client import disable_created_metrics

    from perennial_runtime.serve.app import ServingApp

    config = ServeConfig.from_json(os.environ[CONFIG_JSON_ENV])
    configure_logging(config.log_level)
    disable_created_metrics()  # type: ignore[no-untyped-call]
    return ServingApp(config)


def main(argv: list[str]) -> int:
    """``perennial-runtime serve [options]``; exit 2 on invalid options."""
    try:
        config = parse_args(argv, os.environ)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    except ConfigError as exc:
        print(f"perennial-runtime serve: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level)
    return run(config)
