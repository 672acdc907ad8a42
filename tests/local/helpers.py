"""Helpers for the local runner's tests: manifests on disk, waiting on state files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testsupport import scaled, wait_until

PIPELINE_YAML = """\
apiVersion: perennial.dev/v1alpha1
kind: TrainingPipeline
metadata:
  name: {name}
spec:
  data:
    uri: sklearn://breast_cancer
    target: target
  model:
    task: classification
    estimator: LogisticRegression
    params: {{max_iter: 300}}
  evaluation: {{testSize: 0.25, seed: 3}}
  gates:
    metrics:
      - metric: accuracy
        threshold: 0.9
  triggers:
{triggers}
  concurrencyPolicy: {policy}
  artifacts:
    uri: file:///artifacts/{name}
    volume: {{claimName: models, mountPath: /artifacts}}
"""

DEPLOYMENT_YAML = """\
---
apiVersion: perennial.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: {name}
spec:
  source:
    pipelineRef: {{name: {name}}}
  progressDeadlineSeconds: 600
  monitoring: {{scrapeIntervalSeconds: 10, driftWindow: 100, minSamples: 50{monitoring}}}
"""


def write_manifests(
    folder: Path,
    name: str = "bc",
    *,
    deployment: bool = True,
    triggers: str = "    onSpecChange: true",
    policy: str = "Forbid",
    monitoring: str = "",
) -> Path:
    """``monitoring``: more fields of the deployment's spec.monitoring (``, a: 1``)."""
    path = folder / f"{name}.yaml"
    text = PIPELINE_YAML.format(name=name, triggers=triggers, policy=policy)
    if deployment:
        text += DEPLOYMENT_YAML.format(name=name, monitoring=monitoring)
    path.write_text(text, encoding="utf-8")
    return path


def read_object(state: Path, plural: str, name: str, namespace: str = "default") -> Any:
    path = state / "objects" / plural / namespace / f"{name}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# One generous deadline for every wait: the one every test folder shares
# (tests/testsupport), longer here because real training runs in subprocesses.
DEADLINE_SECONDS = 90.0


def deadline() -> float:
    """:data:`DEADLINE_SECONDS` times ``$PERENNIAL_TEST_TIMEOUT_FACTOR`` (default 1)."""
    return scaled(DEADLINE_SECONDS)


def wait_for(what: str, done: Callable[[], Any], step: float = 0.2) -> Any:
    """Poll ``done`` (fast at first, then every ``step`` seconds) until it returns
    something truthy; fail after the :func:`deadline`."""
    return wait_until(done, what=what, timeout=DEADLINE_SECONDS, max_interval=step)
