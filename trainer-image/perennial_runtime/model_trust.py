"""Which objects a ``model.skops`` file may contain: exactly what our trainer produces.

skops describes every object of a file in ``schema.json`` as a node: a loader (how to
rebuild it) and a ``module.name`` (the class, function or type it stands for). skops' own
trust policy trusts, by default, every public scikit-learn estimator (a
``FunctionTransformer`` among them, whose ``func`` runs at predict time), numpy ufuncs and
more; a prefix rule such as "every ``sklearn.`` name" also trusts the standard-library
callables that scikit-learn's private modules import (``sklearn.datasets._base.makedirs``
is ``os.makedirs``). Neither is what we want.

:data:`ALLOWED_NODES` is the explicit list of ``(loader, module.name)`` pairs that a
pipeline built by :mod:`perennial_runtime.preprocessing` around an allow-listed estimator
(:mod:`perennial_runtime.estimators`) contains, with every preprocessing option and the
parameters that change the fitted objects (losses, neighbour search, distance metrics).
:func:`disallowed_nodes` walks the raw ``schema.json`` (no skops tree, no import, nothing
constructed) and names every node outside the list; the loader refuses the file when that
is not empty. ``tests/runtime/test_model_trust.py`` trains every combination and fails
when the list and what the trainer produces drift apart.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

SCHEMA_FILE = "schema.json"

# What our pipelines are made of (preprocessing, estimators, their fitted internals).
_OBJECTS = (
    # preprocessing.build_pipeline
    "sklearn.pipeline.Pipeline",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    # estimators.estimator_classes (SVC is wrapped in CalibratedClassifierCV)
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.linear_model._base.LinearRegression",
    "sklearn.linear_model._ridge.Ridge",
    "sklearn.linear_model._coordinate_descent.Lasso",
    "sklearn.linear_model._coordinate_descent.ElasticNet",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.RandomForestRegressor",
    "sklearn.ensemble._forest.ExtraTreesClassifier",
    "sklearn.ensemble._forest.ExtraTreesRegressor",
    "sklearn.ensemble._gb.GradientBoostingClassifier",
    "sklearn.ensemble._gb.GradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.neighbors._classification.KNeighborsClassifier",
    "sklearn.neighbors._regression.KNeighborsRegressor",
    "sklearn.svm._classes.SVC",
    "sklearn.svm._classes.SVR",
    "sklearn.naive_bayes.GaussianNB",
    "sklearn.calibration.CalibratedClassifierCV",
    # fitted internals of those estimators
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.tree._classes.ExtraTreeClassifier",  # ExtraTrees* members
    "sklearn.tree._classes.ExtraTreeRegressor",
    "sklearn.dummy.DummyClassifier",  # GradientBoosting* init_
    "sklearn.dummy.DummyRegressor",
    "sklearn.preprocessing._label.LabelEncoder",  # CalibratedClassifierCV
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neighbors._kd_tree.KDTree",  # KNeighbors*, algorithm auto / kd_tree
    "sklearn.neighbors._ball_tree.BallTree",  # algorithm ball_tree
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.metrics._dist_metrics.ManhattanDistance64",
    "sklearn.metrics._dist_metrics.ChebyshevDistance64",
    "sklearn.metrics._dist_metrics.MinkowskiDistance64",
    # loss objects and links of the boosting estimators, per `loss`
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.ExponentialLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss.loss.AbsoluteError",
    "sklearn._loss.loss.HuberLoss",
    "sklearn._loss.loss.PinballLoss",
    "sklearn._loss.loss.HalfGammaLoss",
    "sklearn._loss.loss.HalfPoissonLoss",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.HalfLogitLink",
    "sklearn._loss.link.LogLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.link.Interval",
)
_CYTHON_LOSSES = (
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss._loss.CyExponentialLoss",
    "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn._loss._loss.CyAbsoluteError",
    "sklearn._loss._loss.CyHuberLoss",
    "sklearn._loss._loss.CyPinballLoss",
    "sklearn._loss._loss.CyHalfGammaLoss",
    "sklearn._loss._loss.CyHalfPoissonLoss",
)

# (skops loader, module.name): every node a model file of ours may hold.
ALLOWED_NODES: frozenset[tuple[str, str]] = frozenset(
    {("ObjectNode", name) for name in _OBJECTS}
    | {("LossNode", name) for name in _CYTHON_LOSSES}
    | {
        ("TreeNode", "sklearn.tree._tree.Tree"),
        # containers and scalars
        ("DictNode", "builtins.dict"),
        ("ListNode", "builtins.list"),
        ("TupleNode", "builtins.tuple"),
        ("SliceNode", "builtins.slice"),
        ("JsonNode", "builtins.str"),  # every JSON value: numbers, strings, None
        # numpy arrays, scalars, dtypes and random states
        ("NdArrayNode", "numpy.ndarray"),
        ("NdArrayNode", "numpy.float64"),
        ("NdArrayNode", "numpy.int64"),
        ("NdArrayNode", "numpy.uint64"),
        ("DTypeNode", "numpy.dtype"),
        ("TypeNode", "builtins.str"),  # OneHotEncoder(dtype=...)
        ("TypeNode", "numpy.float64"),
        ("RandomStateNode", "numpy.random.mtrand.RandomState"),
        ("RandomGeneratorNode", "numpy.random._generator.Generator"),
    }
)

# The type names skops itself is told to trust once our check passed (its own audit
# then runs as a second line of defence).
ALLOWED_TYPE_NAMES: tuple[str, ...] = tuple(sorted({name for _, name in ALLOWED_NODES}))


class ModelFileError(ValueError):
    """The bytes are not a readable skops file."""


def schema_of(data: bytes) -> Any:
    """The parsed ``schema.json`` of a skops file (nothing else is read or built)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            raw = archive.read(SCHEMA_FILE)
        return json.loads(raw)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ModelFileError(f"not a skops model file ({type(exc).__name__}: {exc})") from exc


def nodes(schema: Any) -> Iterator[tuple[str, str]]:
    """Every ``(loader, module.name)`` in a skops schema, however deeply nested.

    Walks every dict and list (not only the places skops reads children from), so a node
    tucked anywhere in the file is seen. A dict carrying any of skops' node keys is a node;
    missing or non-string fields make it an unnamed node, which no allow-list holds.
    """
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if {"__loader__", "__class__", "__module__"} & item.keys():
                loader, module, name = (
                    item.get("__loader__"),
                    item.get("__module__"),
                    item.get("__class__"),
                )
                if isinstance(loader, str) and isinstance(module, str) and isinstance(name, str):
                    yield loader, f"{module}.{name}"
                else:
                    yield repr(loader), f"{module!r}.{name!r}"
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def disallowed_nodes(data: bytes) -> list[str]:
    """``module.name (loader)`` of every node outside :data:`ALLOWED_NODES`, sorted."""
    found = set(nodes(schema_of(data)))
    return sorted(f"{name} ({loader})" for loader, name in found - ALLOWED_NODES)
