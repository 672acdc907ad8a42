"""``perennial-runtime serve`` options: flags, each with an environment fallback."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from perennial_runtime.drift import MIN_DRIFT_SAMPLES

MODEL_URI_ENV = "PERENNIAL_MODEL_URI"
SHA256_ENV = "PERENNIAL_MODEL_SHA256"
ONNX_SHA256_ENV = "PERENNIAL_ONNX_SHA256"
BACKEND_ENV = "PERENNIAL_SERVE_BACKEND"
# auto: numpy for linear pipelines, else onnxruntime when a verified, parity-checked
# model.onnx exists, else numpy preprocessing + the estimator, else the pipeline.
BACKENDS = ("auto", "numpy", "onnxruntime", "sklearn")
MODEL_NAME_ENV = "PERENNIAL_MODEL_NAME"
FEEDBACK_KEY_ENV = "PERENNIAL_FEEDBACK_KEY"
FEEDBACK_KEY_FILE_ENV = "PERENNIAL_FEEDBACK_KEY_FILE"
MIN_FEEDBACK_KEY_CHARS = 32
# How the parent process hands the parsed config to uvicorn's worker processes.
CONFIG_JSON_ENV = "PERENNIAL_SERVE_CONFIG_JSON"

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_TRUE = {"1", "true", "yes", "on"}


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota (a pod's
    CPU limit), rounded up; at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def _cgroup_cpu_quota() -> float | None:
    """CPUs allowed by the cgroup (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``); None: no limit."""
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if len(text) == 2 and text[0] != "max":
            return int(text[0]) / int(text[1])
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


class ConfigError(Exception):
    """Invalid options; the message names the flag and the fix."""


@dataclass(frozen=True)
class ServeConfig:
    model_uri: str
    sha256: str | None  # None only with insecure_skip_verify
    insecure_skip_verify: bool = False
    onnx_sha256: str | None = None  # else the sha256 the verified model.skops records
    backend: str = "auto"
    model_name: str | None = None
    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = 1
    max_body_bytes: int = 1 << 20
    max_rows: int = 10_000
    drift_window: int = 1000
    feedback_window: int = 1000
    # The deployment's feedback key (docs/serving.md, Feedback): prediction ids are signed
    # with it, so every server holding it can score them. "" = one generated per process.
    feedback_key: str = field(default="", repr=False)
    feedback_key_generated: bool = False
    log_level: str = "info"
    access_log: bool = False
    # HTTP limits (http_limits.py): header block size, header and body read time, connections
    max_header_bytes: int = 32 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 256

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        return cls(**json.loads(text))


# flag, env var, type, default, help
_INT_OPTIONS: tuple[tuple[str, str, int, int, str], ...] = (
    ("--port", "PERENNIAL_SERVE_PORT", 8080, 1, "TCP port"),
    (
        "--workers",
        "PERENNIAL_SERVE_WORKERS",
        0,
        0,
        "server processes, each loading the model; 0: one per available core",
    ),
    ("--max-body-bytes", "PERENNIAL_MAX_BODY_BYTES", 1 << 20, 1, "larger bodies get 413"),
    ("--max-rows", "PERENNIAL_MAX_ROWS", 10_000, 1, "rows per request; more get 413"),
    (
        "--drift-window",
        "PERENNIAL_DRIFT_WINDOW",
        1000,
        MIN_DRIFT_SAMPLES,
        "recent input rows scored for drift (PSI)",
    ),
    (
        "--feedback-window",
        "PERENNIAL_FEEDBACK_WINDOW",
        1000,
        1,
        "recent feedback rows for live accuracy / rmse",
    ),
    (
        "--max-header-bytes",
        "PERENNIAL_MAX_HEADER_BYTES",
        32 * 1024,
        1024,
        "request line plus headers; larger get 431 and the connection is closed",
    ),
    (
        "--max-connections",
        "PERENNIAL_MAX_CONNECTIONS",
        256,
        1,
        "open connections per server process; more get 503 (Retry-After) and are closed",
    ),
)
# flag, env var, default, min (exclusive), help
_SECONDS_OPTIONS: tuple[tuple[str, str, float, float, str], ...] = (
    (
        "--header-timeout",
        "PERENNIAL_HEADER_TIMEOUT",
        10.0,
        0.0,
        "seconds for a request's headers to arrive (from the connection or the request's "
        "first byte); slower clients get 408 and are dropped",
    ),
    (
        "--body-timeout",
        "PERENNIAL_BODY_TIMEOUT",
        30.0,
        0.0,
        "seconds for a request's body to arrive after its headers; slower: 408, dropped",
    ),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perennial-runtime serve",
        description=(
            "Serve a Perennial model: Open Inference Protocol (V2) REST, /predict, "
            "/feedback, Prometheus /metrics. The model file's sha256 is verified before "
            "it is parsed."
        ),
    )
    parser.add_argument("--model-uri", help=f"URI of model.skops (env {MODEL_URI_ENV})")
    parser.add_argument("--sha256", help=f"expected sha256 of the model file (env {SHA256_ENV})")
    parser.add_argument(
        "--insecure-skip-verify",
        action="store_true",
        default=None,
        help="serve without an expected sha256 (the file is still checked against its "
        "metadata.json); env PERENNIAL_INSECURE_SKIP_VERIFY=true",
    )
    parser.add_argument(
        "--onnx-sha256",
        help=f"expected sha256 of model.onnx (env {ONNX_SHA256_ENV}; default: the sha256 "
        "recorded inside the verified model.skops)",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        help=f"prediction backend (env {BACKEND_ENV}; default auto: the fastest one that "
        "reproduces the pipeline, see docs/serving.md)",
    )
    parser.add_argument(
        "--model-name", help=f"model name in V2 URLs (env {MODEL_NAME_ENV}; default: the run)"
    )
    parser.add_argument("--host", help="listen address (env PERENNIAL_SERVE_HOST; 0.0.0.0)")
    for flag, env, default, minimum, text in _INT_OPTIONS:
        parser.add_argument(
            flag,
            type=int,
            metavar="N",
            help=f"{text} (env {env}; default {default}, min {minimum})",
        )
    for flag, env, seconds, _, text in _SECONDS_OPTIONS:
        parser.add_argument(
            flag, type=float, metavar="SECONDS", help=f"{text} (env {env}; default {seconds:g})"
        )
    parser.add_argument(
        "--feedback-key-file",
        metavar="PATH",
        help=f"file holding the deployment's feedback key, which signs prediction ids (env "
        f"{FEEDBACK_KEY_FILE_ENV}, or the key itself in {FEEDBACK_KEY_ENV}; default: a key "
        "generated at start, so only this server can score its ids)",
    )
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="log level (env PERENNIAL_LOG_LEVEL; info)",
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        default=None,
        help="log every request (env PERENNIAL_ACCESS_LOG=true; off: it costs latency)",
    )
    return parser


def parse_args(argv: Sequence[str], env: Mapping[str, str]) -> ServeConfig:
    """Flags first, then the environment, then defaults. Raises :class:`ConfigError`."""
    parser = _parser()
    args = parser.parse_args(list(argv))

    model_uri = args.model_uri or env.get(MODEL_URI_ENV)
    if not model_uri:
        raise ConfigError(f"--model-uri is required (or set {MODEL_URI_ENV})")
    skip = args.insecure_skip_verify
    if skip is None:
        skip = env.get("PERENNIAL_INSECURE_SKIP_VERIFY", "").strip().lower() in _TRUE
    sha256 = args.sha256 or env.get(SHA256_ENV) or None
    if sha256 is None and not skip:
        raise ConfigError(
            f"--sha256 is required (or set {SHA256_ENV}): the model file is verified before "
            "it is loaded; pass --insecure-skip-verify to serve without it"
        )
    if sha256 is not None and not _SHA256.match(sha256):
        raise ConfigError(f"--sha256 must be 64 hex characters, got {sha256!r}")
    onnx_sha256 = args.onnx_sha256 or env.get(ONNX_SHA256_ENV) or None
    if onnx_sha256 is not None and not _SHA256.match(onnx_sha256):
        raise ConfigError(f"--onnx-sha256 must be 64 hex characters, got {onnx_sha256!r}")
    backend = args.backend or env.get(BACKEND_ENV, "auto").strip().lower() or "auto"
    if backend not in BACKENDS:
        raise ConfigError(f"{BACKEND_ENV} must be one of {', '.join(BACKENDS)}, got {backend!r}")

    ints: dict[str, int] = {}
    for flag, env_name, default, minimum, _ in _INT_OPTIONS:
        key = flag[2:].replace("-", "_")
        value = getattr(args, key)
        if value is None and env.get(env_name):
            try:
                value = int(env[env_name])
            except ValueError:
                raise ConfigError(f"{env_name} must be an integer, got {env[env_name]!r}") from None
        if value is None:
            value = default
        if value < minimum:
            raise ConfigError(f"{flag} must be at least {minimum}, got {value}")
        ints[key] = value
    floats: dict[str, float] = {}
    for flag, env_name, default_seconds, above, _ in _SECONDS_OPTIONS:
        key = flag[2:].replace("-", "_")
        seconds = getattr(args, key)
        if seconds is None and env.get(env_name):
            try:
                seconds = float(env[env_name])
            except ValueError:
                raise ConfigError(
                    f"{env_name} must be a number of seconds, got {env[env_name]!r}"
                ) from None
        if seconds is None:
            seconds = default_seconds
        if not (math.isfinite(seconds) and seconds > above):
            raise ConfigError(f"{flag} must be a positive number of seconds, got {seconds}")
        floats[key] = seconds
    if ints["workers"] == 0:
        ints["workers"] = available_cores()
    if ints["port"] > 65535:
        raise ConfigError(f"--port must be at most 65535, got {ints['port']}")

    log_level = args.log_level or env.get("PERENNIAL_LOG_LEVEL", "info").lower()
    if log_level not in {"debug", "info", "warning", "error"}:
        raise ConfigError("PERENNIAL_LOG_LEVEL must be debug, info, warning or error")
    access_log = args.access_log
    if access_log is None:
        access_log = env.get("PERENNIAL_ACCESS_LOG", "").strip().lower() in _TRUE

    feedback_key, generated = _feedback_key(args.feedback_key_file, env)
    return ServeConfig(
        model_uri=model_uri,
        sha256=sha256.lower() if sha256 else None,
        insecure_skip_verify=bool(skip),
        onnx_sha256=onnx_sha256.lower() if onnx_sha256 else None,
        backend=backend,
        model_name=args.model_name or env.get(MODEL_NAME_ENV) or None,
        host=args.host or env.get("PERENNIAL_SERVE_HOST") or "0.0.0.0",
        log_level=log_level,
        access_log=bool(access_log),
        header_timeout=floats["header_timeout"],
        body_timeout=floats["body_timeout"],
        feedback_key=feedback_key,
        feedback_key_generated=generated,
        **ints,
    )


def _feedback_key(path: str | None, env: Mapping[str, str]) -> tuple[str, bool]:
    """(key, generated): the key file (flag, then env), else the key env var, else a new
    random key (shared by this server's workers, not by other servers)."""
    path = path or env.get(FEEDBACK_KEY_FILE_ENV) or None
    where = f"--feedback-key-file {path}"
    if path is not None:
        try:
            key = Path(path).read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where} cannot be read: {exc}") from None
    else:
        key = env.get(FEEDBACK_KEY_ENV, "").strip()
        where = FEEDBACK_KEY_ENV
        if not key:
            return secrets.token_hex(32), True
    if len(key) < MIN_FEEDBACK_KEY_CHARS:
        raise ConfigError(
            f"{where} holds {len(key)} characters; a feedback key needs at least "
            f"{MIN_FEEDBACK_KEY_CHARS} (e.g. 64 hex digits: openssl rand -hex 32)"
        )
    return key, False
