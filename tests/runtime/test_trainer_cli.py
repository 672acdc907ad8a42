"""`python -m perennial_runtime train` end to end in a subprocess: result file, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from perennial_runtime.contract import TERMINATION_MESSAGE_LIMIT, ExitCode, TrainResult
from testsupport import scaled


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PERENNIAL_")}
    return subprocess.run(
        [sys.executable, "-m", "perennial_runtime", "train", *args],
        env={**clean, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=scaled(120),
        check=False,
    )


def read_result(path: Path) -> TrainResult:
    raw = path.read_bytes()
    assert len(raw) <= TERMINATION_MESSAGE_LIMIT
    return TrainResult.model_validate_json(raw)


def wire(config: Any) -> dict[str, Any]:
    data: dict[str, Any] = config.to_dict()
    return data


def test_train_from_a_config_file(tmp_path: Path, make_train_config: Callable[..., Any]) -> None:
    config = make_train_config(
        run_name="cli-run",
        artifact_uri=(tmp_path / "artifacts").as_uri(),
        data_uri="sklearn://breast_cancer",
        estimator="LogisticRegression",
        params={"max_iter": 300},
    )
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(wire(config)))
    result_file = tmp_path / "termination-log"

    done = run_cli("--config", str(config_file), "--result-path", str(result_file))

    assert done.returncode == ExitCode.OK, done.stderr
    result = read_result(result_file)
    assert result.status == "Succeeded"
    assert result.metrics["accuracy"] > 0.9
    assert (tmp_path / "artifacts" / "cli-run" / "model.skops").exists()
    assert json.loads(done.stdout.strip().splitlines()[-1]) == json.loads(result_file.read_text())
    assert "training Succeeded: Trained" in done.stderr
    assert "metrics: accuracy=" in done.stderr


def test_config_from_env_json_and_result_path_from_config(
    tmp_path: Path, make_train_config: Callable[..., Any]
) -> None:
    result_file = tmp_path / "result.json"
    config = make_train_config(
        run_name="env-run",
        artifact_uri=(tmp_path / "artifacts").as_uri(),
        data_uri=(tmp_path / "no-such-file.csv").as_uri(),
        result_path=str(result_file),
    )
    done = run_cli(env={"PERENNIAL_TRAIN_CONFIG": json.dumps(wire(config))})
    assert done.returncode == ExitCode.DATA_UNAVAILABLE == 3, done.stderr
    result = read_result(result_file)
    assert (result.status, result.reason) == ("Failed", "DataUnavailable")
    assert "no-such-file.csv" in result.message
    assert "training Failed: DataUnavailable" in done.stderr


def test_config_file_from_env_in_yaml_with_bad_data(
    tmp_path: Path, make_train_config: Callable[..., Any]
) -> None:
    data = tmp_path / "tiny.csv"
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "target": [0, 1, 0]}).to_csv(data, index=False)
    config = make_train_config(
        run_name="yaml-run",
        artifact_uri=(tmp_path / "artifacts").as_uri(),
        data_uri=str(data),
        estimator="GaussianNB",
        params={},
    )
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(wire(config)))
    result_file = tmp_path / "result.json"
    done = run_cli(
        "--result-path",
        str(result_file),
        env={"PERENNIAL_TRAIN_CONFIG_FILE": str(config_file)},
    )
    assert done.returncode == ExitCode.DATA_VALIDATION_FAILED == 4, done.stderr
    result = read_result(result_file)
    assert result.reason == "DataValidationFailed"
    assert result.data is not None
    assert [v.rule for v in result.data.violations] == ["minRows", "targetClasses"]
    assert "violation [minRows]" in done.stderr


def test_invalid_configs_exit_2(tmp_path: Path) -> None:
    result_file = tmp_path / "result.json"
    bad = {
        "runName": "bad",
        "data": {"uri": "sklearn://iris", "target": "target"},
        "model": {"task": "classification", "estimator": "os.system"},
        "artifactUri": "file:///tmp/never",
    }
    done = run_cli(
        "--result-path", str(result_file), env={"PERENNIAL_TRAIN_CONFIG": json.dumps(bad)}
    )
    assert done.returncode == ExitCode.INVALID_CONFIG == 2
    result = read_result(result_file)
    assert result.reason == "InvalidConfig"
    assert "model" in result.message and "os.system" in result.message

    missing = run_cli("--result-path", str(result_file))
    assert missing.returncode == 2
    assert "PERENNIAL_TRAIN_CONFIG" in read_result(result_file).message

    not_json = run_cli("--result-path", str(result_file), env={"PERENNIAL_TRAIN_CONFIG": "[1, 2"})
    assert not_json.returncode == 2
    assert read_result(result_file).reason == "InvalidConfig"


def test_unknown_param_exits_2(tmp_path: Path, make_train_config: Callable[..., Any]) -> None:
    config = make_train_config(
        run_name="params",
        artifact_uri=(tmp_path / "artifacts").as_uri(),
        data_uri="sklearn://iris",
        params={"n_estimators": 10, "max_leaves": 4},
    )
    result_file = tmp_path / "result.json"
    done = run_cli(
        "--result-path", str(result_file), env={"PERENNIAL_TRAIN_CONFIG": json.dumps(wire(config))}
    )
    assert done.returncode == 2
    assert "model.params.max_leaves" in read_result(result_file).message


def test_config_sources_in_order(tmp_path: Path, make_train_config: Callable[..., Any]) -> None:
    from perennial_runtime.failures import InvalidConfigError
    from perennial_runtime.training.trainer import load_config

    def config_json(run_name: str) -> str:
        return json.dumps(
            wire(
                make_train_config(
                    run_name=run_name, artifact_uri="file:///tmp/a", data_uri="sklearn://iris"
                )
            )
        )

    explicit, from_env_file = tmp_path / "explicit.json", tmp_path / "env.json"
    explicit.write_text(config_json("explicit"))
    from_env_file.write_text(config_json("env-file"))
    env = {"PERENNIAL_TRAIN_CONFIG_FILE": str(from_env_file), "PERENNIAL_TRAIN_CONFIG": "{}"}
    assert load_config(str(explicit), env).run_name == "explicit"
    assert load_config(None, env).run_name == "env-file"
    assert load_config(None, {"PERENNIAL_TRAIN_CONFIG": config_json("env")}).run_name == "env"
    with pytest.raises(InvalidConfigError, match=r"runName: Field required"):
        load_config(None, {"PERENNIAL_TRAIN_CONFIG": '{"data": {}}'})
    with pytest.raises(InvalidConfigError, match="cannot read the config file"):
        load_config(str(tmp_path / "absent.json"), {})
