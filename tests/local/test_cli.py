"""`perennial local` and `perennial demo`: bad input is refused with a clear message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from perennial.cli import main
from perennial.local.store import StateStore

from .helpers import deadline, read_object, wait_for, write_manifests


def test_local_refuses_a_bad_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: perennial.dev/v1alpha1\nkind: TrainingRun\nmetadata: {name: r}\n")
    assert main(["local", str(bad), "--state-dir", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "perennial local:" in err and "creates runs itself" in err and str(bad) in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["local", "x.yaml", "--interval", "0"], "--interval must be a positive"),
        (["local", "x.yaml", "--port", "70000"], "--port must be between 0 and 65535"),
        (["demo", "--speed", "0"], "--speed must be a positive"),
        (["local", "x.yaml", "--speed", "0"], "--speed must be a positive"),
        (["local", "x.yaml", "--speed", "-60"], "--speed must be a positive"),
        (["demo", "--port", "-1"], "--port must be between 0 and 65535"),
    ],
)
def test_bad_options(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_local_refuses_a_state_dir_in_use(
    tmp_path: Path, manifests_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifests(manifests_dir)
    holder = StateStore(tmp_path / "state")
    holder.lock()
    try:
        assert main(["local", str(manifest), "--state-dir", str(tmp_path / "state")]) == 2
    finally:
        holder.unlock()
    assert "is in use by perennial local" in capsys.readouterr().err


def test_help_names_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("local", "demo"):
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
    assert "--state-dir" in capsys.readouterr().out


@pytest.mark.slow
def test_local_speed_runs_the_runners_clock_faster(tmp_path: Path, manifests_dir: Path) -> None:
    """`perennial local --speed 3600`: an hour of the runner's clock per second, so an
    hourly schedule fires twice in a few seconds (on the wall clock it would take an hour,
    far beyond this test's wait)."""
    manifest = write_manifests(
        manifests_dir,
        "fast",
        deployment=False,
        triggers='    schedule: {cron: "0 * * * *"}\n    onSpecChange: false',
        policy="Replace",
    )
    state = tmp_path / "state"
    command = [sys.executable, "-m", "perennial", "local", str(manifest), "--state-dir", str(state)]
    command += ["--port", "0", "--interval", "0.2", "--speed", "3600"]
    log = (tmp_path / "local.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ)
    try:

        def scheduled() -> list[dict[str, Any]]:
            folder = state / "objects" / "trainingruns" / "default"
            runs = [read_object(state, "trainingruns", p.stem) for p in folder.glob("*.json")]
            found = [r for r in runs if r and r["spec"]["trigger"]["type"] == "Schedule"]
            return found if len(found) >= 2 else []

        first, second = sorted(
            wait_for("two hourly runs", scheduled), key=lambda r: r["metadata"]["name"]
        )[:2]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=deadline()) == 0
        log.close()
    # The schedule times each run consumed (the perennial.dev/consumed annotation): cron
    # boundaries of the runner's clock, at least an hour apart.
    times = [
        datetime.fromisoformat(
            json.loads(r["metadata"]["annotations"]["perennial.dev/consumed"])["scheduleTime"]
        )
        for r in (first, second)
    ]
    assert all(t.minute == t.second == 0 for t in times), times
    assert times[1] - times[0] >= timedelta(hours=1)
