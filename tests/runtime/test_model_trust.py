"""The model-file allow-list: exactly what the trainer produces loads, nothing else does.

The list is derived here: every allow-listed estimator is trained with every
preprocessing option (numeric, categorical and boolean columns, with gaps) and every
parameter that changes the fitted objects, and the objects in the stored files must be
exactly ``model_trust.ALLOWED_NODES``. Crafted files (a private scikit-learn re-export of
a standard-library function, a ``FunctionTransformer`` with a callable skops trusts, an
unknown class, one nested deep inside a real model) are refused by the server's loader
and the trainer's champion loader, and a probe module proves that nothing of a refused
file is imported or constructed.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from perennial_runtime import artifacts, model_trust
from perennial_runtime.contract import (
    CLASSIFIERS,
    REGRESSORS,
    ColumnSchema,
    FailureReason,
    ModelConfig,
    Task,
)
from perennial_runtime.training.estimators import build_estimator
from perennial_runtime.training.preprocessing import build_pipeline, coerce_features
from perennial_runtime.training.trainer import train

# Parameters that put other objects into the fitted model (losses and their links,
# neighbour search structures, distance metrics). Everything else is plain values.
PARAM_VARIANTS: dict[str, list[dict[str, Any]]] = {
    "GradientBoostingClassifier": [{"loss": "exponential"}],
    "GradientBoostingRegressor": [
        {"loss": "absolute_error"},
        {"loss": "huber"},
        {"loss": "quantile"},
    ],
    "HistGradientBoostingRegressor": [
        {"loss": "absolute_error"},
        {"loss": "gamma"},
        {"loss": "poisson"},
        {"loss": "quantile", "quantile": 0.5},
    ],
    "KNeighborsClassifier": [
        {"algorithm": "ball_tree"},
        {"metric": "manhattan"},
        {"metric": "chebyshev"},
        {"p": 3},
    ],
    "KNeighborsRegressor": [{"algorithm": "ball_tree"}],
}

# Ensembles with a few members instead of 100: the members are of the same types, so the
# stored files hold the same objects (the exactness check below would see one missing),
# and the histogram boosters (OpenMP) no longer take minutes on a busy machine.
FEW_MEMBERS: dict[str, dict[str, Any]] = {
    **{
        name: {"n_estimators": 3}
        for name in (
            "RandomForestClassifier",
            "RandomForestRegressor",
            "ExtraTreesClassifier",
            "ExtraTreesRegressor",
            "GradientBoostingClassifier",
            "GradientBoostingRegressor",
        )
    },
    "HistGradientBoostingClassifier": {"max_iter": 3},
    "HistGradientBoostingRegressor": {"max_iter": 3},
}

ROWS = 80


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=ROWS),
            "b": rng.integers(0, 6, ROWS).astype(float),
            "c": rng.choice(["x", "y", "z"], ROWS),
            "d": rng.choice(["true", "false"], ROWS),
        }
    )
    frame.loc[::7, "a"] = np.nan
    frame.loc[::9, "c"] = None
    return frame


PREPROCESSING: dict[str, list[ColumnSchema]] = {
    "numeric": [ColumnSchema(name="a"), ColumnSchema(name="b", type="integer")],
    "categorical": [
        ColumnSchema(name="c", type="categorical"),
        ColumnSchema(name="d", type="boolean"),
    ],
}
PREPROCESSING["mixed"] = PREPROCESSING["numeric"] + PREPROCESSING["categorical"]


def _targets(frame: pd.DataFrame, task: Task) -> list[pd.Series[Any]]:
    if task is Task.REGRESSION:
        return [(frame["b"] * 2 + 1.0).rename("y")]
    return [
        pd.Series(np.where(frame["b"] > 2, "yes", "no"), name="y"),  # binary, text
        (frame["b"].astype("int64") % 3).rename("y"),  # three classes, integers
    ]


def _fitted_files() -> Iterator[tuple[str, bytes]]:
    frame = _frame()
    for estimator in CLASSIFIERS + REGRESSORS:
        task = Task.CLASSIFICATION if estimator in CLASSIFIERS else Task.REGRESSION
        few = FEW_MEMBERS.get(estimator, {})
        cases = [(name, few) for name in PREPROCESSING]
        cases += [("mixed", {**few, **params}) for params in PARAM_VARIANTS.get(estimator, [])]
        for preprocessing, params in cases:
            features = PREPROCESSING[preprocessing]
            for y in _targets(frame, task):
                if params.get("loss") == "exponential" and y.nunique() > 2:
                    continue  # binary only
                model = build_estimator(
                    ModelConfig(task=task, estimator=estimator, params=params), seed=1
                )
                pipeline = build_pipeline(features, model)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    pipeline.fit(coerce_features(frame, features), y)
                label = f"{estimator} {params} on {preprocessing} features, y {y.dtype}"
                yield label, sio.dumps(pipeline)


@pytest.mark.slow
def test_allow_list_is_exactly_what_the_trainer_produces() -> None:
    produced: set[tuple[str, str]] = set()
    for label, data in _fitted_files():
        nodes = set(model_trust.nodes(model_trust.schema_of(data)))
        produced |= nodes
        # skops' own idea of untrusted types is covered by the list too.
        skops_untrusted = set(sio.get_untrusted_types(data=data))
        assert skops_untrusted <= set(model_trust.ALLOWED_TYPE_NAMES), label
        assert artifacts.untrusted_types(data) == [], label
    missing = produced - model_trust.ALLOWED_NODES
    unused = model_trust.ALLOWED_NODES - produced
    assert not missing, f"the trainer produces objects the loader refuses: {sorted(missing)}"
    assert not unused, f"allow-listed but never produced (remove them): {sorted(unused)}"


def test_every_estimator_loads_back(trained_run: Any) -> None:
    """A stored model of each kind round-trips through the strict loader."""
    run = trained_run("wine", estimator="HistGradientBoostingClassifier", params={"max_iter": 5})
    model = artifacts.load_model(artifacts.fetch_verified(run.model_uri, run.sha256))
    assert type(model).__name__ == "Pipeline"


# --- crafted files ----------------------------------------------------------------

PROBE_MODULE = "perennial_marker_probe"
PROBE_SOURCE = """
import os
from pathlib import Path

