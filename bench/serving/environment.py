"""What the benchmark needs and where it runs: wrk, MLServer's and granian's venvs, the
machine and the library versions."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

MLSERVER = ("mlserver==1.7.1", "mlserver-sklearn==1.7.1")
# A fresh MLServer 1.7.1 crash-loops its workers with uvloop >= 0.21.
MLSERVER_PINS = ("uvloop<0.21",)
GRANIAN = ("granian==2.8.7",)
INSTALL_TIMEOUT = 600


def ensure_wrk() -> None:
    """wrk from the distribution's packages when it is missing."""
    if shutil.which("wrk"):
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise SystemExit("wrk is not installed: install it (apt-get install -y wrk) and re-run")
    print("installing wrk (apt-get install -y wrk)", flush=True)
    subprocess.run(
        ["apt-get", "install", "-y", "wrk"],
        check=True,
        timeout=INSTALL_TIMEOUT,
        stdout=subprocess.DEVNULL,
    )


def ensure_venv(path: Path, requirements: list[str]) -> Path:
    """A venv at ``path`` with exactly ``requirements`` installed (reused when they match)."""
    marker = path / "bench-requirements.json"
    python = path / "bin" / "python"
    if python.exists() and marker.exists() and json.loads(marker.read_text()) == requirements:
        return python
    print(f"creating {path} with {' '.join(requirements)}", flush=True)
    if path.exists():
        shutil.rmtree(path)
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *requirements], check=True, timeout=INSTALL_TIMEOUT)
    marker.write_text(json.dumps(requirements))
    return python


def mlserver_venv(root: Path) -> Path:
    """MLServer 1.7.1 + mlserver-sklearn with our scikit-learn version (so the exported
    file loads the same estimator code)."""
    sklearn = f"scikit-learn=={metadata.version('scikit-learn')}"
    return ensure_venv(root / "mlserver-venv", [*MLSERVER, *MLSERVER_PINS, sklearn])


def granian_venv(root: Path) -> Path:
    return ensure_venv(root / "granian-venv", [*GRANIAN, "uvloop"])


def versions_in(python: Path, distributions: list[str]) -> dict[str, str]:
    code = (
        "import json,sys\nfrom importlib import metadata\nout={}\n"
        "for d in sys.argv[1:]:\n"
        "    try: out[d]=metadata.version(d)\n"
        "    except metadata.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    done = subprocess.run(
        [str(python), "-c", code, *distributions],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result: dict[str, str] = json.loads(done.stdout)
    return result


def our_versions() -> dict[str, str]:
    return versions_in(
        Path(sys.executable),
        [
            *("perennial", "scikit-learn", "numpy", "onnxruntime", "skl2onnx", "uvicorn"),
            *("uvloop", "httptools", "orjson", "starlette"),
        ],
    )


def machine() -> dict[str, str]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model or platform.processor() or "unknown",
        "cores": str(len(os.sched_getaffinity(0))),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"
