"""Data read from s3:// and artifacts written to s3://, against moto's S3 server."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from sklearn.datasets import load_wine

from perennial_runtime import artifacts
from perennial_runtime.contract import ExitCode
from perennial_runtime.training.trainer import exit_code, train


def test_train_from_and_to_s3(
    s3_bucket: str,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    make_train_config: Callable[..., Any],
    champion_block: Callable[..., Any],
) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    body = load_wine(as_frame=True).frame.to_csv(index=False).encode()
    s3.put_object(Bucket=s3_bucket, Key="data/wine.csv", Body=body)

    def config(run_name: str, **kwargs: Any) -> Any:
        return make_train_config(
            run_name=run_name,
            artifact_uri=f"s3://{s3_bucket}/models/",
            data_uri=f"s3://{s3_bucket}/data/wine.csv",
            estimator="ExtraTreesClassifier",
            params={"n_estimators": 15},
            **kwargs,
        )

    first = train(config("run-a"))
    assert first.status == "Succeeded", first.message
    assert first.data is not None
    assert first.data.fingerprint == hashlib.sha256(body).hexdigest()
    assert first.artifact is not None
    assert first.artifact.model_uri == f"s3://{s3_bucket}/models/run-a/model.skops"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert {
        "models/run-a/model.skops",
        "models/run-a/metadata.json",
        "models/run-a/MODEL_CARD.md",
    } <= keys
    stored = s3.get_object(Bucket=s3_bucket, Key="models/run-a/model.skops")["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == first.artifact.sha256
    assert artifacts.read_metadata(first.artifact.uri).model.sha256 == first.artifact.sha256

    # The standard AWS variable works as well; the champion is fetched from S3.
    monkeypatch.delenv("PERENNIAL_S3_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    second = train(config("run-b", champion=champion_block(first)))
    assert second.status == "Succeeded", second.message
    assert second.champion_metrics == first.metrics

    missing = train(
        make_train_config(
            run_name="run-c",
            artifact_uri=f"s3://{s3_bucket}/models",
            data_uri=f"s3://{s3_bucket}/data/absent.csv",
        )
    )
    assert missing.reason == "DataUnavailable"
    assert exit_code(missing) == ExitCode.DATA_UNAVAILABLE
