"""Artifact storage through fsspec: read, write, verify sha256, load skops safely.

Every URI fsspec understands works (``file://``, ``s3://``, ``gs://``, plain paths).
Models are stored in skops format and loaded under an explicit allow-list
(:mod:`perennial_runtime.model_trust`): every object in the file must be one our trainer
produces, checked on the file's schema before skops builds anything. A file whose sha256
differs from the expected one is refused before it is parsed.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import fsspec

from perennial_runtime import model_trust
from perennial_runtime.contract import METADATA_FILE, ModelMetadata


class ArtifactError(Exception):
    """An artifact could not be read or written."""


class ArtifactIntegrityError(ArtifactError):
    """An artifact's content does not match its recorded sha256 (tampered or truncated)."""


class UntrustedModelError(ArtifactError):
    """A model file references types outside the allow-list (or is not a skops file)."""


# Endpoint of an S3-compatible store (MinIO, Ceph, moto); the standard AWS variable
# first, then ours. Credentials always come from the standard AWS variables.
S3_ENDPOINT_ENVS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "PERENNIAL_S3_ENDPOINT_URL")


def storage_options_for(uri: str) -> dict[str, Any]:
    """fsspec options implied by the environment for ``uri`` (an S3 endpoint override)."""
    if not uri.startswith(("s3://", "s3a://")):
        return {}
    for name in S3_ENDPOINT_ENVS:
        endpoint = os.environ.get(name)
        if endpoint:
            return {"endpoint_url": endpoint}
    return {}


def join_uri(base: str, *parts: str) -> str:
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def run_dir(artifact_uri: str, run_name: str) -> str:
    """``<artifactUri>/<run>``: one folder per run."""
    return join_uri(artifact_uri, run_name)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_bytes(uri: str, **storage_options: Any) -> bytes:
    options = {**storage_options_for(uri), **storage_options}
    try:
        with fsspec.open(uri, "rb", **options) as fh:
            data: bytes = fh.read()
            return data
    except FileNotFoundError as exc:
        raise ArtifactError(f"artifact not found: {uri}") from exc
    except Exception as exc:
        raise ArtifactError(f"cannot read artifact {uri}: {exc}") from exc


def write_bytes(uri: str, data: bytes, **storage_options: Any) -> None:
    options = {**storage_options_for(uri), **storage_options}
    try:
        fs, path = fsspec.core.url_to_fs(uri, **options)
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if parent:
            fs.makedirs(parent, exist_ok=True)
        with fs.open(path, "wb") as fh:
            fh.write(data)
    except Exception as exc:
        raise ArtifactError(f"cannot write artifact {uri}: {exc}") from exc


def fetch_verified(uri: str, expected_sha256: str | None, **storage_options: Any) -> bytes:
    """Read ``uri`` and refuse it unless its sha256 equals ``expected_sha256``.

    ``expected_sha256=None`` skips the check (only for callers that record the hash
    themselves, e.g. the trainer reading back what it just wrote).
    """
    data = read_bytes(uri, **storage_options)
    if expected_sha256 is not None:
        actual = sha256_hex(data)
        if actual != expected_sha256.lower():
            raise ArtifactIntegrityError(
                f"sha256 mismatch for {uri}: expected {expected_sha256}, got {actual} "
                f"({len(data)} bytes); the file was modified or truncated, refusing to load it"
            )
    return data


def untrusted_types(data: bytes) -> list[str]:
    """Objects in a skops file outside the allow-list, as ``module.name (loader)``."""
    try:
        return model_trust.disallowed_nodes(data)
    except model_trust.ModelFileError as exc:
        raise UntrustedModelError(f"cannot check the model file: {exc}") from exc


def load_model(data: bytes) -> Any:
    """Load a skops model holding only allow-listed objects; refuse anything else.

    The check reads the file's schema only: nothing in a refused file is imported or
    constructed. skops' own audit then runs over the same list as a second check.
    """
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    rejected = untrusted_types(data)
    if rejected:
        raise UntrustedModelError(
            "model file holds objects outside the allow-list of what the trainer produces "
            f"(refused before loading): {', '.join(rejected)}"
        )
    try:
        return sio.loads(data, trusted=list(model_trust.ALLOWED_TYPE_NAMES))
    except UntrustedTypesFoundException as exc:
        raise UntrustedModelError(f"model file refused by skops' audit: {exc}") from exc


def dump_model(model: Any) -> bytes:
    """The model as skops bytes; refused when it holds objects :func:`load_model` refuses.

    A model the server could not load is never written (e.g. parameters that make an
    estimator hold an object outside the allow-list).
    """
    import skops.io as sio

    data: bytes = sio.dumps(model)
    rejected = untrusted_types(data)
    if rejected:
        raise UntrustedModelError(
            "the trained model holds objects outside the allow-list of loadable types: "
            + ", ".join(rejected)
        )
    return data


def read_metadata(run_uri: str, **storage_options: Any) -> ModelMetadata:
    raw = read_bytes(join_uri(run_uri, METADATA_FILE), **storage_options)
    try:
        return ModelMetadata.model_validate(json.loads(raw))
    except Exception as exc:
        raise ArtifactError(f"invalid {METADATA_FILE} in {run_uri}: {exc}") from exc
