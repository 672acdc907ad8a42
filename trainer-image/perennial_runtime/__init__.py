"""Code that runs inside Perennial's training Jobs and serving Deployments."""

__version__ = "0.1.0"
