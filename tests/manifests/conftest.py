"""Build the kustomizations once per session with the real `kubectl kustomize`."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from testsupport import scaled

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"

Objects = list[dict[str, Any]]


@pytest.fixture(scope="session")
def kustomize() -> Callable[[str], Objects]:
    """``kustomize("overlays/ha")`` -> the built objects (skips when kubectl is absent)."""
    kubectl = shutil.which("kubectl")
    cache: dict[str, Objects] = {}

    def build(relative: str) -> Objects:
        if kubectl is None:
            pytest.skip("kubectl is not installed")
        if relative not in cache:
            result = subprocess.run(
                [kubectl, "kustomize", str(MANIFESTS / relative)],
                capture_output=True,
                text=True,
                timeout=scaled(60),
                check=False,
            )
            assert result.returncode == 0, f"kubectl kustomize {relative}:\n{result.stderr}"
            cache[relative] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        return cache[relative]

    return build
