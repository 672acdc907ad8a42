"""Fixtures of the local runner's tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def manifests_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "manifests"
    folder.mkdir()
    return folder
