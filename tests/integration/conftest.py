"""Fixtures for the integration tests: an emulated API server and the clients around it.

- ``emulator``: :class:`ApiServerEmulator` on 127.0.0.1 (random port), built-in kinds and the
  project's CRDs (``crds/*.yaml``) declared; fails the test at teardown on emulator errors
  (HTTP 500s: a bug or an unsupported call) or on writes a real server would drop.
- ``kube_api``: the test's async HTTP client (create/get/list/patch/patch_status/delete).
- ``kubernetes_client``: the ``kubernetes`` package's default configuration pointed at the
  emulator, and ``KUBECONFIG`` too (blocking calls: wrap them in ``asyncio.to_thread`` in a
  test).
- ``operator_runner``: starts/stops/restarts kopf in a thread (see ``harness.kopf_runner``).
- ``controllers``: the test playing the Job/Deployment controllers, kubelet and GC.
- ``kubeconfig`` / ``kubectl``: a kubeconfig for the emulator, and the real kubectl (the
  ``kubectl`` fixture skips the test when kubectl is not installed).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import kmock
import kubernetes.client
import kubernetes.config
import kubernetes.config.kube_config
import pytest

from .harness import (
    ApiServerEmulator,
    KubeApi,
    Kubectl,
    OperatorRunner,
    StandInControllers,
    use_emulator_for_kubernetes_client,
    write_kubeconfig,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_CRDS = sorted((REPO_ROOT / "crds").glob("*.perennial.dev.yaml"))


@pytest.fixture
async def emulator() -> AsyncIterator[ApiServerEmulator]:
    async with ApiServerEmulator() as server, kmock.Server(server):
        await server.load_crds(PROJECT_CRDS, skip_other_kinds=True)
        yield server
        internal = server.internal_errors()
        assert not internal, f"the emulator failed on requests (HTTP 500): {internal!r}"
        assert not server.ignored_writes, (
            "writes a real API server would silently drop (clear emulator.ignored_writes in "
            f"a test that makes them on purpose): {server.ignored_writes!r}"
        )


@pytest.fixture
async def kube_api(emulator: ApiServerEmulator) -> AsyncIterator[KubeApi]:
    def resolve(api_version: str, kind: str) -> str:
        resource = emulator.resource_for(api_version, kind)
        prefix = f"{resource.group}/" if resource.group else ""
        return f"{prefix}{resource.version}/{resource.plural}"

    api = KubeApi(emulator.base_url, resolve)
    yield api
    await api.aclose()


@pytest.fixture
def kubernetes_client(
    emulator: ApiServerEmulator, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[kubernetes.client.Configuration]:
    # Code that loads its own configuration (kubernetes.config.load_kube_config()) lands on
    # the emulator too: outside a pod, in-cluster loading fails and the kubeconfig is used.
    # (The kubernetes package reads $KUBECONFIG once, on import: patch its copies too.)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    for module in (kubernetes.config, kubernetes.config.kube_config):
        monkeypatch.setattr(module, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    with use_emulator_for_kubernetes_client(emulator.base_url) as config:
        yield config


@pytest.fixture
async def operator_runner(
    emulator: ApiServerEmulator, kubernetes_client: kubernetes.client.Configuration
) -> AsyncIterator[OperatorRunner]:
    runner = OperatorRunner(emulator)
    yield runner
    await runner.close()


@pytest.fixture
def controllers(kube_api: KubeApi, emulator: ApiServerEmulator) -> StandInControllers:
    return StandInControllers(kube_api, emulator)


@pytest.fixture
def kubeconfig(emulator: ApiServerEmulator, tmp_path: Path) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", emulator.base_url)


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> Kubectl:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    return Kubectl(kubeconfig, tmp_path / "kubectl-cache")
