"""Load the served model: verify, parse, choose a backend, smoke-test.

Order matters: the model file's sha256 is checked (``artifacts.fetch_verified``) before a
single byte of it is parsed, and ``metadata.json`` must describe that same file. Then the
skops file is loaded under the trust policy. ``model.onnx``, when the run has one, is
checked against the sha256 recorded inside the verified ``model.skops`` (or
``--onnx-sha256``) before onnxruntime parses it; it serves only if it also reproduces
the pipeline on the sample rows and synthetic probe rows (else the pipeline serves, and
the reason is reported). Finally the sample rows stored with the model must predict what
the trainer recorded. Any failure is a :class:`LoadError` with a message meant for
``kubectl logs`` and the readiness body; a tampered ``model.onnx`` is one (the model is
never served), exactly like a tampered ``model.skops``.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np

from perennial_runtime import artifacts
from perennial_runtime.contract import (
    METADATA_FILE,
    ONNX_FILE,
    ModelMetadata,
    OnnxConfig,
    Task,
)
from perennial_runtime.onnx_layout import ARGMAX_CLASSIFIERS, EMBEDDED_SHA256_ATTRIBUTE
from perennial_runtime.serve.config import ServeConfig
from perennial_runtime.serve.errors import RequestError
from perennial_runtime.serve.fastpath import (
    NUMPY,
    CompiledPredictor,
    CompileError,
    compile_pipeline,
    verify,
)
from perennial_runtime.serve.predictors import (
    ONNXRUNTIME,
    SKLEARN,
    AnyArray,
    NotFiniteError,
    OnnxPredictor,
    PipelinePredictor,
    Predictor,
    disagreement,
    probe_batch,
)
from perennial_runtime.serve.schema import Batch, FeatureSchema, FloatMatrix

log = logging.getLogger("perennial_runtime.serve")

REGRESSION_RTOL = 1e-6
REGRESSION_ATOL = 1e-9


class LoadError(Exception):
    """The model cannot be served; the message says why.

    ``transient``: reading the artifacts failed (storage unreachable, file not there yet);
    the server retries. Everything else (integrity, trust policy, metadata, smoke test)
    is final.
    """

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(slots=True)  # created per request: no frozen-init cost
class Prediction:
    values: AnyArray  # labels (classification) or values (regression), shape (rows,)
    proba: FloatMatrix | None  # (rows, classes) for classifiers when asked


@dataclass(frozen=True)
class ServedModel:
    name: str
    version: str  # the run name
    sha256: str
    metadata: ModelMetadata
    schema: FeatureSchema
    predictor: Predictor
    classes: list[Any] | None  # JSON values, in the order of predict_proba's columns
    load_seconds: float
    backend_reason: str = ""  # why this backend (a sentence)
    onnx_sha256: str | None = None  # of the model.onnx being served
    tolerance: OnnxConfig | None = None  # how far the backend may be from the pipeline

    @property
    def backend(self) -> str:
        return self.predictor.kind

    @cached_property
    def predict_datatype(self) -> str:
        """The V2 datatype of the ``predict`` output."""
        return "FP64" if self.classes is None else datatype_of_labels(self.classes)

    @cached_property
    def output_names(self) -> tuple[str, ...]:
        return ("predict", "predict_proba") if self.classes is not None else ("predict",)

    @property
    def is_classifier(self) -> bool:
        return self.classes is not None

    def predict(self, batch: Batch, proba: bool = False, rows: str = "row {row}") -> Prediction:
        """Predictions for a validated batch; a 422 :class:`RequestError` for a value
        beyond the server's range or a non-finite output (``rows`` names a row in the
        message, e.g. ``"instances[{row}]"``).

        A classifier's probabilities are always computed: a NaN probability means its
        label is meaningless too, so they are checked even when not returned.
        """
        self.schema.check_range(batch, rows)
        classifier = self.is_classifier
        what = "probabilities" if classifier else "prediction"
        try:
            values, probabilities = self.predictor.predict(batch, classifier)
        except NotFiniteError as exc:
            raise self._not_finite(batch, exc.rows, rows, "preprocessed values") from None
        checked = probabilities if classifier else values
        # one reduction on the hot path; a non-finite sum takes the exact check (finite
        # values can overflow their sum)
        if checked is not None and not math.isfinite(float(np.add.reduce(checked, axis=None))):
            finite = np.isfinite(checked)
            bad = np.flatnonzero(~(finite.all(axis=1) if finite.ndim == 2 else finite))
            if len(bad):
                raise self._not_finite(batch, bad, rows, what)
        return Prediction(values, probabilities if proba and classifier else None)

    def _not_finite(self, batch: Batch, bad: Any, rows: str, what: str) -> RequestError:
        first = int(bad[0])
        cause = self.schema.farthest_out(batch, first, self.metadata.reference)
        cause = f" ({cause})" if cause else ""
        others = f"; {len(bad)} of {batch.rows} rows are affected" if len(bad) > 1 else ""
        return RequestError(
            f"{rows.format(row=first)}: the model's {what} for this row "
            f"{'is' if what == 'prediction' else 'are'} not finite (NaN or infinity){cause}: "
            f"the row is outside what the model can compute{others}",
            status=422,
        )


def datatype_of_labels(classes: list[Any]) -> str:
    """The V2 datatype of a classifier's labels."""
    if all(isinstance(c, bool) for c in classes):
        return "BOOL"
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "INT64"
    if all(isinstance(c, int | float) and not isinstance(c, bool) for c in classes):
        return "FP64"
    return "BYTES"


