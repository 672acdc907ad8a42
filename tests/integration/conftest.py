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
    Access,
    ApiServerEmulator,
    KubeApi,
    Kubectl,
    OperatorRunner,
    StandInControllers,
    shipped_cluster_role,
    use_emulator_for_kubernetes_client,
    write_kubeconfig,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_CRDS = sorted((REPO_ROOT / "crds").glob("*.perennial.dev.yaml"))
# Every (group, resource, verb) the operator used across the integration tests of this
# session: see pytest_sessionfinish below and docs/testing.md "RBAC".
USED_ACCESS: set[Access] = set()


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
        assert not server.rbac.refused, (
            "the operator made requests its shipped RBAC (manifests/base/rbac.yaml) does not "
            f"allow; a real API server answers them 403: {server.rbac.refused!r}"
        )
        USED_ACCESS.update(server.rbac.used)


@pytest.fixture
async def kube_api(emulator: ApiServerEmulator) -> AsyncIterator[KubeApi]:
    api = emulator.kube_api()
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


def _ran_all_integration_tests(session: pytest.Session, exitstatus: int) -> bool:
    option = session.config.option
    if exitstatus != 0 or option.keyword or option.markexpr or getattr(option, "deselect", None):
        return False
    here = Path(__file__).parent
    files = {Path(str(item.path)) for item in session.items}
    return set(here.glob("test_*.py")) <= files


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After a complete, green run of tests/integration: every grant of the shipped
    ClusterRole must have been used by the operator in some test (a grant nothing uses is a
    grant to remove). Peering is the exception: only the HA overlay's --peering uses it."""
    if not _ran_all_integration_tests(session, exitstatus):
        return
    unused = sorted(
        (a.group, a.resource, a.verb)
        for a in shipped_cluster_role() - USED_ACCESS
        if a.group != "kopf.dev"
    )
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"RBAC: the operator used {len(USED_ACCESS)} (group, resource, verb) accesses, "
            f"all granted; granted but never used: {unused or 'none'}"
        )
    if unused:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
