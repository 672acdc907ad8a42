"""`perennial-runtime train`: one training run, from TrainConfig to TrainResult.

Steps: check the config (estimator and params), load the data, fetch the champion (model
verified by sha256, and its metadata), validate the data (blocking), split a seeded
holdout, fit the pipeline, score candidate and champion on the same holdout, compute
permutation importance and reference statistics, export ``model.onnx`` when onnxruntime
reproduces the pipeline on the holdout (best effort, ``compiled/compiled.py``), write
``model.skops``, ``model.onnx``, ``metadata.json`` and ``MODEL_CARD.md`` to
``<artifactUri>/<run>/`` (overwriting: a retried Job writes the same folder), read the
models back to check they load and re-predict their sample, and report. :func:`train`
never raises for expected failures: the result says what failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from perennial_runtime import artifacts, drift
from perennial_runtime.compiled.compiled import CompiledOutcome, compile_checked, result_summary
from perennial_runtime.compiled.onnx_layout import EMBEDDED_SHA256_ATTRIBUTE
from perennial_runtime.contract import (
    DEFAULT_PRIMARY_METRIC,
    EXIT_CODE_FOR,
    METADATA_FILE,
    MODEL_CARD_FILE,
    MODEL_FILE,
    ONNX_FILE,
    TRAIN_CONFIG_ENV,
    TRAIN_CONFIG_FILE_ENV,
    ArtifactRef,
    ChampionRef,
    ColumnSchema,
    DataReport,
    ExitCode,
    FailureReason,
    FeatureImportance,
    FeatureReference,
    FeatureSpec,
    ModelFile,
    ModelMetadata,
    SampleSet,
    Task,
    TrainConfig,
    TrainResult,
    metrics_for,
)
from perennial_runtime.failures import (
    ArtifactWriteError,
    ChampionUnavailableError,
    DataValidationError,
    InvalidConfigError,
    RunFailedError,
    TrainingError,
)
from perennial_runtime.training import data, model_card, report
from perennial_runtime.training.estimators import (
    build_estimator,
    effective_params,
    invalid_param_error,
    json_value,
)
from perennial_runtime.training.evaluate import (
    class_labels,
    holdout_sha256,
    prepare_target,
    score,
    split,
)
from perennial_runtime.training.importance import top_features
from perennial_runtime.training.preprocessing import (
    NUMERIC_TYPES,
    category_label,
    coerce_features,
    feature_infos,
    feature_schema,
)
from perennial_runtime.training.validation import feature_spec_changes, holdout_warnings, validate
from perennial_runtime.versions import library_versions

log = logging.getLogger("perennial_runtime.training.trainer")

SAMPLE_ROWS = 20
IMAGE_ENV = "PERENNIAL_IMAGE"
_MAX_FIT_WARNINGS = 5


@dataclass
class _Progress:
    """What is known so far, for a failure report."""

    data: DataReport | None = None
    champion_run: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Champion:
    ref: ChampionRef
    meta: ModelMetadata
    model: Any


def train(config: TrainConfig) -> TrainResult:
    """Run one training; expected failures come back as ``status: Failed`` results."""
    started = time.monotonic()
    progress = _Progress()
    try:
        result = _train(config, progress)
    except RunFailedError as exc:
        if isinstance(exc, DataValidationError) and progress.data is not None:
            progress.data.validation_passed = False
            known = {(v.rule, v.column) for v in progress.data.violations}
            progress.data.violations += [
                v for v in exc.violations if (v.rule, v.column) not in known
            ]
        result = TrainResult(
            status="Failed",
            reason=exc.reason.value,
            message=exc.message,
            data=progress.data,
            champion_run=progress.champion_run,
        )
    except Exception as exc:
        log.error("unexpected error:\n%s", traceback.format_exc())
        result = TrainResult(
            status="Failed",
            reason=FailureReason.UNEXPECTED.value,
            message=f"{type(exc).__name__}: {exc}",
            data=progress.data,
            champion_run=progress.champion_run,
        )
    result.duration_seconds = round(time.monotonic() - started, 3)
    return result


@dataclass(frozen=True)
class _Prepared:
    """The validated data, split: model inputs and the raw holdout (for the champion)."""

    features: list[ColumnSchema]
    x_train: pd.DataFrame
    y_train: pd.Series[Any]
    x_test: pd.DataFrame
    y_test: pd.Series[Any]
    holdout_raw: pd.DataFrame
    holdout_sha256: str
    classes: list[Any]


@dataclass(frozen=True)
class _Evaluation:
    metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    importance: list[FeatureImportance]
    predictions: Any


@dataclass(frozen=True)
class _Stored:
    run_uri: str
    model_uri: str
    model_sha256: str
    model_size: int
    onnx_uri: str | None
    onnx: ModelFile | None


def _train(config: TrainConfig, progress: _Progress) -> TrainResult:
    """The stages of a run, in order; each raises a RunFailedError naming what failed."""
    primary = _primary_metric(config)
    estimator = build_estimator(config.model, config.evaluation.seed)
    loaded = _load_data(config, progress)
    champion = _load_champion(config.champion, config.model.task) if config.champion else None
    not_compared = _feature_spec_change(config, champion)
    if not_compared is not None:
        # The user changed the features on purpose: no skew check against the champion's
        # schema and no scoring of it on a holdout it was not trained for.
        log.info("champion not compared: %s", not_compared)
        champion = None
    if champion is not None:
        progress.champion_run = champion.ref.run
    assert progress.data is not None
    data_report = progress.data
    features = _validate(config, loaded.frame, champion, data_report)
    prepared = _prepare(config, loaded.frame, features, data_report)
    pipeline = _fit(
        config,
        features=features,
        estimator=estimator,
        x_train=prepared.x_train,
        y_train=prepared.y_train,
        data_report=data_report,
    )
    evaluation = _evaluate(config, pipeline, prepared, champion, data_report)
    compiled = compile_checked(
        pipeline, features, config.model.task is Task.CLASSIFICATION, prepared.x_test, config.onnx
    )
    meta_inputs = _MetaInputs(primary, estimator, prepared, evaluation, champion, data_report)
    stored = _store(config, pipeline, compiled, meta_inputs)
    result = _succeeded(config, loaded.rows, meta_inputs, stored, compiled)
    result.champion_not_compared = not_compared
    if config.mlflow is not None:
        from perennial_runtime import tracking

        result.tracking = tracking.log_training(config, result)
    return result


def _feature_spec_change(config: TrainConfig, champion: _Champion | None) -> str | None:
    """Why the champion cannot be compared with this run (None: it can): its recorded
    feature spec differs from this run's. A champion that recorded none (trained before
    the spec was recorded) counts as unchanged, so a schema difference stays skew."""
    if champion is None or champion.meta.feature_spec is None:
        return None
    changed = feature_spec_changes(
        champion.meta.feature_spec, FeatureSpec.of(config.data), champion.meta.features
    )
    if not changed:
        return None
    return (
        f"champion {champion.ref.run} was trained on a different feature spec (changed: "
        f"{'; '.join(changed)})"
    )[:300]


def _load_data(config: TrainConfig, progress: _Progress) -> data.LoadedData:
    """Read the table; the data report exists from here on (load violations land in it)."""
    progress.data = DataReport(uri=config.data.uri)
    loaded = data.load(config.data)
    log.info(
        "loaded %d rows x %d columns from %s (sha256 %s)",
        loaded.rows,
        loaded.columns,
        loaded.uri,
        loaded.fingerprint,
    )
    progress.data = DataReport(
        uri=loaded.uri,
        fingerprint=loaded.fingerprint,
        rows=loaded.rows,
        columns=loaded.columns,
    )
    return loaded


def _validate(
    config: TrainConfig, frame: pd.DataFrame, champion: _Champion | None, report: DataReport
) -> list[ColumnSchema]:
    """The feature schema, once the data passed every rule (else DataValidationError)."""
    features, schema_warnings = feature_schema(frame, config.data.target, config.data.columns)
    checked = validate(
        frame,
        target=config.data.target,
        task=config.model.task,
        features=features,
        limits=config.validation,
        declared=config.data.columns,
        reference=champion.meta.reference if champion else None,
        champion_features=champion.meta.features if champion else None,
    )
    report.warnings = schema_warnings + checked.warnings
    report.drift_scores = checked.drift_scores
    report.max_drift = checked.max_drift
    report.violations = checked.violations
    report.validation_passed = checked.passed
    if not checked.passed:
        raise DataValidationError(checked.summary(), checked.violations)
    log.info("data validation passed (%d features)", len(features))
    return features


def _prepare(
    config: TrainConfig, frame: pd.DataFrame, features: list[ColumnSchema], report: DataReport
) -> _Prepared:
    """Coerce, split with the run's seed, hash the holdout, warn about the split."""
    task = config.model.task
    target = config.data.target
    x = coerce_features(frame, features)
    y = prepare_target(frame[target], task)
    parts = split(y, task, config.evaluation.test_size, config.evaluation.seed)
    holdout_raw = frame.iloc[parts.test]
    split_warnings = holdout_warnings(
        frame.iloc[parts.train], holdout_raw, target, task, [f.name for f in features] + [target]
    )
    for warning in split_warnings:
        log.warning("%s", warning)
    report.warnings += split_warnings
    y_train = y.iloc[parts.train]
    return _Prepared(
        features=features,
        x_train=x.iloc[parts.train],
        y_train=y_train,
        x_test=x.iloc[parts.test],
        y_test=y.iloc[parts.test],
        holdout_raw=holdout_raw,
        holdout_sha256=holdout_sha256(holdout_raw),
        classes=class_labels(y_train) if task is Task.CLASSIFICATION else [],
    )


