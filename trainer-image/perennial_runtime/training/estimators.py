"""The allow-list: estimator names a resource may use, mapped to scikit-learn classes.

No import path ever comes from a resource spec; ``model.estimator`` is looked up here and
``model.params`` is checked against the estimator's own ``get_params()``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from perennial_runtime.contract import ModelConfig
from perennial_runtime.failures import InvalidConfigError


def estimator_classes() -> dict[str, type[Any]]:
    """Allow-listed estimator name -> class (the same names as ``contract.ESTIMATORS``)."""
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import (
        ElasticNet,
        Lasso,
        LinearRegression,
        LogisticRegression,
        Ridge,
    )
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.svm import SVC, SVR
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    return {
        "LogisticRegression": LogisticRegression,
        "RandomForestClassifier": RandomForestClassifier,
        "ExtraTreesClassifier": ExtraTreesClassifier,
        "GradientBoostingClassifier": GradientBoostingClassifier,
        "HistGradientBoostingClassifier": HistGradientBoostingClassifier,
        "DecisionTreeClassifier": DecisionTreeClassifier,
        "KNeighborsClassifier": KNeighborsClassifier,
        "SVC": SVC,
        "GaussianNB": GaussianNB,
        "LinearRegression": LinearRegression,
        "Ridge": Ridge,
        "Lasso": Lasso,
        "ElasticNet": ElasticNet,
        "RandomForestRegressor": RandomForestRegressor,
        "ExtraTreesRegressor": ExtraTreesRegressor,
        "GradientBoostingRegressor": GradientBoostingRegressor,
        "HistGradientBoostingRegressor": HistGradientBoostingRegressor,
        "DecisionTreeRegressor": DecisionTreeRegressor,
        "KNeighborsRegressor": KNeighborsRegressor,
        "SVR": SVR,
    }


def build_estimator(model: ModelConfig, seed: int) -> Any:
    """An unfitted estimator with ``model.params`` applied and ``random_state=seed``.

    Unknown parameter names and values the estimator rejects raise
    :class:`InvalidConfigError` naming ``model.params.<key>``.
    """
    classes = estimator_classes()
    cls = classes.get(model.estimator)
    if cls is None:
        raise InvalidConfigError(
            f"model.estimator {model.estimator!r} is not allow-listed; "
            f"choose one of: {', '.join(classes)}"
        )
    estimator = cls()
    valid = estimator.get_params(deep=False)
    unknown = sorted(k for k in model.params if k not in valid)
    if unknown:
        raise InvalidConfigError(
            "; ".join(
                f"model.params.{key}: {model.estimator} has no parameter {key!r}" for key in unknown
            )
            + f" (valid parameters: {', '.join(sorted(valid))})"
        )
    params = dict(model.params)
    if "random_state" in valid and "random_state" not in params:
        params["random_state"] = seed
    if model.estimator == "SVC" and "probability" in params:
        raise InvalidConfigError(
            "model.params.probability: remove it; Perennial calibrates SVC's class "
            "probabilities itself (CalibratedClassifierCV), which the model server returns"
        )
    estimator.set_params(**params)
    check_param_values(estimator, model.estimator)
    if model.estimator == "SVC":
        # The server answers with class probabilities (and gates may use roc_auc or
        # log_loss). SVC(probability=True) is deprecated in scikit-learn 1.9; its
        # replacement is one sigmoid calibration over cross-validated decision values.
        from sklearn.calibration import CalibratedClassifierCV

        return CalibratedClassifierCV(estimator, ensemble=False)
    return estimator


def check_param_values(estimator: Any, name: str) -> None:
    """Run scikit-learn's own parameter validation now instead of at fit time."""
    from sklearn.utils._param_validation import InvalidParameterError

    validate = getattr(estimator, "_validate_params", None)
    if validate is None:
        return
    try:
        validate()
    except InvalidParameterError as exc:
        raise invalid_param_error(exc, name) from exc


def invalid_param_error(exc: Exception, estimator: str) -> InvalidConfigError:
    """An InvalidConfigError naming ``model.params.<key>`` for scikit-learn's message."""
    match = re.search(r"The '(\w+)' parameter", str(exc))
    key = f"model.params.{match.group(1)}" if match else "model.params"
    return InvalidConfigError(f"{key}: {exc} ({estimator})")


def effective_params(estimator: Any) -> dict[str, Any]:
    """The estimator's parameters as JSON values (for ``metadata.json``)."""
    return {k: json_value(v) for k, v in sorted(estimator.get_params(deep=False).items())}


def json_value(value: Any) -> Any:
    """``value`` as something ``json.dumps`` accepts (numpy scalars unwrapped, NaN -> None)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", 1) == 0:
        return json_value(item())
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return str(value)
