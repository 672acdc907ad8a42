"""The numpy fast path: a verified numpy re-implementation of the fitted pipeline.

scikit-learn validates its input on every call (feature names, dtypes, finiteness,
array-API dispatch): with a pandas DataFrame the trainer's ColumnTransformer pipeline
spends ~1-2 ms per single-row call on that, far more than the arithmetic. For the
components the trainer uses, :func:`compile_pipeline` builds the same computation from
the fitted attributes with plain numpy (identical operations, so identical floats):

- ``ColumnTransformer`` with column lists by name, ``remainder="drop"``, dense output;
- per branch: ``SimpleImputer`` (no indicator), ``StandardScaler``, ``MinMaxScaler``,
  ``OneHotEncoder(handle_unknown="ignore")`` (its column map is probed through the fitted
  encoder itself, so infrequent categories and ``drop`` are handled as scikit-learn does),
  ``"passthrough"``;
- final estimator: ``LogisticRegression`` and the linear regressors by their
  coefficients; any other estimator is called with the transformed numpy matrix.

Anything else raises :class:`CompileError` (the server then uses onnxruntime or the
pipeline, ``predictors.py``).
A compiled predictor is only used after :func:`verify` found it equal to the pipeline on
the model's sample rows plus synthetic rows drawn from the reference statistics.

It is served only for fully compiled linear pipelines (:attr:`CompiledPredictor.linear`):
there its ~5-13 us per single-row call beat onnxruntime's ~10-16 us (docs/serving.md,
"Predictor measurements"); every other estimator is served by onnxruntime when the run
has a verified ``model.onnx``, and through this path (numpy preprocessing, the estimator
called on the matrix) only when it has not.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from perennial_runtime.serve.predictors import AnyArray, Predictor, check_finite
from perennial_runtime.serve.schema import Batch, FeatureSchema, FloatMatrix, ObjectMatrix

_UNSEEN = "\x00perennial-unseen-category"  # probes the fitted OneHotEncoder


class CompileError(Exception):
    """The pipeline has a component the numpy path does not reproduce."""


def reference_predict(model: Any, schema: FeatureSchema, batch: Batch, proba: bool) -> Any:
    """The public API, unsplit: what the compiled path must reproduce."""
    frame = schema.to_frame(batch)
    values = np.asarray(model.predict(frame))
    return values, (np.asarray(model.predict_proba(frame)) if proba else None)


# --- compiled steps ---------------------------------------------------------------------

NumericStep = Callable[[FloatMatrix], FloatMatrix]


@dataclass(frozen=True)
class _NumericBlock:
    columns: npt.NDArray[np.intp]  # columns of batch.numeric
    identity: bool  # columns == all of batch.numeric, in order
    steps: tuple[NumericStep, ...]

    def __call__(self, batch: Batch) -> FloatMatrix:
        x = batch.numeric if self.identity else batch.numeric[:, self.columns]
        for step in self.steps:
            x = step(x)
        return x


@dataclass(frozen=True)
class _LabelBlock:
    columns: tuple[int, ...]  # columns of batch.labels
    fill: tuple[str | None, ...]  # imputed label per column (None: no imputer)
    positions: tuple[dict[str, int], ...]  # label -> output column, per input column
    width: int

    def __call__(self, batch: Batch) -> FloatMatrix:
        rows = batch.rows
        out = np.zeros((rows, self.width), dtype=np.float64)
        labels: ObjectMatrix = batch.labels
        for k, column in enumerate(self.columns):
            mapping = self.positions[k]
            fill = self.fill[k]
            for i in range(rows):
                label = labels[i, column]
                if label is None:
                    label = fill
                pos = mapping.get(label, -1) if label is not None else -1
                if pos >= 0:
                    out[i, pos] = 1.0
        return out


def _imputer_numeric(imputer: Any) -> NumericStep:
    _check_imputer(imputer)
    stats = np.asarray(imputer.statistics_, dtype=np.float64)
    if np.isnan(stats).any():
        raise CompileError("SimpleImputer has all-missing training columns")

    def impute(x: FloatMatrix) -> FloatMatrix:
        missing = np.isnan(x)
        if missing.any():
            return np.where(missing, stats, x)
        return x

    return impute


def _check_imputer(imputer: Any) -> None:
    if getattr(imputer, "add_indicator", False):
        raise CompileError("SimpleImputer(add_indicator=True)")
    missing = imputer.missing_values
    if not (isinstance(missing, float) and np.isnan(missing)):
        raise CompileError(f"SimpleImputer(missing_values={missing!r})")


def _standard_scaler(scaler: Any) -> NumericStep:
    mean = np.asarray(scaler.mean_, dtype=np.float64) if scaler.with_mean else None
    scale = np.asarray(scaler.scale_, dtype=np.float64) if scaler.with_std else None

    def standardise(x: FloatMatrix) -> FloatMatrix:
        out = x - mean if mean is not None else x.copy()
        if scale is not None:
            out /= scale
        return out

    return standardise


def _minmax_scaler(scaler: Any) -> NumericStep:
    scale = np.asarray(scaler.scale_, dtype=np.float64)
    offset = np.asarray(scaler.min_, dtype=np.float64)
    low, high = scaler.feature_range
    clip = bool(getattr(scaler, "clip", False))

    def minmax(x: FloatMatrix) -> FloatMatrix:
        out = x * scale
        out += offset
        if clip:
            np.clip(out, low, high, out=out)
        return out

    return minmax


def _numeric_steps(steps: Sequence[Any]) -> tuple[NumericStep, ...]:
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    compiled: list[NumericStep] = []
    for step in steps:
        if isinstance(step, str) and step == "passthrough":
            continue
        if type(step) is SimpleImputer:
            compiled.append(_imputer_numeric(step))
        elif type(step) is StandardScaler:
            compiled.append(_standard_scaler(step))
        elif type(step) is MinMaxScaler:
            compiled.append(_minmax_scaler(step))
        else:
            raise CompileError(f"numeric step {type(step).__name__} is not compiled")
    return tuple(compiled)


def _label_block(steps: Sequence[Any], names: list[str], schema: FeatureSchema) -> _LabelBlock:
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    fill: list[str | None] = [None] * len(names)
    encoder: Any = None
    for step in steps:
        if isinstance(step, str) and step == "passthrough":
            continue
        if type(step) is SimpleImputer and encoder is None:
            _check_imputer(step)
            stats = list(step.statistics_)
            if not all(isinstance(s, str) for s in stats):
                raise CompileError("categorical SimpleImputer statistics are not labels")
            fill = [str(s) for s in stats]
        elif type(step) is OneHotEncoder and encoder is None:
            encoder = step
        else:
            raise CompileError(f"categorical step {type(step).__name__} is not compiled")
    if encoder is None:
        raise CompileError("categorical branch without a OneHotEncoder")
    positions, width = _probe_one_hot(encoder, len(names))
    columns = tuple(schema.label_names.index(n) for n in names)
    return _LabelBlock(columns, tuple(fill), positions, width)


def _probe_one_hot(encoder: Any, n_inputs: int) -> tuple[tuple[dict[str, int], ...], int]:
    """Label -> output column per input, read off the fitted encoder's own output."""
    if encoder.handle_unknown != "ignore":
        raise CompileError(f"OneHotEncoder(handle_unknown={encoder.handle_unknown!r})")
    categories = [list(c) for c in encoder.categories_]
    if len(categories) != n_inputs or not all(
        isinstance(v, str) for cats in categories for v in cats
    ):
        raise CompileError("OneHotEncoder categories are not string labels")
    probes = [[_UNSEEN] * n_inputs]
    owners: list[tuple[int, str]] = []
    for j, cats in enumerate(categories):
        for label in cats:
            row = [_UNSEEN] * n_inputs
            row[j] = label
            probes.append(row)
            owners.append((j, label))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        encoded = encoder.transform(np.asarray(probes, dtype=object))
    dense = np.asarray(encoded.toarray() if hasattr(encoded, "toarray") else encoded, float)
    if dense[0].any():
        raise CompileError("OneHotEncoder encodes unseen categories as non-zero")
    positions: list[dict[str, int]] = [{} for _ in range(n_inputs)]
    for (j, label), row in zip(owners, dense[1:], strict=True):
        hot = np.flatnonzero(row)
        if len(hot) > 1 or (len(hot) == 1 and row[hot[0]] != 1.0):
            raise CompileError("OneHotEncoder output is not one-hot")
        if len(hot) == 1:
            positions[j][label] = int(hot[0])
    return tuple(positions), int(dense.shape[1])


