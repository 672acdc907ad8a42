"""Stored models round-trip through skops with sha256 verification; damage is refused."""

from __future__ import annotations

import collections
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from perennial_runtime import artifacts
from perennial_runtime.contract import ExitCode, FailureReason
from perennial_runtime.preprocessing import coerce_features
from perennial_runtime.trainer import exit_code, train


def test_round_trip_with_sha256(trained_run: Any) -> None:
    run = trained_run("wine")
    data = artifacts.fetch_verified(run.model_uri, run.sha256)
    assert artifacts.untrusted_types(data) == []
    model = artifacts.load_model(data)
    meta = artifacts.read_metadata(run.run_uri)
    frame = pd.DataFrame(meta.sample.instances, columns=[f.name for f in meta.features])
    assert list(model.predict(coerce_features(frame, meta.features))) == meta.sample.predictions
    # The upper-case spelling of the digest is accepted too.
    assert artifacts.fetch_verified(run.model_uri, run.sha256.upper()) == data


@pytest.fixture
def copied_run(trained_run: Any, tmp_path: Path) -> Path:
    folder = tmp_path / "copy"
    shutil.copytree(trained_run("iris").run_dir, folder)
    return folder


def test_tampered_model_is_refused(trained_run: Any, copied_run: Path) -> None:
    model = copied_run / "model.skops"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(artifacts.ArtifactIntegrityError, match="sha256 mismatch"):
        artifacts.fetch_verified(model.as_uri(), trained_run("iris").sha256)


def test_truncated_model_is_refused(trained_run: Any, copied_run: Path) -> None:
    model = copied_run / "model.skops"
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(artifacts.ArtifactIntegrityError, match="1000 bytes"):
        artifacts.fetch_verified(model.as_uri(), trained_run("iris").sha256)


def test_tampered_champion_fails_the_next_run(
    trained_run: Any,
    copied_run: Path,
    tmp_path: Path,
    make_train_config: Callable[..., Any],
) -> None:
    model = copied_run / "model.skops"
    model.write_bytes(model.read_bytes()[:-10])
    champion = {"run": "iris-1", "modelUri": model.as_uri(), "sha256": trained_run("iris").sha256}
    result = train(
        make_train_config(
            run_name="next",
            artifact_uri=(tmp_path / "artifacts").as_uri(),
            data_uri="sklearn://iris",
            champion=champion,
        )
    )
    assert result.reason == FailureReason.CHAMPION_UNAVAILABLE.value
    assert exit_code(result) == ExitCode.CHAMPION_UNAVAILABLE
    assert "modified or truncated" in result.message


def test_untrusted_types_are_refused() -> None:
    """A skops file naming a type outside the allow-list (here a counter) is never loaded."""
    import skops.io as sio

    data = sio.dumps({"counts": collections.Counter("abc")})
    assert artifacts.untrusted_types(data) == ["collections.Counter (DictNode)"]
    with pytest.raises(artifacts.UntrustedModelError, match="allow-list"):
        artifacts.load_model(data)


def test_unwritable_artifact_location_is_an_artifact_error(
    tmp_path: Path, make_train_config: Callable[..., Any]
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the artifact folder should be")
    result = train(
        make_train_config(
            run_name="run",
            artifact_uri=blocker.as_uri(),
            data_uri="sklearn://iris",
            estimator="GaussianNB",
            params={},
        )
    )
    assert result.reason == FailureReason.ARTIFACT_ERROR.value
    assert exit_code(result) == ExitCode.ARTIFACT_ERROR == 7
