"""The fitted pipeline as ONNX (skl2onnx), in float64, with the layout of ``onnx_layout``.

:func:`export` converts the trainer's ``Pipeline(ColumnTransformer, estimator)``. What
it adds to skl2onnx's defaults, and why:

- **float64 inputs and preprocessing** (``DoubleTensorType``): linear models, naive Bayes
  and k-NN then agree with scikit-learn to ~1e-15. onnxruntime's tree-ensemble and SVM
  kernels compute in float32 only, so for those estimators (:func:`precisions_for`) the
  preprocessed matrix is cast to float32 before the estimator -- which is what
  scikit-learn's trees do themselves -- and each split threshold is stored as the largest
  float32 not above it: for a float32 input ``x <= t`` holds exactly when ``x <=
  round_down(t)``, so every row takes the path scikit-learn takes (rounding to nearest
  instead moved a 100-tree forest's probabilities by up to 0.04 on iris).
- **Column selection by position.** skl2onnx maps a ``ColumnTransformer`` column given by
  name to an input of that name; our inputs are grouped by type (``onnx_layout``), so a
  copy of the fitted transformer selects the same columns by their position in
  ``[numeric | labels]``. The fitted pipeline itself is not touched.
- **SimpleImputer**: skl2onnx's converter casts the fill values to float32 and cannot
  treat NaN as the missing value of a string column. Ours replaces missing values by the
  fitted statistics in the input's own type (``IsNaN``/``Where`` for numbers, a
  ``LabelEncoder`` flag of :data:`onnx_layout.MISSING_LABEL` and ``Where`` for labels).
- **StandardScaler** as ``(x - mean) / scale`` (skl2onnx's ``div`` option), as
  scikit-learn computes it, rather than a multiplication by ``1 / scale``.
- Classifiers output ``label`` and a plain ``probabilities`` matrix (``zipmap=False``).

Anything skl2onnx cannot convert raises :class:`ExportUnsupportedError`; the trainer
then keeps only ``model.skops`` and records why.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any, Literal

from perennial_runtime.compiled.onnx_layout import LABEL_INPUT, MISSING_LABEL, NUMERIC_INPUT
from perennial_runtime.training.preprocessing import NUMERIC_TYPES, ColumnSpec

# ONNX operator sets: the default domain and ai.onnx.ml (v3 stores tree thresholds in
# float64). onnxruntime >= 1.17 runs both.
TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}
# A forest this large takes seconds to convert and tens of MB to store; beyond it the
# export is skipped (the skops pipeline still serves).
MAX_TREE_NODES = 2_000_000


class ExportUnsupportedError(Exception):
    """The pipeline cannot be exported; the message says which part and why."""


Precision = Literal["float64", "float32"]


def precisions_for(estimator: Any) -> tuple[Precision, ...]:
    """The estimator precisions to try, in order (float32: cast before the estimator)."""
    from sklearn.svm import SVC, SVR

    if tree_nodes(estimator) or isinstance(estimator, SVC | SVR):
        return ("float32",)
    return ("float64", "float32")


def export(pipeline: Any, features: Sequence[ColumnSpec], precision: Precision) -> bytes:
    """The serialized ONNX model of ``pipeline`` (fitted by the trainer; not modified)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if type(pipeline) is not Pipeline or len(pipeline.steps) != 2:
        raise ExportUnsupportedError("the model is not a Pipeline(preprocess, estimator)")
    (pre_name, pre), (model_name, estimator) = pipeline.steps
    if type(pre) is not ColumnTransformer:
        raise ExportUnsupportedError(f"preprocessing step {type(pre).__name__} is not exported")
    nodes = tree_nodes(estimator)
    if nodes > MAX_TREE_NODES:
        raise ExportUnsupportedError(
            f"the {type(estimator).__name__} has {nodes} tree nodes, more than "
            f"{MAX_TREE_NODES} (conversion would take too long)"
        )
    positioned = _by_position(pre, features)
    options = _options(positioned)
    steps: list[tuple[str, Any]] = [(pre_name, positioned)]
    if precision == "float32":
        try:
            from skl2onnx.sklapi import CastTransformer  # type: ignore[import-untyped]
        except ImportError as exc:
            raise ExportUnsupportedError(f"skl2onnx is not installed ({exc})") from exc
        import numpy as np

        steps.append(("float32", CastTransformer(dtype=np.float32)))
        if nodes:
            estimator = _thresholds_rounded_down(estimator)
    steps.append((model_name, estimator))
    if is_classifier(estimator):
        options[id(estimator)] = {"zipmap": False}
    return _convert(Pipeline(steps), features, options)


