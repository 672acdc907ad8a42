"""Other clients pointed at the emulator: a kubeconfig, kubectl, the ``kubernetes`` client.

The operator code calls the official ``kubernetes`` client (synchronous, urllib3) besides
kopf. :func:`use_emulator_for_kubernetes_client` makes its process-wide default
``Configuration`` point at the emulator, so ``kubernetes.client.BatchV1Api()`` and friends
talk to it. Those calls block: from a test's coroutine, run them with ``asyncio.to_thread``
(the emulator is served by the test's own event loop, which a blocking call would freeze).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import kubernetes.client
import yaml

from .deadlines import deadline

__all__ = [
    "DUMMY_TOKEN",
    "Kubectl",
    "KubectlError",
    "use_emulator_for_kubernetes_client",
    "write_kubeconfig",
]

DUMMY_TOKEN: Final = "kmock-emulator-token"
_CONTEXT: Final = "kmock-emulator"


def write_kubeconfig(
    path: Path, server: str, *, namespace: str = "default", token: str = DUMMY_TOKEN
) -> Path:
    """A kubeconfig with one context: ``server`` and a bearer token (a dummy one: the
    emulator checks no token, but a suite may tell its clients apart by it)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": _CONTEXT, "cluster": {"server": server}}],
        "users": [{"name": _CONTEXT, "user": {"token": token}}],
        "contexts": [
            {
                "name": _CONTEXT,
                "context": {"cluster": _CONTEXT, "user": _CONTEXT, "namespace": namespace},
            }
        ],
        "current-context": _CONTEXT,
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@contextmanager
def use_emulator_for_kubernetes_client(
    server: str,
) -> Iterator[kubernetes.client.Configuration]:
    """Point the ``kubernetes`` client's default configuration at ``server`` (restored on
    exit). Every ``ApiClient()`` created meanwhile, in any thread, uses it."""
    previous = kubernetes.client.Configuration.get_default_copy()
    config = kubernetes.client.Configuration(host=server)
    config.api_key = {"authorization": DUMMY_TOKEN}
    config.api_key_prefix = {"authorization": "Bearer"}
    config.verify_ssl = False
    kubernetes.client.Configuration.set_default(config)
    try:
        yield config
    finally:
        kubernetes.client.Configuration.set_default(previous)


class KubectlError(RuntimeError):
    """kubectl exited with an error; the message carries its stderr."""


class Kubectl:
    """Runs the real ``kubectl`` against the emulator (asynchronously: the emulator is
    served by the same event loop)."""

    def __init__(self, kubeconfig: Path, cache_dir: Path, executable: str | None = None) -> None:
        found = executable or shutil.which("kubectl")
        if found is None:
            raise FileNotFoundError("kubectl is not on PATH")
        self.executable = found
        self.kubeconfig = kubeconfig
        self.cache_dir = cache_dir

    async def __call__(self, *args: str) -> str:
        """Run ``kubectl ARGS``; return stdout, raise :class:`KubectlError` on failure (or
        when it does not answer within the deadline)."""
        command = [
            self.executable,
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.cache_dir}",
            *args,
        ]
        env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
        process = await asyncio.create_subprocess_exec(
            *command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        timeout = deadline()
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise KubectlError(f"kubectl {' '.join(args)}: no answer in {timeout:g} s") from None
        if process.returncode != 0:
            raise KubectlError(
                f"kubectl {' '.join(args)} exited with {process.returncode}: "
                f"{stderr.decode(errors='replace').strip()}"
            )
        return stdout.decode()
