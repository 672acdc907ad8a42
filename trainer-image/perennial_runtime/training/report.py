"""The TrainResult as it leaves the container: compact (<= 4 KiB) and human-readable.

The termination message holds at most 4096 bytes. When the full result is larger, optional
parts go first, in order: feature importance, per-feature drift scores, warnings, then
the violation list is shortened and the message trimmed; ``truncated`` is set. Status,
reason, metrics, champion metrics, the artifact and the holdout hash are never dropped
(the full report is in ``metadata.json`` when the run succeeded).
"""

from __future__ import annotations

from perennial_runtime.contract import TERMINATION_MESSAGE_LIMIT, TrainResult

_ELLIPSIS = "..."


def size_of(result: TrainResult) -> int:
    return len(result.to_json().encode("utf-8"))


def compact(result: TrainResult, limit: int = TERMINATION_MESSAGE_LIMIT) -> TrainResult:
    """A copy of ``result`` whose JSON fits in ``limit`` bytes."""
    out = result.model_copy(deep=True)
    if size_of(out) <= limit:
        return out
    out.truncated = True
    out.feature_importance = []
    if size_of(out) <= limit:
        return out
    if out.data is not None:
        out.data.drift_scores = {}
        if size_of(out) <= limit:
            return out
        out.data.warnings = []
        if size_of(out) <= limit:
            return out
        total = len(out.data.violations)
        while len(out.data.violations) > 1 and size_of(out) > limit:
            out.data.violations.pop()
        kept = len(out.data.violations)
        if kept < total:
            out.message = f"[{total - kept} of {total} violations not listed] " + out.message
    _trim_message(out, limit)
    if size_of(out) > limit and out.data is not None:
        out.data.violations = []
        _trim_message(out, limit)
    if size_of(out) > limit:
        out.data = None
        _trim_message(out, limit)
    return out


def _trim_message(result: TrainResult, limit: int) -> None:
    excess = size_of(result) - limit
    while excess > 0 and result.message:
        encoded = result.message.encode("utf-8")
        keep = max(len(encoded) - excess - len(_ELLIPSIS), 0)
        result.message = encoded[:keep].decode("utf-8", errors="ignore") + _ELLIPSIS
        if keep == 0:
            result.message = ""
        excess = size_of(result) - limit


def summary(result: TrainResult) -> str:
    """A few human-readable lines for the container log."""
    lines = [f"training {result.status}: {result.reason}"]
    if result.message:
        lines.append(f"  {result.message}")
    if result.metrics:
        lines.append("  metrics: " + _metrics(result.metrics))
    if result.champion_metrics is not None:
        lines.append(
            f"  champion {result.champion_run} on the same holdout: "
            + _metrics(result.champion_metrics)
        )
    if result.holdout_sha256:
        lines.append(f"  holdout: {result.holdout_rows} rows, sha256 {result.holdout_sha256}")
    if result.data is not None:
        data = result.data
        lines.append(
            f"  data: {data.uri} ({data.rows} rows x {data.columns} columns, "
            f"sha256 {data.fingerprint})"
        )
        for violation in data.violations:
            column = f"{violation.column}: " if violation.column else ""
            lines.append(f"  violation [{violation.rule}] {column}{violation.message}")
        for warning in data.warnings:
            lines.append(f"  warning: {warning}")
        if data.max_drift is not None:
            lines.append(f"  max drift vs champion (PSI): {data.max_drift:.3f}")
    if result.feature_importance:
        top = ", ".join(f"{f.feature} ({f.importance:.3f})" for f in result.feature_importance)
        lines.append(f"  top features: {top}")
    if result.artifact is not None:
        lines.append(
            f"  model: {result.artifact.model_uri} "
            f"({result.artifact.size} bytes, sha256 {result.artifact.sha256})"
        )
    if result.onnx_export is not None:
        export = result.onnx_export
        if export.exported and result.artifact is not None:
            lines.append(
                f"  model.onnx: {result.artifact.onnx_uri} (sha256 {result.artifact.onnx_sha256}); "
                f"{export.reason}"
            )
        else:
            lines.append(f"  no model.onnx: {export.reason}")
    if result.duration_seconds is not None:
        lines.append(f"  took {result.duration_seconds:.1f}s")
    return "\n".join(lines)


def _metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