def _evaluate(
    config: TrainConfig,
    pipeline: Any,
    prepared: _Prepared,
    champion: _Champion | None,
    report: DataReport,
) -> _Evaluation:
    """Candidate and champion on the same holdout; feature importance (best effort)."""
    task = config.model.task
    try:
        metrics, metric_warnings = score(
            pipeline, prepared.x_test, prepared.y_test, task, prepared.classes
        )
    except Exception as exc:
        raise TrainingError(
            f"the trained {config.model.estimator} could not be evaluated on the holdout: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    report.warnings += metric_warnings
    log.info("candidate metrics on %d holdout rows: %s", len(prepared.x_test), metrics)

    champion_metrics: dict[str, float] | None = None
    if champion is not None:
        champion_metrics = _score_champion(
            champion, prepared.holdout_raw, prepared.y_test, task, prepared.classes
        )
        log.info("champion %s metrics on the same holdout: %s", champion.ref.run, champion_metrics)

    try:
        importance = top_features(
            pipeline,
            prepared.x_test,
            prepared.y_test,
            task,
            seed=config.evaluation.seed,
            top_n=config.evaluation.top_features,
        )
    except Exception as exc:  # optional output: never fails a run that trained
        log.warning("feature importance not computed: %s", exc)
        report.warnings.append(f"feature importance not computed: {exc}")
        importance = []
    return _Evaluation(
        metrics=metrics,
        champion_metrics=champion_metrics,
        importance=importance,
        predictions=pipeline.predict(prepared.x_test),
    )


@dataclass(frozen=True)
class _MetaInputs:
    primary: str
    estimator: Any
    prepared: _Prepared
    evaluation: _Evaluation
    champion: _Champion | None
    data_report: DataReport


def _store(
    config: TrainConfig, pipeline: Any, compiled: CompiledOutcome, inputs: _MetaInputs
) -> _Stored:
    """Write model.skops (+ model.onnx), the card and metadata.json; read them back."""
    run_uri = artifacts.run_dir(config.artifact_uri, config.run_name)
    model_uri = artifacts.join_uri(run_uri, MODEL_FILE)
    onnx_file: ModelFile | None = None
    if compiled.data is not None:
        onnx_file = ModelFile(
            file=ONNX_FILE,
            sha256=artifacts.sha256_hex(compiled.data),
            size=len(compiled.data),
        )
        # model.skops carries model.onnx's sha256: verifying one file pins both.
        setattr(pipeline, EMBEDDED_SHA256_ATTRIBUTE, onnx_file.sha256)
    try:
        model_bytes = artifacts.dump_model(pipeline)
    except artifacts.UntrustedModelError as exc:
        raise TrainingError(
            f"{config.model.estimator} with these model.params cannot be stored: {exc}"
        ) from exc
    model_sha = artifacts.sha256_hex(model_bytes)
    meta = _metadata(
        config,
        inputs,
        compiled,
        ModelFile(file=MODEL_FILE, sha256=model_sha, size=len(model_bytes)),
        onnx_file,
    )
    onnx_uri = artifacts.join_uri(run_uri, ONNX_FILE)
    _write_artifacts(run_uri, model_uri, model_bytes, meta, (onnx_uri, compiled.data))
    _check_round_trip(model_uri, model_sha, meta)
    if onnx_file is not None:
        _check_onnx_round_trip(onnx_uri, onnx_file.sha256)
        log.info("wrote %s (sha256 %s, %d bytes)", onnx_uri, onnx_file.sha256, onnx_file.size)
    log.info("wrote %s (sha256 %s, %d bytes)", model_uri, model_sha, len(model_bytes))
    return _Stored(
        run_uri=run_uri,
        model_uri=model_uri,
        model_sha256=model_sha,
        model_size=len(model_bytes),
        onnx_uri=onnx_uri if onnx_file is not None else None,
        onnx=onnx_file,
    )


def _metadata(
    config: TrainConfig,
    inputs: _MetaInputs,
    compiled: CompiledOutcome,
    model_file: ModelFile,
    onnx_file: ModelFile | None,
) -> ModelMetadata:
    task = config.model.task
    prepared, evaluation, champion = inputs.prepared, inputs.evaluation, inputs.champion
    return ModelMetadata(
        run=config.run_name,
        pipeline=config.pipeline_name,
        namespace=config.namespace,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        task=task,
        target=config.data.target,
        features=feature_infos(prepared.features),
        classes=[json_value(c) for c in prepared.classes] if task is Task.CLASSIFICATION else None,
        estimator=config.model.estimator,
        params=effective_params(inputs.estimator),
        seed=config.evaluation.seed,
        test_size=config.evaluation.test_size,
        primary_metric=inputs.primary,
        data=inputs.data_report,
        metrics=evaluation.metrics,
        champion_run=champion.ref.run if champion else None,
        champion_metrics=evaluation.champion_metrics,
        holdout_sha256=prepared.holdout_sha256,
        feature_spec=FeatureSpec.of(config.data),
        reference=_references(prepared.x_train, prepared.features),
        prediction_reference=_prediction_reference(evaluation.predictions, task),
        feature_importance=evaluation.importance,
        libraries=library_versions(),
        image=config.image or os.environ.get(IMAGE_ENV),
        model=model_file,
        onnx=onnx_file,
        onnx_export=compiled.report,
        sample=_sample(prepared.x_test, evaluation.predictions),
    )


def _succeeded(
    config: TrainConfig, rows: int, inputs: _MetaInputs, stored: _Stored, compiled: CompiledOutcome
) -> TrainResult:
    primary, evaluation, champion = inputs.primary, inputs.evaluation, inputs.champion
    metrics, champion_metrics = evaluation.metrics, evaluation.champion_metrics
    return TrainResult(
        status="Succeeded",
        reason="Trained",
        message=(
            f"trained {config.model.estimator} on {rows} rows; "
            f"{primary}={metrics.get(primary, float('nan')):.4f}"
            + (
                f" (champion {champion.ref.run}: {champion_metrics.get(primary, float('nan')):.4f})"
                if champion is not None and champion_metrics is not None
                else ""
            )
        ),
        metrics=metrics,
        champion_metrics=champion_metrics,
        champion_run=champion.ref.run if champion else None,
        holdout_sha256=inputs.prepared.holdout_sha256,
        holdout_rows=len(inputs.prepared.x_test),
        artifact=ArtifactRef(
            uri=stored.run_uri,
            model_uri=stored.model_uri,
            sha256=stored.model_sha256,
            size=stored.model_size,
            onnx_uri=stored.onnx_uri,
            onnx_sha256=stored.onnx.sha256 if stored.onnx is not None else None,
        ),
        data=inputs.data_report,
        feature_importance=evaluation.importance,
        onnx_export=result_summary(compiled.report),
    )


def _primary_metric(config: TrainConfig) -> str:
    task = config.model.task
    primary = config.evaluation.primary_metric or DEFAULT_PRIMARY_METRIC[task]
    if primary not in metrics_for(task):
        raise InvalidConfigError(
            f"evaluation.primaryMetric {primary!r} is not a {task.value} metric; "
            f"choose one of: {', '.join(metrics_for(task))}"
        )
    return primary


def _load_champion(ref: ChampionRef, task: Task) -> _Champion:
    """The champion's verified model and metadata; any problem is ChampionUnavailable."""
    meta_uri = ref.metadata_uri or artifacts.join_uri(
        ref.model_uri.rsplit("/", 1)[0], METADATA_FILE
    )
    try:
        model = artifacts.load_model(artifacts.fetch_verified(ref.model_uri, ref.sha256))
        raw_meta = artifacts.read_bytes(meta_uri)
    except artifacts.ArtifactError as exc:
        raise ChampionUnavailableError(f"champion {ref.run} unavailable: {exc}") from exc
    except Exception as exc:
        raise ChampionUnavailableError(
            f"champion {ref.run} could not be loaded from {ref.model_uri}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    try:
        meta = ModelMetadata.model_validate(json.loads(raw_meta))
    except (ValueError, ValidationError) as exc:
        raise ChampionUnavailableError(
            f"champion {ref.run}: invalid metadata at {meta_uri}: {exc}"
        ) from exc
    if meta.task is not task:
        raise ChampionUnavailableError(
            f"champion {ref.run} is a {meta.task.value} model and cannot be compared with a "
            f"{task.value} candidate"
        )
    log.info("champion %s loaded from %s (sha256 verified)", ref.run, ref.model_uri)
    return _Champion(ref=ref, meta=meta, model=model)


def _fit(
    config: TrainConfig,
    *,
    features: list[ColumnSchema],
    estimator: Any,
    x_train: pd.DataFrame,
    y_train: pd.Series[Any],
    data_report: DataReport,
) -> Any:
    from sklearn.utils._param_validation import InvalidParameterError

    from perennial_runtime.training.preprocessing import build_pipeline

    pipeline = build_pipeline(features, estimator)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pipeline.fit(x_train, y_train)
    except InvalidParameterError as exc:
        raise invalid_param_error(exc, config.model.estimator) from exc
    except Exception as exc:
        raise TrainingError(
            f"{config.model.estimator} failed to fit: {type(exc).__name__}: {exc}"
        ) from exc
    seen: list[str] = []
    for item in caught:
        text = f"fit: {item.category.__name__}: {str(item.message).splitlines()[0]}"
        if text not in seen:
            seen.append(text)
            log.warning("%s", text)
    data_report.warnings += seen[:_MAX_FIT_WARNINGS]
    return pipeline


def _score_champion(
    champion: _Champion,
    holdout_raw: pd.DataFrame,
    y_test: pd.Series[Any],
    task: Task,
    classes: list[Any],
) -> dict[str, float]:
    absent = [f.name for f in champion.meta.features if f.name not in holdout_raw.columns]
    if absent:  # validation refuses this first (championSchema); never impute them
        raise ChampionUnavailableError(
            f"champion {champion.ref.run} cannot be scored: the holdout lacks its feature(s) "
            f"{', '.join(absent)}"
        )
    try:
        x_champion = coerce_features(holdout_raw, champion.meta.features)
        metrics, _ = score(champion.model, x_champion, y_test, task, classes)
    except Exception as exc:
        raise ChampionUnavailableError(
            f"champion {champion.ref.run} could not be scored on the holdout: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return metrics


def _references(x_train: pd.DataFrame, features: list[ColumnSchema]) -> dict[str, FeatureReference]:
    """Training-split distribution of every feature (what drift is measured against)."""
    refs: dict[str, FeatureReference] = {}
    for col in features:
        values = x_train[col.name]
        if col.type in NUMERIC_TYPES:
            refs[col.name] = drift.numeric_reference(values.to_numpy(dtype=float))
        else:
            refs[col.name] = drift.categorical_reference(values.tolist())
    return refs


def _prediction_reference(predictions: Any, task: Task) -> FeatureReference:
    if task is Task.CLASSIFICATION:
        return drift.categorical_reference([category_label(p) for p in predictions])
    return drift.numeric_reference(np.asarray(predictions, dtype=float))


def _sample(x_test: pd.DataFrame, predictions: Any) -> SampleSet:
    rows = x_test.head(SAMPLE_ROWS)
    return SampleSet(
        instances=[[json_value(v) for v in row] for row in rows.itertuples(index=False)],
        predictions=[json_value(p) for p in list(predictions)[: len(rows)]],
    )


def _write_artifacts(
    run_uri: str,
    model_uri: str,
    model: bytes,
    meta: ModelMetadata,
    onnx: tuple[str, bytes | None],
) -> None:
    """Models, card, then metadata last: a folder with metadata.json is complete.

    A retried run without an ONNX export removes the ``model.onnx`` an earlier attempt
    left, so the folder never holds a file its metadata does not describe.
    """
    onnx_uri, onnx_bytes = onnx
    try:
        artifacts.write_bytes(model_uri, model)
        if onnx_bytes is not None:
            artifacts.write_bytes(onnx_uri, onnx_bytes)
        else:
            _remove_if_present(onnx_uri)
        card = model_card.render(meta).encode("utf-8")
        artifacts.write_bytes(artifacts.join_uri(run_uri, MODEL_CARD_FILE), card)
        body = json.dumps(meta.to_dict(), indent=2, sort_keys=False).encode("utf-8")
        artifacts.write_bytes(artifacts.join_uri(run_uri, METADATA_FILE), body)
    except artifacts.ArtifactError as exc:
        raise ArtifactWriteError(str(exc)) from exc


def _remove_if_present(uri: str) -> None:
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(uri, **artifacts.storage_options_for(uri))
        if fs.exists(path):
            fs.rm(path)
    except Exception as exc:
        raise artifacts.ArtifactError(f"cannot remove the stale artifact {uri}: {exc}") from exc


def _check_onnx_round_trip(onnx_uri: str, sha256: str) -> None:
    """The stored model.onnx reads back with the sha256 recorded for it."""
    try:
        artifacts.fetch_verified(onnx_uri, sha256)
    except artifacts.ArtifactError as exc:
        raise ArtifactWriteError(f"stored model.onnx does not read back: {exc}") from exc


def _check_round_trip(model_uri: str, sha256: str, meta: ModelMetadata) -> None:
    """Read the stored model back, load it under the trust policy, re-predict the sample."""
    try:
        model = artifacts.load_model(artifacts.fetch_verified(model_uri, sha256))
    except artifacts.ArtifactError as exc:
        raise ArtifactWriteError(f"stored model does not load back: {exc}") from exc
    columns = [f.name for f in meta.features]
    instances = pd.DataFrame(meta.sample.instances, columns=columns)
    again = [json_value(p) for p in model.predict(coerce_features(instances, meta.features))]
    expected = meta.sample.predictions
    if meta.task is Task.CLASSIFICATION:
        same = again == expected
    else:
        same = bool(np.allclose(np.asarray(again, float), np.asarray(expected, float)))
    if not same:
        raise ArtifactWriteError(
            f"stored model {model_uri} does not reproduce its sample predictions"
        )


# --- command line -------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perennial-runtime train",
        description=(
            "Train, evaluate and store one model. The TrainConfig comes from --config, "
            f"else ${TRAIN_CONFIG_FILE_ENV} (a file), else ${TRAIN_CONFIG_ENV} (JSON)."
        ),
    )
    parser.add_argument("--config", metavar="FILE", help="TrainConfig file (JSON or YAML)")
    parser.add_argument(
        "--result-path",
        metavar="PATH",
        help="where to write the TrainResult JSON (default: the config's resultPath, "
        "/dev/termination-log)",
    )
    return parser


def load_config(config_file: str | None, env: dict[str, str] | None = None) -> TrainConfig:
    """The TrainConfig from a file, ``$PERENNIAL_TRAIN_CONFIG_FILE`` or the JSON env var."""
    env = dict(os.environ) if env is None else env
    path = config_file or env.get(TRAIN_CONFIG_FILE_ENV)
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidConfigError(f"cannot read the config file {path}: {exc}") from exc
        origin = path
    elif env.get(TRAIN_CONFIG_ENV):
        text, origin = env[TRAIN_CONFIG_ENV], f"${TRAIN_CONFIG_ENV}"
    else:
        raise InvalidConfigError(
            f"no TrainConfig: pass --config FILE or set {TRAIN_CONFIG_FILE_ENV} "
            f"(a file) or {TRAIN_CONFIG_ENV} (JSON)"
        )
    try:
        raw = json.loads(text)
    except json.JSONDecodeError:
        import yaml

        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidConfigError(f"{origin} is neither JSON nor YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidConfigError(f"{origin}: the TrainConfig must be a JSON object")
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise InvalidConfigError(f"invalid TrainConfig in {origin}: {_errors(exc)}") from exc


def _errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def exit_code(result: TrainResult) -> int:
    if result.status == "Succeeded":
        return int(ExitCode.OK)
    try:
        return int(EXIT_CODE_FOR[FailureReason(result.reason)])
    except ValueError:
        return int(ExitCode.UNEXPECTED)


def write_result(result: TrainResult, path: str) -> TrainResult:
    """Write the compact result JSON to ``path``; returns what was written."""
    compacted = report.compact(result)
    payload = compacted.to_json()
    try:
        Path(path).write_text(payload, encoding="utf-8")
    except OSError as exc:
        log.error("cannot write the result to %s: %s", path, exc)
    return compacted


def main(argv: list[str]) -> int:
    """``perennial-runtime train [--config FILE] [--result-path PATH]``; exit per ExitCode."""
    args = _parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
        )
    result_path: str = args.result_path or TrainConfig.model_fields["result_path"].default
    try:
        config = load_config(args.config)
    except InvalidConfigError as exc:
        result = TrainResult(status="Failed", reason=exc.reason.value, message=exc.message)
    else:
        result_path = args.result_path or config.result_path
        log.info("training run %s (%s)", config.run_name, config.model.estimator)
        result = train(config)
    written = write_result(result, result_path)
    print(report.summary(result), file=sys.stderr)
    print(written.to_json(), flush=True)
    return exit_code(written)
