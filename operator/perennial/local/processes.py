"""Child processes of the local runner: start, find again after a restart, stop.

Trainers and model servers run in their own session (``start_new_session``): a Ctrl-C in
the runner's terminal reaches the runner only, which stops them in order (servers after
their traffic drained). Each process is recorded by pid together with a marker that is
part of its command line, so a restarted runner can tell its own orphans from unrelated
processes that reused the pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

RUNTIME = (sys.executable, "-m", "perennial_runtime")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def spawn(
    args: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``args`` in its own session, stdout and stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )


def cmdline(pid: int) -> str | None:
    """The command line of ``pid`` (None: no such process, or not readable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode("utf-8", "replace")


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def alive(pid: int | None, marker: str | None = None) -> bool:
    """Whether ``pid`` runs (and, when /proc can tell, has ``marker`` in its command line)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process: not ours
    if _zombie(pid):
        return False
    if marker is not None:
        line = cmdline(pid)
        if line is not None and marker not in line:
            return False
    return True


def find(marker: str) -> int | None:
    """The pid of a running process whose command line holds ``marker`` (Linux only)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        line = cmdline(int(entry.name))
        if line and marker in line and not _zombie(int(entry.name)):
            return int(entry.name)
    return None


def terminate(
    pid: int | None,
    *,
    marker: str | None = None,
    popen: subprocess.Popen[bytes] | None = None,
    grace: float = 5.0,
) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; reaps our own children."""
    if popen is not None:
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.terminate()
            try:
                popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(timeout=grace)
        return
    if not alive(pid, marker):
        return
    assert pid is not None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not alive(pid, marker):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