def run_uri_of(model_uri: str) -> str:
    """The folder holding ``model.skops`` (and ``metadata.json``)."""
    head, sep, _ = model_uri.rstrip("/").rpartition("/")
    return head if sep else "."


def read_metadata(run_uri: str) -> ModelMetadata:
    """``metadata.json``; unreadable is transient (ArtifactError), invalid is final."""
    uri = artifacts.join_uri(run_uri, METADATA_FILE)
    raw = artifacts.read_bytes(uri)
    try:
        return ModelMetadata.model_validate_json(raw)
    except ValueError as exc:
        raise LoadError(f"invalid {uri}: {exc}") from exc


def load(config: ServeConfig) -> ServedModel:
    started = time.monotonic()
    run_uri = run_uri_of(config.model_uri)
    try:
        if config.sha256 is not None:
            data = artifacts.fetch_verified(config.model_uri, config.sha256)
            metadata = read_metadata(run_uri)
            if metadata.model.sha256.lower() != config.sha256.lower():
                raise LoadError(
                    f"{METADATA_FILE} in {run_uri} describes a different model file "
                    f"(sha256 {metadata.model.sha256}, expected {config.sha256}); "
                    "refusing to serve a model with mismatched metadata"
                )
        else:
            metadata = read_metadata(run_uri)
            log.warning(
                "--insecure-skip-verify: no expected sha256 given; checking %s only against "
                "the sha256 recorded in its own %s",
                config.model_uri,
                METADATA_FILE,
            )
            data = artifacts.fetch_verified(config.model_uri, metadata.model.sha256)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skops/sklearn version notes go to the log below
            model = artifacts.load_model(data)
        onnx = fetch_onnx(config, metadata, model, run_uri)
    except (artifacts.ArtifactIntegrityError, artifacts.UntrustedModelError) as exc:
        raise LoadError(str(exc)) from exc
    except artifacts.ArtifactError as exc:  # reading failed: storage may come back
        raise LoadError(str(exc), transient=True) from exc
    except LoadError:
        raise
    except Exception as exc:
        raise LoadError(f"cannot load {config.model_uri}: {type(exc).__name__}: {exc}") from exc
    _note_versions(metadata)

    schema = FeatureSchema(metadata.features, max_rows=config.max_rows)
    classes = _check_model(model, metadata, schema)
    choice = choose_backend(
        model, schema, metadata, classes is not None, onnx=onnx, wanted=config.backend
    )
    served = ServedModel(
        name=config.model_name or metadata.run,
        version=metadata.run,
        sha256=metadata.model.sha256.lower(),
        metadata=metadata,
        schema=schema,
        predictor=choice.predictor,
        classes=classes,
        load_seconds=0.0,
        backend_reason=choice.reason,
        onnx_sha256=onnx.sha256
        if onnx is not None and choice.predictor.kind == ONNXRUNTIME
        else None,
        tolerance=choice.tolerance,
    )
    smoke_test(served)
    elapsed = time.monotonic() - started
    return replace(served, load_seconds=elapsed)


@dataclass(frozen=True)
class OnnxFile:
    """``model.onnx`` read and verified, or why it is not used (``data`` None)."""

    data: bytes | None
    sha256: str | None
    reason: str


def fetch_onnx(
    config: ServeConfig, metadata: ModelMetadata, model: Any, run_uri: str
) -> OnnxFile | None:
    """The run's ``model.onnx``, verified before anything parses it.

    None when the run has none. A file whose sha256 differs from the expected one raises
    ``ArtifactIntegrityError`` (the model is refused); an expected sha256 that disagrees
    with ``metadata.json`` raises :class:`LoadError`. Without any trustworthy expected
    sha256 the file is not used (``data`` None, with the reason).
    """
    recorded = metadata.onnx
    pinned = config.onnx_sha256.lower() if config.onnx_sha256 else None
    embedded = getattr(model, EMBEDDED_SHA256_ATTRIBUTE, None)
    embedded = embedded.lower() if isinstance(embedded, str) else None
    if recorded is None:
        if pinned is not None:
            raise LoadError(
                f"--onnx-sha256 was given but {METADATA_FILE} in {run_uri} records no "
                f"{ONNX_FILE}; refusing to serve a run that is not the one expected"
            )
        return None
    if pinned is not None and embedded is not None and pinned != embedded:
        raise LoadError(
            f"--onnx-sha256 {pinned} differs from the {ONNX_FILE} sha256 recorded in the "
            f"verified model file ({embedded}); refusing to serve mismatched files"
        )
    expected = pinned or embedded
    if expected is None and config.insecure_skip_verify:
        expected = recorded.sha256.lower()
    if expected is None:
        return OnnxFile(
            None,
            None,
            f"{ONNX_FILE} cannot be verified: the model file records no sha256 for it; "
            "pass --onnx-sha256",
        )
    if recorded.sha256.lower() != expected:
        raise LoadError(
            f"{METADATA_FILE} in {run_uri} describes a different {ONNX_FILE} (sha256 "
            f"{recorded.sha256}, expected {expected}); refusing to serve mismatched files"
        )
    data = artifacts.fetch_verified(artifacts.join_uri(run_uri, recorded.file), expected)
    return OnnxFile(data, expected, "")


def _note_versions(metadata: ModelMetadata) -> None:
    import sklearn

    trained_with = metadata.libraries.get("scikit-learn")
    if trained_with and trained_with != sklearn.__version__:
        log.warning(
            "model %s was trained with scikit-learn %s, serving with %s; the smoke test "
            "decides whether it still predicts the same",
            metadata.run,
            trained_with,
            sklearn.__version__,
        )


def _check_model(model: Any, metadata: ModelMetadata, schema: FeatureSchema) -> list[Any] | None:
    if not callable(getattr(model, "predict", None)):
        raise LoadError(f"the model object ({type(model).__name__}) has no predict method")
    n_in = getattr(model, "n_features_in_", None)
    if n_in is not None and int(n_in) != schema.width:
        raise LoadError(
            f"the model expects {n_in} input columns but {METADATA_FILE} lists "
            f"{schema.width} features"
        )
    if metadata.task is Task.REGRESSION:
        return None
    if not callable(getattr(model, "predict_proba", None)) or not hasattr(model, "classes_"):
        raise LoadError("a classification model must have classes_ and predict_proba")
    classes: list[Any] = np.asarray(model.classes_).tolist()
    if metadata.classes is not None and [str(c) for c in metadata.classes] != [
        str(c) for c in classes
    ]:
        raise LoadError(
            f"the model's classes {classes} differ from {METADATA_FILE} classes {metadata.classes}"
        )
    return classes


@dataclass(frozen=True)
class BackendChoice:
    predictor: Predictor
    reason: str
    tolerance: OnnxConfig | None  # set for onnxruntime: how far it may be from the pipeline


def choose_backend(
    model: Any,
    schema: FeatureSchema,
    metadata: ModelMetadata,
    classifier: bool,
    *,
    onnx: OnnxFile | None,
    wanted: str = "auto",
) -> BackendChoice:
    """The fastest predictor that reproduces the pipeline (``wanted`` is ``--backend``).

    ``auto``, in order: the numpy fast path for a fully compiled linear pipeline (faster
    than onnxruntime there); onnxruntime when ``model.onnx`` is verified and matches the
    pipeline; the numpy fast path with the estimator called by scikit-learn; the
    pipeline. A forced ``numpy`` or ``onnxruntime`` that cannot serve the model refuses it
    (:class:`LoadError`).
    """
    pipeline = PipelinePredictor(model, schema)
    if wanted == SKLEARN:
        return BackendChoice(pipeline, "--backend sklearn", None)
    compiled, compile_problem = _numpy_predictor(model, schema, metadata, classifier)
    if wanted == NUMPY:
        if compiled is None:
            raise LoadError(
                f"--backend numpy, but the numpy fast path cannot serve: {compile_problem}"
            )
        return BackendChoice(compiled, "--backend numpy", None)
    if wanted == "auto" and compiled is not None and compiled.linear:
        return BackendChoice(
            compiled,
            "linear pipeline compiled to numpy and verified (faster than onnxruntime for "
            "linear models)",
            None,
        )
    report = metadata.onnx_export
    tolerance = report.tolerance if report is not None and report.tolerance else OnnxConfig()
    if onnx is None:
        why = report.reason if report is not None else "the run predates compiled inference"
        onnx_problem = f"no {ONNX_FILE}: {why}"
    elif onnx.data is None:
        onnx_problem = onnx.reason
    else:
        onnx_problem, predictor = _onnx_predictor(
            onnx.data,
            pipeline=pipeline,
            schema=schema,
            metadata=metadata,
            classifier=classifier,
            tolerance=tolerance,
        )
        if predictor is not None:
            return BackendChoice(predictor, onnx_problem, tolerance)
    if wanted == ONNXRUNTIME:
        raise LoadError(
            f"--backend onnxruntime, but onnxruntime cannot serve this model: {onnx_problem}"
        )
    if compiled is not None:
        reason = (
            f"preprocessing compiled to numpy, {type(model[-1]).__name__} called by "
            f"scikit-learn ({onnx_problem})"
        )
        return BackendChoice(compiled, reason, None)
    log.info("serving through the scikit-learn pipeline: %s; %s", onnx_problem, compile_problem)
    return BackendChoice(pipeline, f"{onnx_problem}; numpy fast path: {compile_problem}", None)


def _numpy_predictor(
    model: Any, schema: FeatureSchema, metadata: ModelMetadata, classifier: bool
) -> tuple[CompiledPredictor | None, str]:
    """The verified numpy fast path, or (None, why not)."""
    try:
        compiled = compile_pipeline(model, schema)
    except CompileError as exc:
        return None, f"not compiled ({exc})"
    except Exception as exc:  # an unexpected fitted layout: the pipeline still works
        log.warning("numpy fast path failed to compile (%s: %s)", type(exc).__name__, exc)
        return None, f"failed to compile ({type(exc).__name__}: {exc})"
    try:
        sample: Batch | None = schema.from_rows(
            metadata.sample.instances, "metadata.sample.instances"
        )
    except RequestError:
        sample = None
    probes = probe_batch(schema, metadata.reference, sample)
    try:
        problem = verify(compiled, model, schema, probes, classifier)
        if problem is None and sample is not None:
            problem = verify(compiled, model, schema, sample, classifier)
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        log.warning("numpy fast path disagrees with the pipeline (%s)", problem)
        return None, f"disagrees with the pipeline ({problem})"
    return compiled, ""