MARKERS = Path(os.environ["PERENNIAL_PROBE_MARKERS"])
(MARKERS / "imported").write_text("the probe module was imported")


class Probe:
    def __new__(cls, *args, **kwargs):
        (MARKERS / "constructed").write_text("a Probe was constructed")
        return super().__new__(cls)

    def __setstate__(self, state):
        (MARKERS / "state-set").write_text("a Probe got its state")
"""


@pytest.fixture
def markers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A probe module on sys.path whose import or construction leaves marker files."""
    folder = tmp_path / "probe"
    folder.mkdir()
    (folder / f"{PROBE_MODULE}.py").write_text(PROBE_SOURCE)
    found = tmp_path / "markers"
    found.mkdir()
    monkeypatch.setenv("PERENNIAL_PROBE_MARKERS", str(found))
    monkeypatch.syspath_prepend(str(folder))
    yield found
    sys.modules.pop(PROBE_MODULE, None)


def _rewrite(data: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    """The skops file with ``change`` applied to every node of its schema (an attacker's edit)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    schema = json.loads(source.read(model_trust.SCHEMA_FILE))
    stack: list[Any] = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "__loader__" in item:
                change(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            body = source.read(info.filename)
            if info.filename == model_trust.SCHEMA_FILE:
                body = json.dumps(schema).encode()
            target.writestr(info, body)
    return out.getvalue()


def _retarget(module: str, name: str, *, to: tuple[str, str]) -> Callable[[dict[str, Any]], None]:
    def change(node: dict[str, Any]) -> None:
        if (node.get("__module__"), node.get("__class__")) == (module, name):
            node["__module__"], node["__class__"] = to

    return change


def _real_pipeline(trained_run: Any) -> Any:
    run = trained_run("iris")
    return artifacts.load_model(artifacts.fetch_verified(run.model_uri, run.sha256))


def _prefix_policy_accepts(data: bytes) -> bool:
    """What the loader trusted before: skops' defaults plus every ``sklearn.`` name."""
    untrusted = sio.get_untrusted_types(data=data)
    return all(t == "numpy.dtype" or t.startswith("sklearn.") for t in untrusted)


def test_private_sklearn_reexport_of_a_stdlib_function_is_refused(trained_run: Any) -> None:
    """``sklearn.datasets._base.makedirs`` is ``os.makedirs``: a FunctionTransformer calls it."""
    import os

    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    pipeline = _real_pipeline(trained_run)
    crafted = Pipeline([("hook", FunctionTransformer(os.makedirs)), *pipeline.steps])
    data = _rewrite(
        sio.dumps(crafted), _retarget("os", "makedirs", to=("sklearn.datasets._base", "makedirs"))
    )
    assert _prefix_policy_accepts(data), "the old prefix rule let this file through"

    refused = artifacts.untrusted_types(data)
    assert "sklearn.datasets._base.makedirs (FunctionNode)" in refused
    assert "sklearn.preprocessing._function_transformer.FunctionTransformer (ObjectNode)" in refused
    with pytest.raises(artifacts.UntrustedModelError, match=r"sklearn\.datasets\._base\.makedirs"):
        artifacts.load_model(data)


def test_function_transformer_with_a_callable_skops_trusts_is_refused() -> None:
    """skops trusts FunctionTransformer and numpy ufuncs by default; we trust neither."""
    from sklearn.preprocessing import FunctionTransformer

    data = sio.dumps(FunctionTransformer(np.log1p))
    assert sio.get_untrusted_types(data=data) == []  # skops' defaults would load it
    assert artifacts.untrusted_types(data) == [
        "numpy.log1p (FunctionNode)",
        "sklearn.preprocessing._function_transformer.FunctionTransformer (ObjectNode)",
    ]
    with pytest.raises(artifacts.UntrustedModelError, match="allow-list"):
        artifacts.load_model(data)


def test_unknown_class_is_never_imported_or_constructed(markers: Path) -> None:
    from types import SimpleNamespace

    data = _rewrite(
        sio.dumps({"model": SimpleNamespace(a=1)}),
        _retarget("types", "SimpleNamespace", to=(PROBE_MODULE, "Probe")),
    )
    with pytest.raises(artifacts.UntrustedModelError, match=rf"{PROBE_MODULE}\.Probe"):
        artifacts.load_model(data)
    assert sorted(p.name for p in markers.iterdir()) == []

    # The probe works: skops told to trust it imports and builds it.
    sio.loads(data, trusted=[f"{PROBE_MODULE}.Probe"])
    assert sorted(p.name for p in markers.iterdir()) == ["constructed", "imported", "state-set"]


def test_unknown_object_nested_deep_in_a_real_model_is_refused(
    trained_run: Any, markers: Path
) -> None:
    from types import SimpleNamespace

    pipeline = _real_pipeline(trained_run)
    scaler = pipeline.named_steps["preprocess"].transformers_[0][1].named_steps["scale"]
    scaler.notes = {"history": [("v1", [SimpleNamespace(a=1)])]}
    data = _rewrite(
        sio.dumps(pipeline), _retarget("types", "SimpleNamespace", to=(PROBE_MODULE, "Probe"))
    )
    assert artifacts.untrusted_types(data) == [f"{PROBE_MODULE}.Probe (ObjectNode)"]
    with pytest.raises(artifacts.UntrustedModelError):
        artifacts.load_model(data)
    assert list(markers.iterdir()) == []


def test_allowed_class_under_another_loader_is_refused(trained_run: Any) -> None:
    """A MethodNode on an allowed class (a bound method as a value) is not on the list."""
    data = _rewrite(
        sio.dumps(_real_pipeline(trained_run)),
        lambda node: (
            node.update({"__loader__": "MethodNode"})
            if node.get("__class__") == "StandardScaler"
            else None
        ),
    )
    assert "sklearn.preprocessing._data.StandardScaler (MethodNode)" in artifacts.untrusted_types(
        data
    )


def test_not_a_skops_file_is_refused() -> None:
    with pytest.raises(artifacts.UntrustedModelError, match="not a skops model file"):
        artifacts.load_model(b"PK\x03\x04 not really a zip")


def test_the_trainer_never_writes_a_model_the_loader_refuses() -> None:
    from sklearn.preprocessing import FunctionTransformer

    with pytest.raises(artifacts.UntrustedModelError, match="FunctionTransformer"):
        artifacts.dump_model(FunctionTransformer(np.log1p))


def _crafted_run(trained_run: Any, tmp_path: Path, markers: Path) -> tuple[Path, str]:
    """A copy of a real run folder whose model.skops hides a probe; metadata re-signed."""
    from types import SimpleNamespace

    folder = tmp_path / "crafted-run"
    shutil.copytree(trained_run("iris").run_dir, folder)
    pipeline = _real_pipeline(trained_run)
    pipeline.steps[-1][1].extra = SimpleNamespace(a=1)
    data = _rewrite(
        sio.dumps(pipeline), _retarget("types", "SimpleNamespace", to=(PROBE_MODULE, "Probe"))
    )
    (folder / "model.skops").write_bytes(data)
    sha = artifacts.sha256_hex(data)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["model"]["sha256"] = sha
    (folder / "metadata.json").write_text(json.dumps(meta))
    return folder, sha


def test_the_server_refuses_a_crafted_model(
    trained_run: Any, tmp_path: Path, markers: Path
) -> None:
    from perennial_runtime.serve.config import ServeConfig
    from perennial_runtime.serve.model import LoadError, load

    folder, sha = _crafted_run(trained_run, tmp_path, markers)
    with pytest.raises(LoadError, match="allow-list") as caught:
        load(ServeConfig(model_uri=(folder / "model.skops").as_uri(), sha256=sha))
    assert caught.value.transient is False
    assert list(markers.iterdir()) == []


def test_the_trainer_refuses_a_crafted_champion(
    trained_run: Any,
    tmp_path: Path,
    markers: Path,
    make_train_config: Callable[..., Any],
) -> None:
    folder, sha = _crafted_run(trained_run, tmp_path, markers)
    champion = {"run": "iris-1", "modelUri": (folder / "model.skops").as_uri(), "sha256": sha}
    result = train(
        make_train_config(
            run_name="next",
            artifact_uri=(tmp_path / "artifacts").as_uri(),
            data_uri="sklearn://iris",
            estimator="GaussianNB",
            params={},
            champion=champion,
        )
    )
    assert result.reason == FailureReason.CHAMPION_UNAVAILABLE.value
    assert f"{PROBE_MODULE}.Probe" in result.message
    assert list(markers.iterdir()) == []
