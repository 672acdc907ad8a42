"""Every allow-listed estimator that a pipeline may name can be trained AND served.

A model the gates can bless but the server refuses would break the loop at rollout; this
trains each classifier and regressor of the allow-list on a small bundled dataset and
asks a real server on loopback for predictions (and probabilities for classifiers).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from perennial_runtime.contract import CLASSIFIERS, REGRESSORS
from perennial_runtime.serve.config import ServeConfig
from perennial_runtime.serve.embedded import EmbeddedServer
from testsupport import deadline

# Small models: the point is that they load and answer, not that they are good.
SMALL: dict[str, dict[str, Any]] = {
    "LogisticRegression": {"max_iter": 500},
    "RandomForestClassifier": {"n_estimators": 5},
    "ExtraTreesClassifier": {"n_estimators": 5},
    "GradientBoostingClassifier": {"n_estimators": 5},
    "HistGradientBoostingClassifier": {"max_iter": 5},
    "RandomForestRegressor": {"n_estimators": 5},
    "ExtraTreesRegressor": {"n_estimators": 5},
    "GradientBoostingRegressor": {"n_estimators": 5},
    "HistGradientBoostingRegressor": {"max_iter": 5},
}


@pytest.mark.parametrize(
    ("dataset", "estimator"),
    [("iris", name) for name in CLASSIFIERS] + [("diabetes", name) for name in REGRESSORS],
)
def test_trained_model_is_served(trained_run: Any, dataset: str, estimator: str) -> None:
    run = trained_run(dataset, estimator=estimator, params=SMALL.get(estimator, {}))
    server = EmbeddedServer(ServeConfig(model_uri=run.model_uri, sha256=run.sha256)).start()
    try:
        server.wait_ready(deadline())
        rows = run.metadata.sample.instances[:3]
        with httpx.Client(base_url=server.url, timeout=deadline()) as client:
            answer = client.post("/predict", json={"instances": rows})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert len(body["predictions"]) == 3
        if dataset == "iris":
            assert len(body["probabilities"]) == 3
    finally:
        server.stop()


def test_svc_probability_param_is_refused_with_the_reason(
    make_train_config: Any, tmp_path: Any
) -> None:
    from perennial_runtime.training.trainer import train

    config = make_train_config(
        run_name="svc-no-proba",
        artifact_uri=tmp_path.as_uri(),
        data_uri="sklearn://iris",
        estimator="SVC",
        params={"probability": False},
        result_path=str(tmp_path / "result.json"),
    )
    result = train(config)
    assert result.status == "Failed" and result.reason == "InvalidConfig"
    assert "model.params.probability" in result.message
    assert "CalibratedClassifierCV" in result.message
