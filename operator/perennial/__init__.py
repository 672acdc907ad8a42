"""Perennial: a Kubernetes operator for continuous training of scikit-learn models."""

from perennial._version import __version__

__all__ = ["__version__"]
