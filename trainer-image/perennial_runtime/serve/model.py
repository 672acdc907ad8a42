"""Load the served model: verify, parse, choose a predictor, smoke-test.

Order matters: the model file's sha256 is checked (``artifacts.fetch_verified``) before a
single byte of it is parsed, and ``metadata.json`` must describe that same file. Then the
skops file is loaded under the trust policy, the numpy fast path is compiled and verified
against the pipeline (else the pipeline itself serves), and the sample rows stored with the
model must predict exactly what the trainer recorded. Any failure is a :class:`LoadError`
with a message meant for ``kubectl logs`` and the readiness body.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from perennial_runtime import artifacts
from perennial_runtime.contract import METADATA_FILE, ModelMetadata, Task
from perennial_runtime.serve.config import ServeConfig
from perennial_runtime.serve.errors import RequestError
from perennial_runtime.serve.fastpath import (
    AnyArray,
    CompileError,
    PipelinePredictor,
    Predictor,
    compile_pipeline,
    probe_batch,
    verify,
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


@dataclass(frozen=True)
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

    @property
    def is_classifier(self) -> bool:
        return self.classes is not None

    def predict(self, batch: Batch, proba: bool = False) -> Prediction:
        values, probabilities = self.predictor.predict(batch, proba and self.is_classifier)
        return Prediction(values, probabilities)


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
    predictor = choose_predictor(model, schema, metadata, classes is not None)
    served = ServedModel(
        name=config.model_name or metadata.run,
        version=metadata.run,
        sha256=metadata.model.sha256.lower(),
        metadata=metadata,
        schema=schema,
        predictor=predictor,
        classes=classes,
        load_seconds=0.0,
    )
    smoke_test(served)
    elapsed = time.monotonic() - started
    return replace(served, load_seconds=elapsed)


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


def choose_predictor(
    model: Any, schema: FeatureSchema, metadata: ModelMetadata, classifier: bool
) -> Predictor:
    """The verified numpy fast path when it reproduces the pipeline, else the pipeline."""
    fallback = PipelinePredictor(model, schema)
    try:
        compiled = compile_pipeline(model, schema)
    except CompileError as exc:
        log.info("numpy fast path not available (%s); serving through the pipeline", exc)
        return fallback
    except Exception as exc:  # an unexpected fitted layout: the pipeline still works
        log.warning("numpy fast path failed to compile (%s: %s)", type(exc).__name__, exc)
        return fallback
    try:
        sample = schema.from_rows(metadata.sample.instances, "metadata.sample.instances")
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
        log.warning(
            "numpy fast path disagrees with the pipeline (%s); serving through the pipeline",
            problem,
        )
        return fallback
    return compiled


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
        close = np.isclose(
            np.asarray(got, float),
            np.asarray(expected, float),
            rtol=REGRESSION_RTOL,
            atol=REGRESSION_ATOL,
        )
        bad = [int(i) for i in np.flatnonzero(~close)]
    if bad:
        i = bad[0]
        raise LoadError(
            f"smoke test failed: {len(bad)} of {len(got)} sample rows differ from the "
            f"predictions recorded at training (row {i}: got {got[i]!r}, expected "
            f"{expected[i]!r})"
        )
