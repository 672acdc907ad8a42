"""Load a training table through fsspec (or from scikit-learn's bundled datasets).

Supported locations: plain paths, ``file://``, ``s3://`` (s3fs; credentials from the
standard AWS variables, endpoint from ``AWS_ENDPOINT_URL`` / ``PERENNIAL_S3_ENDPOINT_URL``),
``http(s)://``, and ``sklearn://<name>`` for the datasets that ship with scikit-learn
(never a ``fetch_*`` download). Formats: CSV (optionally gzip) and Parquet, chosen from
the extension unless ``data.format`` says otherwise.

The fingerprint is the sha256 of the bytes read (files) or of a canonical CSV rendering
of the frame (``sklearn://``).

Refused while reading, as data-validation violations naming the columns: duplicate column
names (``duplicateColumns``: pandas would silently rename the second ``label`` to
``label.1`` and make it a feature) and nested Parquet columns (``nestedColumn``: list,
struct, map). Parquet pages are read with their checksums verified: a corrupted page is
an error, never silently wrong values.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from perennial_runtime.artifacts import storage_options_for
from perennial_runtime.contract import DataSource, Violation
from perennial_runtime.failures import (
    DataUnavailableError,
    DataValidationError,
    InvalidConfigError,
)

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
    _refuse_duplicate_columns([str(c) for c in frame.columns])
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
    if fmt == "parquet":
        return _parse_parquet(raw, uri)
    compression: Literal["gzip"] | None = (
        "gzip" if raw[:2] == b"\x1f\x8b" else None
    )  # gzip magic, any extension
    try:
        header = pd.read_csv(io.BytesIO(raw), compression=compression, header=None, nrows=1)
    except pd.errors.EmptyDataError:
        header = pd.DataFrame()
    except Exception as exc:
        raise DataUnavailableError(
            f"cannot parse {uri} as csv: {type(exc).__name__}: {exc}"
        ) from exc
    # pandas renames a repeated header ("label", "label.1"): check the header as written.
    _refuse_duplicate_columns(
        ["" if pd.isna(v) else str(v) for v in header.iloc[0]] if len(header) else []
    )
    try:
        return pd.read_csv(io.BytesIO(raw), compression=compression)
    except Exception as exc:
        raise DataUnavailableError(
            f"cannot parse {uri} as csv: {type(exc).__name__}: {exc}"
        ) from exc


def _parse_parquet(raw: bytes, uri: str) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(pa.BufferReader(raw), page_checksum_verification=True)
        schema = parquet.schema_arrow
    except Exception as exc:
        raise DataUnavailableError(
            f"cannot parse {uri} as parquet: {type(exc).__name__}: {exc}"
        ) from exc
    _refuse_duplicate_columns([str(name) for name in schema.names])
    nested = [
        Violation(
            rule="nestedColumn",
            column=str(f.name),
            observed=str(f.type),
            limit="a flat column (number, string, boolean)",
            message=(
                f"nested column of type {f.type}: only flat columns can be features; "
                "flatten it into one column per value, or drop it"
            ),
        )
        for f in schema
        if pa.types.is_nested(f.type)
    ]
    if nested:
        raise DataValidationError(_summary(nested), nested)
    try:
        frame: pd.DataFrame = parquet.read().to_pandas()
    except Exception as exc:
        raise DataUnavailableError(
            f"cannot parse {uri} as parquet (page checksums verified): {type(exc).__name__}: {exc}"
        ) from exc
    return frame


def _refuse_duplicate_columns(names: list[str]) -> None:
    """Every column name at most once (a repeated target would become a feature)."""
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    repeated = [
        Violation(
            rule="duplicateColumns",
            column=name,
            observed=float(n),
            limit=1.0,
            message=f"the column name appears {n} times; give every column a distinct name",
        )
        for name, n in counts.items()
        if n > 1
    ]
    if repeated:
        raise DataValidationError(_summary(repeated), repeated)


def _summary(violations: list[Violation]) -> str:
    parts = [f"{v.column}: {v.message} [{v.rule}]" for v in violations]
    return f"data validation failed ({len(parts)} violation(s)): " + "; ".join(parts)


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