def is_classifier(estimator: Any) -> bool:
    from sklearn.base import is_classifier as sklearn_is_classifier

    return bool(sklearn_is_classifier(estimator))


def tree_nodes(estimator: Any) -> int:
    """Total decision-tree nodes in ``estimator`` (0 for models without trees)."""
    total = 0
    trees = getattr(estimator, "estimators_", None)
    if trees is not None:
        for tree in _flatten(trees):
            total += tree_nodes(tree)
        return total
    tree = getattr(estimator, "tree_", None)
    if tree is not None:
        return int(tree.node_count)
    predictors = getattr(estimator, "_predictors", None)  # HistGradientBoosting
    if predictors is not None:
        for per_iteration in predictors:
            for predictor in per_iteration:
                total += len(predictor.nodes)
    return total


def _flatten(items: Any) -> list[Any]:
    out: list[Any] = []
    for item in items if isinstance(items, list | tuple) else list(items.ravel()):
        out.extend(_flatten(item) if isinstance(item, list | tuple) else [item])
    return out


def _by_position(pre: Any, features: Sequence[ColumnSpec]) -> Any:
    """A shallow copy of the fitted ColumnTransformer selecting columns by position."""
    numeric = [f.name for f in features if f.type in NUMERIC_TYPES]
    labels = [f.name for f in features if f.type not in NUMERIC_TYPES]
    position = {name: i for i, name in enumerate(numeric + labels)}
    if getattr(pre, "sparse_output_", False):
        raise ExportUnsupportedError("the ColumnTransformer has sparse output")
    transformers: list[tuple[str, Any, Any]] = []
    for name, transformer, columns in pre.transformers_:
        if isinstance(transformer, str) and transformer == "drop":
            transformers.append((name, transformer, columns))
            continue
        if name == "remainder":
            if len(columns):
                raise ExportUnsupportedError("the ColumnTransformer passes a remainder through")
            continue
        if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
            raise ExportUnsupportedError(
                f"ColumnTransformer branch {name!r} does not select columns by name"
            )
        unknown = [c for c in columns if c not in position]
        if unknown:
            raise ExportUnsupportedError(f"branch {name!r} uses unknown columns {unknown}")
        kinds = {c in labels for c in columns}
        if len(kinds) > 1:
            raise ExportUnsupportedError(f"branch {name!r} mixes numeric and label columns")
        indices = [position[c] for c in columns]
        block = [position[c] for c in (labels if True in kinds else numeric)]
        if indices != block:  # skl2onnx skips the slicing when the widths agree
            raise ExportUnsupportedError(
                f"branch {name!r} does not take all {'label' if True in kinds else 'numeric'} "
                "columns in schema order"
            )
        transformers.append((name, transformer, indices))
    positioned = copy.copy(pre)
    positioned.transformers_ = transformers
    return positioned


def _options(pre: Any) -> dict[int, dict[str, Any]]:
    from sklearn.preprocessing import StandardScaler

    options: dict[int, dict[str, Any]] = {}
    for _, transformer, _ in pre.transformers_:
        steps = getattr(transformer, "steps", None)
        parts = [s for _, s in steps] if steps is not None else [transformer]
        for step in parts:
            if type(step) is StandardScaler:
                options[id(step)] = {"div": "div"}
    return options


def _thresholds_rounded_down(estimator: Any) -> Any:
    """A copy whose split thresholds are the largest float32 values not above them."""
    import numpy as np

    rounded = copy.deepcopy(estimator)
    for tree in _trees(rounded):
        threshold = tree.tree_.threshold  # a writable view of the fitted nodes
        as_float32 = threshold.astype(np.float32)
        above = as_float32.astype(np.float64) > threshold
        as_float32[above] = np.nextafter(as_float32[above], np.float32(-np.inf))
        threshold[:] = as_float32.astype(np.float64)
    return rounded


