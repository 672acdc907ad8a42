"""Loading training data: bundled datasets, local files, HTTP on loopback, failures."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pandas as pd
import pytest

from perennial_runtime.contract import DataSource
from perennial_runtime.failures import DataUnavailableError, InvalidConfigError
from perennial_runtime.training.data import SKLEARN_DATASETS, frame_sha256, load


@pytest.fixture
def small_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": [1.5, 2.0, None, 4.25],
            "color": ["red", "blue", "red", None],
            "target": [0, 1, 0, 1],
        }
    )


@pytest.mark.parametrize(
    ("name", "rows", "columns"),
    [
        ("iris", 150, 5),
        ("breast_cancer", 569, 31),
        ("wine", 178, 14),
        ("digits", 1797, 65),
        ("diabetes", 442, 11),
    ],
)
def test_bundled_datasets_load_with_a_target_column(name: str, rows: int, columns: int) -> None:
    loaded = load(DataSource(uri=f"sklearn://{name}", target="target"))
    assert (loaded.rows, loaded.columns) == (rows, columns)
    assert "target" in loaded.frame.columns
    assert all(isinstance(c, str) for c in loaded.frame.columns)
    assert loaded.fingerprint == frame_sha256(loaded.frame)
    assert len(loaded.fingerprint) == 64


def test_bundled_fingerprint_is_stable() -> None:
    source = DataSource(uri="sklearn://wine", target="target")
    assert load(source).fingerprint == load(source).fingerprint
    assert SKLEARN_DATASETS == ("iris", "breast_cancer", "wine", "digits", "diabetes")


def test_unknown_bundled_dataset_is_a_config_error() -> None:
    with pytest.raises(InvalidConfigError, match=r"data.uri .*unknown bundled dataset 'mnist'"):
        load(DataSource(uri="sklearn://mnist", target="target"))


def test_csv_plain_path_and_file_uri(tmp_path: Path, small_frame: pd.DataFrame) -> None:
    path = tmp_path / "train.csv"
    small_frame.to_csv(path, index=False)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    for uri in (str(path), path.as_uri()):
        loaded = load(DataSource(uri=uri, target="target"))
        assert loaded.fingerprint == expected
        assert loaded.frame["color"].tolist()[:3] == ["red", "blue", "red"]
        assert loaded.frame["x"].isna().sum() == 1


def test_parquet_and_gzip_csv(tmp_path: Path, small_frame: pd.DataFrame) -> None:
    parquet = tmp_path / "train.parquet"
    small_frame.to_parquet(parquet)
    loaded = load(DataSource(uri=str(parquet), target="target"))
    assert loaded.fingerprint == hashlib.sha256(parquet.read_bytes()).hexdigest()
    pd.testing.assert_frame_equal(loaded.frame, small_frame, check_dtype=False)

    gz = tmp_path / "train.csv.gz"
    gz.write_bytes(gzip.compress(small_frame.to_csv(index=False).encode()))
    assert load(DataSource(uri=str(gz), target="target")).rows == 4


def test_explicit_format_overrides_the_extension(tmp_path: Path, small_frame: pd.DataFrame) -> None:
    odd = tmp_path / "export.data"
    small_frame.to_csv(odd, index=False)
    with pytest.raises(InvalidConfigError, match=r"set data\.format"):
        load(DataSource(uri=str(odd), target="target"))
    assert load(DataSource(uri=str(odd), target="target", format="csv")).rows == 4


def test_missing_file_is_data_unavailable(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailableError, match="not found"):
        load(DataSource(uri=str(tmp_path / "nope.csv"), target="target"))


def test_garbage_parquet_is_data_unavailable(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"this is not parquet")
    with pytest.raises(DataUnavailableError, match="cannot parse"):
        load(DataSource(uri=str(bad), target="target"))


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[str]:
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_csv(tmp_path: Path, http_root: str, small_frame: pd.DataFrame) -> None:
    small_frame.to_csv(tmp_path / "train.csv", index=False)
    loaded = load(DataSource(uri=f"{http_root}/train.csv", target="target"))
    assert loaded.rows == 4
    assert loaded.fingerprint == hashlib.sha256((tmp_path / "train.csv").read_bytes()).hexdigest()


def test_http_missing_and_unreachable(http_root: str) -> None:
    with pytest.raises(DataUnavailableError):
        load(DataSource(uri=f"{http_root}/missing.csv", target="target"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DataUnavailableError, match="cannot read data"):
        load(DataSource(uri=f"http://127.0.0.1:{port}/train.csv", target="target"))