def _column_names(columns: Any, schema: FeatureSchema) -> list[str]:
    if isinstance(columns, str) or not isinstance(columns, list | tuple | np.ndarray):
        raise CompileError(f"ColumnTransformer column selection {columns!r}")
    names = [c for c in columns if isinstance(c, str)]
    if len(names) != len(columns) or any(n not in schema.position for n in names):
        raise CompileError("ColumnTransformer selects columns by something other than name")
    return names


def _compile_column_transformer(ct: Any, schema: FeatureSchema) -> list[Any]:
    if getattr(ct, "sparse_output_", False):
        raise CompileError("ColumnTransformer has sparse output")
    blocks: list[Any] = []
    for name, transformer, columns in ct.transformers_:
        if isinstance(transformer, str) and transformer == "drop":
            continue
        if name == "remainder":
            if len(columns):
                raise CompileError("ColumnTransformer remainder is not dropped")
            continue
        names = _column_names(columns, schema)
        if not names:
            continue
        steps = (
            [s for _, s in transformer.steps] if hasattr(transformer, "steps") else [transformer]
        )
        if all(n in schema.numeric_names for n in names):
            cols = np.asarray([schema.numeric_names.index(n) for n in names], dtype=np.intp)
            identity = list(names) == list(schema.numeric_names)
            blocks.append(_NumericBlock(cols, identity, _numeric_steps(steps)))
        elif all(n in schema.label_names for n in names):
            blocks.append(_label_block(steps, names, schema))
        else:
            raise CompileError(f"ColumnTransformer branch {name!r} mixes numeric and labels")
    if not blocks:
        raise CompileError("ColumnTransformer produces no columns")
    return blocks


