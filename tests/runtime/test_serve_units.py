"""The server's parts without HTTP: windows, request schema, predictors, verification."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import RobustScaler

from perennial_runtime import drift
from perennial_runtime.contract import ColumnSchema, ColumnType, FeatureInfo
from perennial_runtime.serve.errors import RequestError
from perennial_runtime.serve.fastpath import compile_pipeline, verify
from perennial_runtime.serve.feedback_ids import (
    ID,
    IdCodec,
    class_field,
    float_fields,
    float_of,
)
from perennial_runtime.serve.model import choose_backend
from perennial_runtime.serve.predictors import PipelinePredictor, probe_batch
from perennial_runtime.serve.schema import FeatureSchema
from perennial_runtime.serve.windows import (
    BinnedWindow,
    LabelBinner,
    NumericBinner,
    TimeOrderedScores,
)
from perennial_runtime.training.preprocessing import build_pipeline, coerce_features

# --- windows ------------------------------------------------------------------------------------


def test_binned_window_counts_equal_a_fresh_histogram_of_the_last_rows() -> None:
    rng = np.random.default_rng(1)
    ref_values = rng.normal(size=500)
    numeric = NumericBinner(drift.numeric_reference(ref_values))
    labels = LabelBinner(drift.categorical_reference(list("aabbbcd")))
    window = BinnedWindow([numeric.bins, labels.bins], size=300)
    seen_x: list[float] = []
    seen_c: list[Any] = []
    for size in [1, 7, 120, 299, 1, 450, 3, 64]:
        x = rng.normal(loc=0.5, size=size)
        x[rng.random(size) < 0.1] = np.nan
        c = [[None, "a", "b", "z"][k] for k in rng.integers(0, 4, size=size)]
        window.add(np.stack([numeric(x), labels(c)], axis=1))
        seen_x += x.tolist()
        seen_c += c
        last_x, last_c = seen_x[-300:], seen_c[-300:]
        assert window.filled == len(last_x)
        expected_x = drift.numeric_counts(numeric.reference.edges, last_x)
        expected_c = drift.categorical_counts(labels.reference.categories, last_c)
        assert window.column_counts(0).tolist() == expected_x.tolist()
        assert window.column_counts(1).tolist() == expected_c.tolist()


def test_feedback_window_counts_each_prediction_once_and_keeps_the_newest_predictions() -> None:
    window = TimeOrderedScores(size=3)
    assert window.add(10, 1, 0, "a", 1.0) == "ok"
    assert window.add(10, 1, 0, "a", 0.0) == "duplicate"
    assert window.add(30, 3, 0, "c", 0.0) == "ok"
    assert window.add(20, 2, 0, "b", 1.0) == "ok"  # a late label, ordered by prediction
    assert (window.filled, window.mean(), window.oldest_ms, window.newest_ms) == (3, 2 / 3, 10, 30)
    assert window.add(25, 2, 1, "d", 1.0) == "ok"  # displaces the oldest prediction, "a"
    assert window.oldest_ms == 20 and window.mean() == 2 / 3
    assert window.add(10, 1, 0, "a", 1.0) == "stale"  # "a" replayed: older than the window
    assert window.add(15, 1, 5, "e", 1.0) == "stale"  # a label for an old prediction
    assert window.filled == 3


def test_running_sum_stays_exact_over_many_replacements() -> None:
    rng = np.random.default_rng(3)
    window = TimeOrderedScores(size=50)
    errors = rng.random(2000) * 1e6
    for i, e in enumerate(errors):
        window.add(i, i, 0, str(i), float(e))
    assert window.mean() == pytest.approx(errors[-50:].mean(), rel=1e-12)


def test_prediction_ids_carry_model_time_and_value_and_verify_only_with_their_key() -> None:
    codec = IdCodec("k" * 40)
    fields = [class_field(c) for c in (0, 1, "yes", "a long label: with spaces", True, 2.0)]
    assert fields[:2] == ["c0", "c1"] and fields[4:] == ["ctrue", "c2"]
    assert fields[3].startswith("c~") and len(fields[3]) == 14
    ids = codec.issue("3f5a1c9e", 1_764_000_000_123, 17, fields)
    for row, (pid, field) in enumerate(zip(ids, fields, strict=True)):
        match = ID.fullmatch(pid)
        assert match is not None, pid
        ref = codec.verify(match)
        assert ref is not None
        assert (ref.model, ref.made_ms, ref.seq, ref.row, ref.value) == (
            "3f5a1c9e",
            1_764_000_000_123,
            17,
            row,
            field,
        )
        assert len(pid) <= 60
    assert len(ids[0]) == 47  # a class label of one character

    def verified(codec: IdCodec, pid: str) -> bool:
        match = ID.fullmatch(pid)
        assert match is not None, pid
        return codec.verify(match) is not None

    other_deployment = IdCodec("j" * 40)
    assert not any(verified(other_deployment, pid) for pid in ids)
    # Another process with the same key (a new replica, a restart, the next model) verifies.
    assert verified(IdCodec("k" * 40), ids[0])
    # Changing any field (here the predicted class or the time) invalidates the tag.
    assert not verified(codec, ids[0].replace(".c0.", ".c1."))
    sha8, process, made, rest = ids[0].split(".", 3)
    assert not verified(codec, f"{sha8}.{process}.{made[:-1]}z.{rest}")


def test_regression_ids_carry_the_exact_float() -> None:
    values = np.array([0.1, -3.5e300, 151.23456789012345, 0.0, 5e-324])
    fields = float_fields(values)
    assert all(len(f) == 12 for f in fields)
    assert [float_of(f) for f in fields] == values.tolist()
    ids = IdCodec("k" * 40).issue("3f5a1c9e", 1, 1, fields)
    assert all(ID.fullmatch(pid) for pid in ids)
    many = np.random.default_rng(5).normal(scale=1e3, size=100)  # the bulk (numpy) path
    assert float_fields(many) == [f for v in many for f in float_fields(np.array([v]))]
    assert [float_of(f) for f in float_fields(many)] == many.tolist()


# --- request schema ------------------------------------------------------------------------------

FEATURES = [
    FeatureInfo(name="a", type=ColumnType.NUMERIC),
    FeatureInfo(name="b", type=ColumnType.INTEGER, nullable=False),
    FeatureInfo(name="c", type=ColumnType.CATEGORICAL),
    FeatureInfo(name="d", type=ColumnType.BOOLEAN),
]


def test_rows_as_lists_and_objects_give_the_same_batch() -> None:
    schema = FeatureSchema(FEATURES)
    lists = schema.from_rows([[1.5, 2, "x", True], [None, 3, 4.0, "no"]])
    objects = schema.from_rows(
        [
            {"d": True, "c": "x", "b": 2, "a": 1.5},
            {"a": None, "b": 3, "c": 4.0, "d": "no"},
        ]
    )
    for batch in (lists, objects):
        assert batch.rows == 2
        np.testing.assert_array_equal(batch.numeric, [[1.5, 2.0], [np.nan, 3.0]])
        assert batch.labels.tolist() == [["x", "true"], ["4", "false"]]
    frame = schema.to_frame(lists)
    raw = {"a": [1.5, None], "b": [2, 3], "c": ["x", 4.0], "d": [True, "no"]}
    trainer_view = coerce_features(pd.DataFrame(raw), FEATURES)
    pd.testing.assert_frame_equal(frame, trainer_view)


def test_numeric_fast_path_equals_the_checked_path() -> None:
    schema = FeatureSchema([FeatureInfo(name=n, type=ColumnType.NUMERIC) for n in "xyz"])
    fast = schema.from_rows([[1, 2.5, True], [0, -1, 3]])
    checked = schema.from_rows([[1, 2.5, True], {"x": 0, "y": -1, "z": 3}])
    np.testing.assert_array_equal(fast.numeric, checked.numeric)
    trainer_view = coerce_features(
        pd.DataFrame({"x": [1, 0], "y": [2.5, -1], "z": [True, 3]}),
        [FeatureInfo(name=n, type=ColumnType.NUMERIC) for n in "xyz"],
    )
    pd.testing.assert_frame_equal(schema.to_frame(fast), trainer_view)
    with pytest.raises(RequestError, match=r"instances\[1\]: feature 'y' expects a number"):
        schema.from_rows([[1, 2, 3], [1, "2", 3]])
    with pytest.raises(RequestError, match=r"instances\[1\]: expected 3 values"):
        schema.from_rows([[1, 2, 3], [1, 2]])


def test_columns_name_the_tensor_and_position() -> None:
    schema = FeatureSchema(FEATURES)
    good: dict[str, tuple[list[Any], str]] = {
        "a": ([1.0, None], "inputs[0] ('a')"),
        "b": ([1, 2], "inputs[1] ('b')"),
        "c": (["x", "y"], "inputs[2] ('c')"),
        "d": ([True, False], "inputs[3] ('d')"),
    }
    assert schema.from_columns(good, 2).labels.tolist() == [["x", "true"], ["y", "false"]]
    bad = {**good, "b": ([1, None], "inputs[1] ('b')")}
    with pytest.raises(RequestError, match=r"inputs\[1\] \('b'\): data\[1\]: feature 'b' must not"):
        schema.from_columns(bad, 2)


def test_row_limit_is_413() -> None:
    schema = FeatureSchema(FEATURES, max_rows=2)
    with pytest.raises(RequestError) as error:
        schema.from_rows([[1, 2, "x", True]] * 3)
    assert error.value.status == 413


# --- predictors -----------------------------------------------------------------------------------


def _fitted(dataset: Any, estimator: Any) -> tuple[Any, FeatureSchema, list[FeatureInfo]]:
    frame = dataset(as_frame=True).frame
    columns = [ColumnSchema(name=c, type=ColumnType.NUMERIC) for c in frame.columns[:-1]]
    x = coerce_features(frame, columns)
    model = build_pipeline(columns, estimator).fit(x, frame["target"])
    infos = [FeatureInfo(name=c.name, type=c.type) for c in columns]
    return model, FeatureSchema(infos), infos


@pytest.mark.parametrize(
    "estimator",
    [
        "RandomForestClassifier",
        "HistGradientBoostingClassifier",
        "KNeighborsClassifier",
        "GaussianNB",
        "LogisticRegression",
    ],
)
def test_compiled_predictor_equals_the_pipeline(estimator: str) -> None:
    from perennial_runtime.training.estimators import estimator_classes

    cls = estimator_classes()[estimator]
    forest = estimator == "RandomForestClassifier"
    params = {"n_estimators": 10, "random_state": 0} if forest else {}
    model, schema, infos = _fitted(load_iris, cls(**params))
    compiled = compile_pipeline(model, schema)
    refs = {f.name: drift.numeric_reference(np.linspace(0, 8, 50)) for f in infos}
    probes = probe_batch(schema, refs, None, rows=300)
    assert verify(compiled, model, schema, probes, classifier=True) is None


def test_verification_catches_a_different_model() -> None:
    model_a, schema, infos = _fitted(load_breast_cancer, LogisticRegression(max_iter=1000))
    model_b, _, _ = _fitted(load_breast_cancer, LogisticRegression(C=0.001, max_iter=1000))
    refs = {f.name: drift.numeric_reference(np.linspace(0, 30, 50)) for f in infos}
    probes = probe_batch(schema, refs, None, rows=300)
    problem = verify(compile_pipeline(model_a, schema), model_b, schema, probes, classifier=True)
    assert problem is not None


def test_uncompiled_components_fall_back_to_the_pipeline(trained_run: Any) -> None:
    run = trained_run("breast_cancer", estimator="LogisticRegression", params={"max_iter": 1000})
    meta = run.metadata
    names = [f.name for f in meta.features]
    frame = load_breast_cancer(as_frame=True).frame
    model = Pipeline(
        [
            ("pre", ColumnTransformer([("num", RobustScaler(), names)])),
            ("model", LogisticRegression(max_iter=1000)),
        ]
    ).fit(frame[names], frame["target"])
    schema = FeatureSchema(meta.features)
    choice = choose_backend(model, schema, meta, classifier=True, onnx=None)
    predictor = choice.predictor
    assert isinstance(predictor, PipelinePredictor)
    assert "numpy fast path: not compiled (numeric step RobustScaler" in choice.reason
    batch = schema.from_rows(meta.sample.instances)
    values, proba = predictor.predict(batch, proba=True)
    assert values.tolist() == model.predict(schema.to_frame(batch)).tolist()
    assert proba is not None and proba.shape == (batch.rows, 2)
