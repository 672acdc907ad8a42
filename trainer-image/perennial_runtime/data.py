"""Load a training table through fsspec (or from scikit-learn's bundled datasets).

Supported locations: plain paths, ``file://``, ``s3://`` (s3fs; credentials from the
standard AWS variables, endpoint from ``AWS_ENDPOINT_URL`` / ``PERENNIAL_S3_ENDPOINT_URL``),
``http(s)://``, and ``sklearn://<name>`` for the datasets that ship with scikit-learn
(never a ``fetch_*`` download). Formats: CSV (optionally gzip) and Parquet, chosen from
the extension unless ``data.format`` says otherwise.

The fingerprint is the sha256 of the bytes read (files) or of a canonical CSV rendering
of the frame (``sklearn://``).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any

import pandas as pd

from perennial_runtime.artifacts import storage_options_for
from perennial_runtime.contract import DataSource
from perennial_runtime.failures import DataUnavailableError, InvalidConfigError

SKLEARN_SCHEME = "sklearn://"
SKLEARN_TARGET = "target"
SKLEARN_DATASETS: tuple[str, ...] = ("iris", "breast_cancer", "wine", "digits", "diabetes")

_CSV_SUFFIXES = (".csv", ".csv.gz", ".txt")
_PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")


@dataclass(frozen=True)
class LoadedData:
    """A training table and where it came from."""

    uri: str
    frame: pd.DataFrame
    fingerprint: str

    @property
    def rows(self) -> int:
        return len(self.frame)

    @property
    def columns(self) -> int:
        return len(self.frame.columns)


def frame_sha256(frame: pd.DataFrame) -> str:
    """Canonical content hash of a frame: sha256 of its CSV rendering (no index)."""
    rendered = frame.to_csv(index=False, lineterminator="\n")
    return hashlib.sha256(rendered.encode("utf-8")).hexdigest()


def detect_format(source: DataSource) -> str:
    """``csv`` or ``parquet``: the configured format, else from the file extension."""
    if source.format != "auto":
        return source.format
    path = source.uri.split("?", 1)[0].lower()
    if path.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    if path.endswith(_CSV_SUFFIXES):
        return "csv"
    raise InvalidConfigError(
        f"data.uri {source.uri!r}: cannot tell the format from the extension; "
        "use a .csv/.csv.gz/.parquet file or set data.format to 'csv' or 'parquet'"
    )


def load(source: DataSource) -> LoadedData:
    """Read ``source`` into a DataFrame with string column names."""
    if source.uri.startswith(SKLEARN_SCHEME):
        return _load_sklearn(source.uri)
    fmt = detect_format(source)
    raw = _read_bytes(source.uri)
    frame = _parse(raw, fmt, source.uri)
    frame.columns = [str(c) for c in frame.columns]
    return LoadedData(uri=source.uri, frame=frame, fingerprint=hashlib.sha256(raw).hexdigest())


def _read_bytes(uri: str) -> bytes:
    import fsspec

    try:
        with fsspec.open(uri, "rb", **storage_options_for(uri)) as fh:
            data: bytes = fh.read()
    except FileNotFoundError as exc:
        cause = exc.__cause__
        if cause is not None and not isinstance(cause, FileNotFoundError):
            # fsspec's HTTP filesystem reports a refused connection as "not found".
            raise DataUnavailableError(
                f"cannot read data at {uri}: {type(cause).__name__}: {cause}"
            ) from exc
        raise DataUnavailableError(f"data not found at {uri}: {exc}") from exc
    except ValueError as exc:
        # fsspec raises ValueError for unknown protocols: a configuration mistake.
        if "protocol" in str(exc).lower():
            raise InvalidConfigError(f"data.uri {uri!r}: {exc}") from exc
        raise DataUnavailableError(f"cannot read data at {uri}: {exc}") from exc
    except Exception as exc:
        raise DataUnavailableError(
            f"cannot read data at {uri}: {type(exc).__name__}: {exc}"
        ) from exc
    return data


def _parse(raw: bytes, fmt: str, uri: str) -> pd.DataFrame:
    try:
        if fmt == "parquet":
            return pd.read_parquet(io.BytesIO(raw))
        if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the extension says
            return pd.read_csv(io.BytesIO(raw), compression="gzip")
        return pd.read_csv(io.BytesIO(raw))
    except Exception as exc:
        raise DataUnavailableError(
            f"cannot parse {uri} as {fmt}: {type(exc).__name__}: {exc}"
        ) from exc


def _load_sklearn(uri: str) -> LoadedData:
    from sklearn import datasets

    name = uri[len(SKLEARN_SCHEME) :].strip("/")
    loaders: dict[str, Any] = {
        "iris": datasets.load_iris,
        "breast_cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
        "digits": datasets.load_digits,
        "diabetes": datasets.load_diabetes,
    }
    loader = loaders.get(name)
    if loader is None:
        raise InvalidConfigError(
            f"data.uri {uri!r}: unknown bundled dataset {name!r}; "
            f"use one of: {', '.join(SKLEARN_SCHEME + n for n in SKLEARN_DATASETS)}"
        )
    bunch = loader(as_frame=True)
    frame: pd.DataFrame = bunch.frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    return LoadedData(uri=uri, frame=frame, fingerprint=frame_sha256(frame))