# --- compiled final estimators ------------------------------------------------------------


class _Head(Protocol):
    def __call__(self, x: FloatMatrix, proba: bool) -> tuple[AnyArray, FloatMatrix | None]: ...


def _scores(x: FloatMatrix, coef: FloatMatrix) -> FloatMatrix:
    """``x @ coef.T`` (``(rows,)`` for a single output), one dot product per row and output.

    A BLAS matrix product sums in an order that depends on the number of rows, so the same
    row alone and inside a batch came out a few ulps apart (a regression value, a
    probability, at a boundary a label); ``vecdot`` runs the same dot product for a row
    whatever its batch, and is as fast here.
    """
    if coef.shape[0] == 1:  # one output: (rows,), without the broadcast views
        single: FloatMatrix = np.vecdot(x, coef[0])
        return single
    scores: FloatMatrix = np.vecdot(x[:, None, :], coef[None, :, :])
    return scores


class _LinearRegressionHead:
    def __init__(self, estimator: Any) -> None:
        coef = np.asarray(estimator.coef_, dtype=np.float64)
        self.coef = np.ascontiguousarray(coef.reshape(-1, coef.shape[-1]))
        self.intercept = np.asarray(estimator.intercept_, dtype=np.float64)
        self.single = coef.ndim == 1  # one target: values of shape (rows,)

    def __call__(self, x: FloatMatrix, proba: bool) -> tuple[AnyArray, FloatMatrix | None]:
        values = _scores(x, self.coef) + self.intercept
        return (values if self.single else values.reshape(len(x), -1)), None


class _LogisticHead:
    def __init__(self, estimator: Any) -> None:
        from scipy.special import expit
        from sklearn.utils.extmath import softmax

        self.coef = np.ascontiguousarray(estimator.coef_, dtype=np.float64)
        self.intercept = np.asarray(estimator.intercept_, dtype=np.float64)
        self.classes = np.asarray(estimator.classes_)
        self.binary = self.coef.shape[0] == 1
        self.expit = expit
        self.softmax = softmax

    def __call__(self, x: FloatMatrix, proba: bool) -> tuple[AnyArray, FloatMatrix | None]:
        # As LinearClassifierMixin.predict and LogisticRegression.predict_proba do it.
        scores = _scores(x, self.coef) + self.intercept
        if self.binary:
            scores = scores.reshape(-1)
            labels = self.classes[(scores > 0).astype(np.intp)]
            if not proba:
                return labels, None
            p = self.expit(scores)
            out = np.empty((len(p), 2), dtype=np.float64)
            out[:, 0] = 1 - p
            out[:, 1] = p
            return labels, out
        labels = self.classes[scores.argmax(axis=1)]
        return labels, (self.softmax(scores, copy=False) if proba else None)


