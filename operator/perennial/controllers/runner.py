"""``perennial run``: start kopf with our handlers, settings, liveness and metrics.

The command-line arguments are translated into kopf's keyword arguments by the pure
:func:`build_run_options` (validated, with errors that name the flag and the fix); then
:func:`run_operator` imports the handler modules, starts the Prometheus endpoint once, and
hands control to ``kopf.run`` until SIGTERM/SIGINT.

Handler modules register themselves with kopf's default registry on import:
:data:`CORE_MODULES` always (settings and the liveness probe), :data:`OPTIONAL_MODULES` when
they exist in the installed package.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import logging
import re
import sys
import urllib.parse
from collections.abc import Sequence
from typing import Any, Final

__all__ = [
    "CORE_MODULES",
    "OPTIONAL_MODULES",
    "KopfRunOptions",
    "build_run_options",
    "load_handler_modules",
    "run_operator",
]

logger = logging.getLogger("perennial.runner")

CORE_MODULES: Final = (
    "perennial.controllers.settings",
    "perennial.controllers.liveness",
    "perennial.controllers.notifier",
)
OPTIONAL_MODULES: Final = ("perennial.controllers.handlers",)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


@dataclasses.dataclass(frozen=True)
class KopfRunOptions:
    """What ``kopf.run`` is called with, plus our own metrics port (0: no metrics server)."""

    clusterwide: bool
    namespaces: tuple[str, ...]
    standalone: bool
    peering_name: str | None
    priority: int | None
    liveness_endpoint: str | None
    metrics_port: int

    def kopf_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "clusterwide": self.clusterwide,
            "namespaces": list(self.namespaces),
            "standalone": self.standalone,
            "liveness_endpoint": self.liveness_endpoint,
        }
        if self.peering_name is not None:
            kwargs["peering_name"] = self.peering_name
            kwargs["priority"] = self.priority
        return kwargs


def _liveness_port(endpoint: str) -> int:
    parts = urllib.parse.urlsplit(endpoint)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None or not parts.path:
        raise ValueError(
            f"--liveness: {endpoint!r} is not an http://HOST:PORT/PATH URL "
            "(e.g. http://0.0.0.0:8080/healthz); pass --liveness= (empty) to disable it"
        )
    return port


def build_run_options(
    *,
    namespaces: Sequence[str],
    liveness: str | None,
    metrics_port: int,
    peering: str | None,
    priority: int,
) -> KopfRunOptions:
    """Translate and validate the ``run`` arguments (pure; raises ValueError on bad input)."""
    unique: list[str] = []
    for namespace in namespaces:
        if not _DNS_LABEL.match(namespace):
            raise ValueError(
                f"--namespace: {namespace!r} is not a namespace name (lowercase letters, "
                "digits and '-', at most 63 characters; patterns are not supported)"
            )
        if namespace not in unique:
            unique.append(namespace)

    liveness_endpoint = liveness or None
    liveness_port = _liveness_port(liveness_endpoint) if liveness_endpoint else None

    if not 0 <= metrics_port <= 65535:
        raise ValueError(f"--metrics-port: {metrics_port} is not a TCP port (1..65535; 0 disables)")
    if metrics_port and metrics_port == liveness_port:
        raise ValueError(
            f"--metrics-port: {metrics_port} is also the --liveness port; give each its own port"
        )

    if peering is not None and not _DNS_SUBDOMAIN.match(peering):
        raise ValueError(
            f"--peering: {peering!r} is not a valid object name "
            "(lowercase letters, digits, '-' and '.')"
        )
    if peering is None and priority != 0:
        raise ValueError(
            "--priority: only meaningful together with --peering (a standalone operator does "
            "not coordinate with others); add --peering=perennial or drop --priority"
        )

    return KopfRunOptions(
        clusterwide=not unique,
        namespaces=tuple(unique),
        standalone=peering is None,
        peering_name=peering,
        priority=priority if peering is not None else None,
        liveness_endpoint=liveness_endpoint,
        metrics_port=metrics_port,
    )


def load_handler_modules(
    core: Sequence[str] = CORE_MODULES, optional: Sequence[str] = OPTIONAL_MODULES
) -> list[str]:
    """Import the handler modules (registering their handlers); return the names imported.

    An optional module that does not exist is skipped; one that exists but fails to import
    raises, so a broken handler module stops the operator instead of silently doing nothing.
    """
    loaded: list[str] = []
    for name in core:
        importlib.import_module(name)
        loaded.append(name)
    for name in optional:
        if importlib.util.find_spec(name) is None:
            logger.info("handler module %s is not present; skipped", name)
            continue
        importlib.import_module(name)
        loaded.append(name)
    return loaded


def run_operator(
    *,
    namespaces: list[str],
    liveness: str,
    metrics_port: int,
    peering: str | None,
    priority: int,
    verbose: bool,
    notify_sinks: Sequence[str] = (),
    notify_mode: str | None = None,
) -> int:
    """Run the operator until it is told to stop; the process exit code."""
    import os

    import kopf

    from perennial.k8s.metrics import start_metrics_server
    from perennial.k8s.notifications import notification_settings

    try:
        options = build_run_options(
            namespaces=namespaces,
            liveness=liveness,
            metrics_port=metrics_port,
            peering=peering,
            priority=priority,
        )
        notifications = notification_settings(os.environ, sinks=notify_sinks, mode=notify_mode)
    except ValueError as exc:
        print(f"perennial run: {exc}", file=sys.stderr)
        return 2

    kopf.configure(verbose=verbose, log_prefix=True)
    if not verbose:
        # The kubelet probes /healthz every few seconds: keep those requests out of the log.
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
        logging.getLogger("kopf.activities.probe").setLevel(logging.WARNING)

    modules = load_handler_modules()
    logger.info("handler modules loaded: %s", ", ".join(modules))
    if options.metrics_port:
        start_metrics_server(options.metrics_port)
        logger.info("Prometheus metrics on :%d/metrics", options.metrics_port)
    logger.info(
        "starting: %s, %s",
        f"namespaces {', '.join(options.namespaces)}" if options.namespaces else "cluster-wide",
        f"peering {options.peering_name!r} at priority {options.priority}"
        if options.peering_name
        else "standalone",
    )
    memo = kopf.Memo(namespaces=options.namespaces, notifications=notifications)
    kopf.run(**options.kopf_kwargs(), memo=memo)
    return 0
