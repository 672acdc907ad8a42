"""Integration-test harness: Perennial's operator (kopf) against kmock's emulator.

See docs/testing.md. The pytest fixtures live in tests/integration/conftest.py; test modules
import the helpers from here (``from .harness import wait_for``).

- ``emulator``: :class:`ApiServerEmulator`, the API server (rules in ``metadata``,
  ``patches``, ``field_selectors``, ``tables``, ``discovery``, ``api_errors``);
- ``kube_api``: :class:`KubeApi`, the test's HTTP client;
- ``kopf_runner``: :class:`OperatorRunner`, kopf in a thread;
- ``controllers`` (``stand_in_*``): :class:`StandInControllers`, the Job/Deployment
  controllers, kubelet and garbage collector played by the test;
- ``clients``: kubeconfig, kubectl, the ``kubernetes`` client's configuration;
- ``waiting``: :func:`wait_for`; ``deadlines``: the one deadline of every wait, scaled by
  ``$PERENNIAL_TEST_TIMEOUT_FACTOR``.
"""

from .api_errors import api_error
from .clients import (
    DUMMY_TOKEN,
    Kubectl,
    KubectlError,
    use_emulator_for_kubernetes_client,
    write_kubeconfig,
)
from .controllers import TERMINATION_MESSAGE_LIMIT, StandInControllers
from .deadlines import FACTOR_VARIABLE, deadline, scaled, timeout_factor
from .discovery import CrdError, crd_resources, read_crd_documents
from .emulator import ApiServerEmulator, IgnoredWrite
from .kopf_runner import HARNESS_LOGIN_ID, OperatorError, OperatorRunner, harness_settings
from .kube_api import ApiError, KubeApi, PostedEvent, resource_path
from .rbac import Access, RbacCheck, shipped_cluster_role
from .waiting import WaitTimeoutError, wait_for

__all__ = [
    "DUMMY_TOKEN",
    "FACTOR_VARIABLE",
    "HARNESS_LOGIN_ID",
    "TERMINATION_MESSAGE_LIMIT",
    "Access",
    "ApiError",
    "ApiServerEmulator",
    "CrdError",
    "IgnoredWrite",
    "KubeApi",
    "Kubectl",
    "KubectlError",
    "OperatorError",
    "OperatorRunner",
    "PostedEvent",
    "RbacCheck",
    "StandInControllers",
    "WaitTimeoutError",
    "api_error",
    "crd_resources",
    "deadline",
    "harness_settings",
    "read_crd_documents",
    "resource_path",
    "scaled",
    "shipped_cluster_role",
    "timeout_factor",
    "use_emulator_for_kubernetes_client",
    "wait_for",
    "write_kubeconfig",
]
