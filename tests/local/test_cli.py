"""`perennial local` and `perennial demo`: bad input is refused with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from perennial.cli import main
from perennial.local.store import StateStore

from .helpers import write_manifests


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
