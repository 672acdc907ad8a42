"""The rollouts the suite drives through ``perennial local``, as a user would: one
TrainingPipeline and one ModelDeployment in a manifest file, edited between stages (editing
the file is ``kubectl apply``; the ``perennial.dev/retrain`` annotation starts a run)."""

from __future__ import annotations

from dataclasses import dataclass

from perennial.core.naming import run_name

NAME = "load"
PROGRESS_DEADLINE_SECONDS = 30  # the API's minimum: the automatic rollback's wait

ROLLING = "  strategy:\n    type: RollingUpdate\n"
CANARY = """\
  strategy:
    type: Canary
    canary:
      steps:
        - {{weight: 25, pauseSeconds: {pause}}}
        - {{weight: 50, pauseSeconds: {pause}}}
        - {{weight: 100, pauseSeconds: 0}}
      analysis:
        maxErrorRate: 0.0
        maxP99LatencyMs: 2000
        minRequests: 50
"""


def manifest(*, retrain: int, canary_pause: int | None, rollback_to: str | None) -> str:
    """The manifest at one stage: ``retrain`` is the annotation's value (a change starts a
    run), ``canary_pause`` None means RollingUpdate."""
    strategy = ROLLING if canary_pause is None else CANARY.format(pause=canary_pause)
    rollback = f"  rollbackTo: {rollback_to}\n" if rollback_to else ""
    return f"""\
apiVersion: perennial.dev/v1alpha1
kind: TrainingPipeline
metadata:
  name: {NAME}
  annotations:
    perennial.dev/retrain: "{retrain}"
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
      - {{metric: accuracy, threshold: 0.9}}
  triggers:
    dataChange: {{enabled: false}}
  artifacts:
    uri: file:///artifacts/{NAME}
    volume: {{claimName: models, mountPath: /artifacts}}
---
apiVersion: perennial.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: {NAME}
spec:
  source:
    pipelineRef: {{name: {NAME}}}
  replicas: 1
{strategy}  progressDeadlineSeconds: {PROGRESS_DEADLINE_SECONDS}
  rollback: {{automatic: true, onAnalysisFailure: true}}
{rollback}  monitoring: {{scrapeIntervalSeconds: 10, driftWindow: 1000, minSamples: 100}}
"""


def run(sequence: int) -> str:
    return run_name(NAME, sequence)


@dataclass(frozen=True)
class Stage:
    """One switch under load: what the user changes and what must serve afterwards."""

    name: str
    retrain: int
    canary_pause: int | None
    rollback_to: str | None
    expect: str  # the run that serves at the end of the stage
    new_run: int | None  # the run the stage trains (None: no training)
    tamper: bool = False  # break the new run's model after blessing (smoke test fails)


def stages(canary_pause: int) -> list[Stage]:
    return [
        Stage("rolling update", 1, None, None, expect=run(2), new_run=2),
        Stage("canary", 2, canary_pause, None, expect=run(3), new_run=3),
        Stage("automatic rollback", 3, canary_pause, None, expect=run(3), new_run=4, tamper=True),
        Stage("manual rollback", 3, canary_pause, run(2), expect=run(2), new_run=None),
    ]