def _onnx_predictor(
    data: bytes,
    *,
    pipeline: PipelinePredictor,
    schema: FeatureSchema,
    metadata: ModelMetadata,
    classifier: bool,
    tolerance: OnnxConfig,
) -> tuple[str, OnnxPredictor | None]:
    """(why, predictor): the predictor only when it matches the pipeline on probe rows."""
    from perennial_runtime.onnx_model import OnnxModel, OnnxModelError

    try:
        argmax = (
            np.asarray(getattr(pipeline.model, "classes_", []))
            if metadata.estimator in ARGMAX_CLASSIFIERS and classifier
            else None
        )
        candidate = OnnxPredictor(
            OnnxModel(data, len(schema.numeric_names), len(schema.label_names), classifier, argmax)
        )
    except OnnxModelError as exc:
        return f"{ONNX_FILE} not used: {exc}", None
    try:
        sample: Batch | None = schema.from_rows(
            metadata.sample.instances, "metadata.sample.instances"
        )
    except RequestError:
        sample = None
    probes = probe_batch(schema, metadata.reference, sample)
    checked = probes.rows
    try:
        problem = disagreement(candidate, pipeline, probes, classifier, tolerance)
        if problem is None and sample is not None:
            checked += sample.rows
            problem = disagreement(candidate, pipeline, sample, classifier, tolerance)
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        log.warning(
            "%s disagrees with the pipeline (%s); serving through scikit-learn", ONNX_FILE, problem
        )
        return f"{ONNX_FILE} disagrees with the pipeline at start-up: {problem}", None
    return (
        f"{ONNX_FILE} verified and equal to the pipeline on {checked} sample and probe rows",
        candidate,
    )


def smoke_test(served: ServedModel) -> None:
    """The sample rows must predict what the trainer recorded (labels exactly)."""
    sample = served.metadata.sample
    if not sample.instances:
        raise LoadError(f"{METADATA_FILE} has no sample rows; the smoke test cannot run")
    if len(sample.instances) != len(sample.predictions):
        raise LoadError(
            f"{METADATA_FILE} sample has {len(sample.instances)} rows but "
            f"{len(sample.predictions)} predictions"
        )
    try:
        batch = served.schema.from_rows(sample.instances, "metadata.sample.instances")
        got = served.predict(batch).values.tolist()
    except RequestError as exc:
        raise LoadError(f"smoke test: {exc.message}") from exc
    except Exception as exc:
        raise LoadError(f"smoke test: prediction failed: {type(exc).__name__}: {exc}") from exc
    expected = sample.predictions
    if served.is_classifier:
        bad = [i for i, (g, e) in enumerate(zip(got, expected, strict=True)) if g != e]
    else:
        rtol, atol = REGRESSION_RTOL, REGRESSION_ATOL
        if served.tolerance is not None:  # onnxruntime: within the parity tolerance
            rtol = max(rtol, served.tolerance.value_rel_diff)
            atol = max(atol, served.tolerance.value_rel_diff)
        close = np.isclose(
            np.asarray(got, float), np.asarray(expected, float), rtol=rtol, atol=atol
        )
        bad = [int(i) for i in np.flatnonzero(~close)]
    allowed = 0
    if served.tolerance is not None and served.is_classifier:
        allowed = int(served.tolerance.label_mismatch_fraction * len(got))
    if len(bad) > allowed:
        i = bad[0]
        raise LoadError(
            f"smoke test failed: {len(bad)} of {len(got)} sample rows differ from the "
            f"predictions recorded at training (row {i}: got {got[i]!r}, expected "
            f"{expected[i]!r})"
        )