class _EstimatorHead:
    """Any estimator, called with the transformed matrix.

    Forests and trees define ``predict`` as the argmax of ``predict_proba``; for them one
    call serves both outputs (halving their per-call overhead).
    """

    def __init__(self, estimator: Any) -> None:
        from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
        from sklearn.tree import DecisionTreeClassifier

        self.estimator = estimator
        self.argmax_of_proba = (
            type(estimator)
            in (
                RandomForestClassifier,
                ExtraTreesClassifier,
                DecisionTreeClassifier,
            )
            and np.ndim(estimator.classes_) == 1
        )

    def __call__(self, x: FloatMatrix, proba: bool) -> tuple[AnyArray, FloatMatrix | None]:
        if self.argmax_of_proba:
            probabilities = np.asarray(self.estimator.predict_proba(x))
            labels = self.estimator.classes_.take(np.argmax(probabilities, axis=1), axis=0)
            return labels, (probabilities if proba else None)
        values = np.asarray(self.estimator.predict(x))
        return values, (np.asarray(self.estimator.predict_proba(x)) if proba else None)


def _head(estimator: Any) -> _Head:
    from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, LogisticRegression, Ridge

    if getattr(estimator, "feature_names_in_", None) is not None:
        raise CompileError("the final estimator was fitted on a DataFrame")
    if type(estimator) is LogisticRegression:
        return _LogisticHead(estimator)
    if type(estimator) in (LinearRegression, Ridge, Lasso, ElasticNet):
        return _LinearRegressionHead(estimator)
    return _EstimatorHead(estimator)


NUMPY = "numpy"


class CompiledPredictor:
    """The pipeline's arithmetic on numpy arrays, without per-call validation."""

    kind = NUMPY

    def __init__(self, blocks: list[Any], head: _Head) -> None:
        self._blocks = blocks
        self._head = head
        # Everything in numpy (no scikit-learn call per request): a linear estimator.
        self.linear = isinstance(head, _LogisticHead | _LinearRegressionHead)

    def transform(self, batch: Batch) -> FloatMatrix:
        if len(self._blocks) == 1:
            out: FloatMatrix = self._blocks[0](batch)
            return out
        return np.hstack([block(batch) for block in self._blocks])

    def predict(self, batch: Batch, proba: bool) -> tuple[AnyArray, FloatMatrix | None]:
        x = self.transform(batch)
        if not self.linear:  # a scikit-learn estimator refuses NaN and infinity
            check_finite(x)
        return self._head(x, proba)


def compile_pipeline(model: Any, schema: FeatureSchema) -> CompiledPredictor:
    """A numpy predictor equivalent to ``model``, or :class:`CompileError`."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if type(model) is not Pipeline or len(model.steps) != 2:
        raise CompileError("the model is not a Pipeline(preprocess, estimator)")
    pre, final = model.steps[0][1], model.steps[1][1]
    if type(pre) is not ColumnTransformer:
        raise CompileError(f"preprocessing step {type(pre).__name__} is not compiled")
    return CompiledPredictor(_compile_column_transformer(pre, schema), _head(final))


# --- verification ---------------------------------------------------------------------------


def verify(
    compiled: Predictor,
    model: Any,
    schema: FeatureSchema,
    batch: Batch,
    classifier: bool,
) -> str | None:
    """None when ``compiled`` equals the pipeline on ``batch``, else what differs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want_values, want_proba = reference_predict(model, schema, batch, classifier)
        got_values, got_proba = compiled.predict(batch, classifier)
    if got_values.shape != want_values.shape:
        return f"prediction shape {got_values.shape} != {want_values.shape}"
    if classifier:
        if not np.array_equal(got_values, want_values):
            bad = int(np.flatnonzero(got_values != want_values)[0])
            return f"row {bad}: label {got_values[bad]!r} != {want_values[bad]!r}"
        assert got_proba is not None and want_proba is not None
        if got_proba.shape != want_proba.shape or not np.allclose(
            got_proba, want_proba, rtol=1e-9, atol=1e-12
        ):
            return "probabilities differ"
        return None
    if not np.allclose(
        np.asarray(got_values, float), np.asarray(want_values, float), rtol=1e-9, atol=1e-9
    ):
        return "regression values differ"
    return None
