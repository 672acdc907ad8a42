"""Library versions recorded in ``metadata.json`` (what the model was trained with)."""

from __future__ import annotations

import platform
from importlib import metadata

from perennial_runtime import __version__

# Distribution name -> key in metadata.json's ``libraries``.
_DISTRIBUTIONS = {
    "scikit-learn": "sklearn",
    "numpy": "numpy",
    "pandas": "pandas",
    "scipy": "scipy",
    "skops": "skops",
    "pyarrow": "pyarrow",
    "skl2onnx": "skl2onnx",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
}


def library_versions() -> dict[str, str]:
    """Versions of python, perennial-runtime and the libraries the model depends on."""
    versions = {"python": platform.python_version(), "perennial_runtime": __version__}
    for dist, key in _DISTRIBUTIONS.items():
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions
