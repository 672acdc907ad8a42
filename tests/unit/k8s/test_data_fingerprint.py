"""The new-data trigger's fingerprint: storage metadata through fsspec, no content read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from perennial.k8s.data_fingerprint import DataCheckError, fingerprint


def test_bundled_datasets_never_change() -> None:
    assert fingerprint("sklearn://iris") == fingerprint("sklearn://iris") == "sklearn-iris"


def test_a_file_changes_its_fingerprint_when_rewritten(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("a,y\n1,0\n")
    first = fingerprint(f"file://{data}")
    assert fingerprint(f"file://{data}") == first
    data.write_text("a,y\n1,0\n2,1\n")
    assert fingerprint(f"file://{data}") != first


def test_same_size_new_mtime_counts_as_new_data(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("a,y\n1,0\n")
    os.utime(data, (1_700_000_000, 1_700_000_000))
    first = fingerprint(f"file://{data}")
    data.write_text("a,y\n2,1\n")
    os.utime(data, (1_700_000_100, 1_700_000_100))
    assert fingerprint(f"file://{data}") != first


def test_a_folder_is_fingerprinted_by_its_files(tmp_path: Path) -> None:
    (tmp_path / "part-0.parquet").write_bytes(b"x" * 10)
    first = fingerprint(f"file://{tmp_path}")
    (tmp_path / "part-1.parquet").write_bytes(b"y" * 10)
    assert fingerprint(f"file://{tmp_path}") != first


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataCheckError, match="not found"):
        fingerprint(f"file://{tmp_path}/nope.csv")