def _trees(estimator: Any) -> list[Any]:
    """The fitted decision trees of a tree or an ensemble of trees."""
    if getattr(estimator, "tree_", None) is not None:
        return [estimator]
    members = getattr(estimator, "estimators_", None)
    if members is None:
        return []
    out: list[Any] = []
    for member in _flatten(members):
        out.extend(_trees(member))
    return out


def _convert(flat: Any, features: Sequence[ColumnSpec], options: dict[int, Any]) -> bytes:
    try:
        from skl2onnx import convert_sklearn  # type: ignore[import-untyped]
        from skl2onnx.common.data_types import (  # type: ignore[import-untyped]
            DoubleTensorType,
            StringTensorType,
        )
    except ImportError as exc:  # the runtime extra always has it; a bare install may not
        raise ExportUnsupportedError(f"skl2onnx is not installed ({exc})") from exc
    from sklearn.impute import SimpleImputer

    n_numeric = sum(1 for f in features if f.type in NUMERIC_TYPES)
    n_labels = len(features) - n_numeric
    initial_types: list[tuple[str, Any]] = []
    if n_numeric:
        initial_types.append((NUMERIC_INPUT, DoubleTensorType([None, n_numeric])))
    if n_labels:
        initial_types.append((LABEL_INPUT, StringTensorType([None, n_labels])))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onx = convert_sklearn(
                flat,
                initial_types=initial_types,
                target_opset=TARGET_OPSET,
                options=options,
                custom_conversion_functions={SimpleImputer: _convert_imputer},
            )
    except ExportUnsupportedError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if len(first) > 160:
            first = first[:157] + "..."
        raise ExportUnsupportedError(
            f"skl2onnx cannot convert it: {type(exc).__name__}: {first}"
        ) from exc
    data: bytes = onx.SerializeToString()
    return data


def _convert_imputer(scope: Any, operator: Any, container: Any) -> None:
    """SimpleImputer(missing_values=NaN) in the input's own type (float64 or string)."""
    import numpy as np
    from onnx import TensorProto
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

    imputer = operator.raw_operator
    missing = imputer.missing_values
    if not (isinstance(missing, float) and np.isnan(missing)):
        raise ExportUnsupportedError(f"SimpleImputer(missing_values={missing!r})")
    if getattr(imputer, "add_indicator", False):
        raise ExportUnsupportedError("SimpleImputer(add_indicator=True)")
    names = [v.full_name for v in operator.inputs]
    if len(names) > 1:
        x = scope.get_unique_variable_name("imputer_input")
        container.add_node(
            "Concat", names, [x], axis=1, name=scope.get_unique_operator_name("Concat")
        )
    else:
        x = names[0]
    out = operator.outputs[0].full_name
    stats = list(imputer.statistics_)
    fill = scope.get_unique_variable_name("imputer_fill")
    kind = operator.inputs[0].type
    if isinstance(kind, StringTensorType):
        if not all(isinstance(s, str) for s in stats):
            raise ExportUnsupportedError("a label imputer's fill values are not labels")
        container.add_initializer(
            fill, TensorProto.STRING, [1, len(stats)], [s.encode("utf-8") for s in stats]
        )
        flag = scope.get_unique_variable_name("imputer_flag")
        container.add_node(
            "LabelEncoder",
            [x],
            [flag],
            keys_strings=[MISSING_LABEL],
            values_int64s=[1],
            default_int64=0,
            op_domain="ai.onnx.ml",
            op_version=2,
            name=scope.get_unique_operator_name("LabelEncoder"),
        )
        condition = scope.get_unique_variable_name("imputer_missing")
        container.add_node(
            "Cast",
            [flag],
            [condition],
            to=TensorProto.BOOL,
            name=scope.get_unique_operator_name("Cast"),
        )
    elif isinstance(kind, DoubleTensorType):
        values = np.asarray(stats, dtype=np.float64)
        if np.isnan(values).any():
            raise ExportUnsupportedError("SimpleImputer has all-missing training columns")
        container.add_initializer(fill, TensorProto.DOUBLE, [1, len(stats)], values.tolist())
        condition = scope.get_unique_variable_name("imputer_missing")
        container.add_node("IsNaN", [x], [condition], name=scope.get_unique_operator_name("IsNaN"))
    else:
        raise ExportUnsupportedError(f"SimpleImputer on a {type(kind).__name__} input")
    container.add_node(
        "Where", [condition, fill, x], [out], name=scope.get_unique_operator_name("Where")
    )
