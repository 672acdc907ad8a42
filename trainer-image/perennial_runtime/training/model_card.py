"""``MODEL_CARD.md``: a human-readable page written beside every model."""

from __future__ import annotations

from perennial_runtime.contract import (
    MODEL_FILE,
    ONNX_FILE,
    ModelMetadata,
    Task,
    metric_higher_is_better,
)


def render(meta: ModelMetadata) -> str:
    """The model card for ``meta`` as Markdown."""
    lines: list[str] = [f"# Model card: {meta.run}", ""]
    lines += _intended_use(meta)
    lines += _data(meta)
    lines += _metrics(meta)
    lines += _features(meta)
    lines += _compiled(meta)
    lines += _lineage(meta)
    return "\n".join(lines).rstrip() + "\n"


def _intended_use(meta: ModelMetadata) -> list[str]:
    what = (
        f"predicts `{meta.target}` (classes: {', '.join(f'`{c}`' for c in meta.classes or [])})"
        if meta.task is Task.CLASSIFICATION
        else f"predicts the numeric value of `{meta.target}`"
    )
    pipeline = f" for pipeline `{meta.pipeline}`" if meta.pipeline else ""
    return [
        "## Intended use",
        "",
        f"A scikit-learn `{meta.estimator}` ({meta.task.value}) trained by Perennial{pipeline}; "
        f"it {what} from {len(meta.features)} input feature(s). It is meant to be served by "
        "Perennial's model server after passing the pipeline's gates, on data resembling the "
        "training data described below. Inputs far outside the recorded reference "
        "distributions show up as drift on the server's `/metrics`.",
        "",
    ]


def _data(meta: ModelMetadata) -> list[str]:
    data = meta.data
    lines = [
        "## Data",
        "",
        f"- Source: `{data.uri}`",
        f"- Fingerprint (sha256): `{data.fingerprint}`",
        f"- Rows: {data.rows}, columns: {data.columns}",
        f"- Holdout: {meta.test_size:.0%} of rows, seed {meta.seed}, "
        f"sha256 `{meta.holdout_sha256}`",
        f"- Validation: {'passed' if data.validation_passed else 'failed'}",
    ]
    if data.drift_scores:
        top = sorted(data.drift_scores.items(), key=lambda kv: -kv[1])[:5]
        shown = ", ".join(f"`{name}` {score:.3f}" for name, score in top)
        lines.append(f"- Drift vs the champion's training data (PSI, highest): {shown}")
    for warning in data.warnings[:10]:
        lines.append(f"- Warning: {warning}")
    lines.append("")
    return lines


def _metrics(meta: ModelMetadata) -> list[str]:
    champion = meta.champion_metrics
    lines = ["## Metrics (holdout)", ""]
    if champion is not None:
        lines += [
            f"The champion (`{meta.champion_run}`) was re-scored on the same holdout.",
            "",
            "| metric | candidate | champion | better |",
            "|---|---|---|---|",
        ]
        for name, value in meta.metrics.items():
            other = champion.get(name)
            if other is None:
                lines.append(f"| {name} | {value:.4f} | - | - |")
                continue
            higher = metric_higher_is_better(name)
            better = value > other if higher else value < other
            verdict = "candidate" if better else ("tie" if value == other else "champion")
            lines.append(f"| {name} | {value:.4f} | {other:.4f} | {verdict} |")
    else:
        lines += ["No champion yet: this is the first model of its pipeline.", ""]
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {name} | {value:.4f} |" for name, value in meta.metrics.items()]
    lines += [
        "",
        f"Primary metric: `{meta.primary_metric}` "
        f"({'higher' if metric_higher_is_better(meta.primary_metric) else 'lower'} is better). "
        "The operator's gates (absolute thresholds, minimum change over the champion) are "
        "evaluated on these numbers; the TrainingRun's status records each verdict.",
        "",
    ]
    return lines


def _features(meta: ModelMetadata) -> list[str]:
    lines = ["## Features", ""]
    if meta.feature_importance:
        lines += [
            "Top features by permutation importance on the holdout:",
            "",
            "| feature | importance |",
            "|---|---|",
        ]
        lines += [f"| {f.feature} | {f.importance:.4f} |" for f in meta.feature_importance]
        lines.append("")
    kinds: dict[str, int] = {}
    for feature in meta.features:
        kinds[feature.type.value] = kinds.get(feature.type.value, 0) + 1
    lines.append(
        "Input schema: " + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) + "."
    )
    lines.append("")
    return lines


def _compiled(meta: ModelMetadata) -> list[str]:
    report = meta.onnx_export
    if report is None:
        return []
    lines = ["## Compiled inference (ONNX)", ""]
    if meta.onnx is not None and report.exported:
        lines.append(
            f"`{ONNX_FILE}` (sha256 `{meta.onnx.sha256}`, {meta.onnx.size} bytes) holds the same "
            "pipeline for onnxruntime; the model server uses it when its sha256 verifies. "
            f"Accepted: {report.reason}."
        )
    else:
        lines.append(
            f"No `{ONNX_FILE}`: {report.reason}. The server predicts with scikit-learn "
            f"(`{MODEL_FILE}`)."
        )
    parity = report.parity
    if parity is not None:
        figures = [f"{parity.rows} rows"]
        if parity.label_mismatches is not None:
            figures.append(f"{parity.label_mismatches} label(s) differ")
        if parity.max_abs_diff is not None:
            figures.append(f"max absolute difference {parity.max_abs_diff:.3g}")
        if parity.max_rel_diff is not None:
            figures.append(f"max relative difference {parity.max_rel_diff:.3g}")
        lines += ["", "Parity with scikit-learn on the holdout: " + ", ".join(figures) + "."]
    tolerance = report.tolerance
    if tolerance is not None:
        lines += [
            "",
            f"Tolerance: labels {tolerance.label_mismatch_fraction:g} of the rows, "
            f"probabilities {tolerance.probability_abs_diff:g} (absolute), values "
            f"{tolerance.value_rel_diff:g} x max(1, |value|).",
        ]
    lines.append("")
    return lines


def _lineage(meta: ModelMetadata) -> list[str]:
    libs = ", ".join(f"{k} {v}" for k, v in sorted(meta.libraries.items()))
    params = ", ".join(f"{k}={v!r}" for k, v in sorted(meta.params.items()) if v is not None)
    return [
        "## Lineage",
        "",
        f"- Run: `{meta.run}`"
        + (f" in namespace `{meta.namespace}`" if meta.namespace else "")
        + f", created {meta.created_at}",
        f"- Estimator: `{meta.estimator}` with {params or 'default parameters'}",
        f"- Model file: `{MODEL_FILE}`, sha256 `{meta.model.sha256}`, {meta.model.size} bytes",
        f"- Image: `{meta.image or 'unknown'}`",
        f"- Libraries: {libs}",
        "",
    ]
