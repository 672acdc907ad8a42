"""The demo's TrainingPipeline and ModelDeployment: ordinary manifests, written to a file
the local runner reads exactly as it would read yours."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PIPELINE = "stream"
DEPLOYMENT = "stream"
DATA_FILE = "stream.csv"


@dataclass(frozen=True)
class DemoRules:
    """The numbers the story depends on (seconds are on the demo's clock)."""

    accuracy_gate: float = 0.8
    decay_threshold: float = 0.8
    drift_threshold: float = 0.25
    cooldown_seconds: int = 900
    poll_seconds: int = 30
    scrape_seconds: int = 10
    drift_window: int = 200
    min_samples: int = 100
    min_feedback: int = 100
    progress_deadline_seconds: int = 1800


def render(data: Path, rules: DemoRules) -> str:
    return f"""\
# Written by `perennial demo`. The same YAML you would `kubectl apply`: the local runner
# reads it (again whenever it changes) and runs the loop with local processes.
apiVersion: perennial.dev/v1alpha1
kind: TrainingPipeline
metadata:
  name: {PIPELINE}
spec:
  data:
    uri: file://{data}
    target: label
    columns:
      - {{name: f1, type: numeric}}
      - {{name: f2, type: numeric}}
      - {{name: f3, type: numeric}}
      - {{name: f4, type: numeric}}
  model:
    task: classification
    estimator: LogisticRegression
    params: {{C: 1.0, max_iter: 500}}
  evaluation:
    testSize: 0.25
    seed: 7
    primaryMetric: accuracy
    topFeatures: 4
  gates:
    metrics:
      - metric: accuracy          # never bless a model below this on its holdout
        threshold: {rules.accuracy_gate}
    beatChampion:                 # nor one worse than the champion on the same holdout
      enabled: true
      minDelta: 0.0
    data:
      minRows: 200
  triggers:
    dataChange:                   # new data: the file's fingerprint changes
      enabled: true
      pollIntervalSeconds: {rules.poll_seconds}
    drift:                        # the served model's inputs drift (PSI)
      deploymentRef: {{name: {DEPLOYMENT}}}
      threshold: {rules.drift_threshold}
      cooldownSeconds: {rules.cooldown_seconds}
    performanceDecay:             # the served model's live accuracy (from feedback) decays
      deploymentRef: {{name: {DEPLOYMENT}}}
      metric: accuracy
      threshold: {rules.decay_threshold}
      minFeedbackSamples: {rules.min_feedback}
      cooldownSeconds: {rules.cooldown_seconds}
  artifacts:                      # the claim becomes <state-dir>/volumes/demo-artifacts
    uri: file:///artifacts/{PIPELINE}
    volume:
      claimName: demo-artifacts
      mountPath: /artifacts
---
apiVersion: perennial.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: {DEPLOYMENT}
spec:
  source:
    pipelineRef: {{name: {PIPELINE}}}
  replicas: 1
  strategy:
    type: RollingUpdate
  progressDeadlineSeconds: {rules.progress_deadline_seconds}
  rollback:
    automatic: true
  monitoring:
    scrapeIntervalSeconds: {rules.scrape_seconds}
    driftWindow: {rules.drift_window}
    minSamples: {rules.min_samples}
"""


def write(path: Path, data: Path, rules: DemoRules) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(data, rules), encoding="utf-8")
    return path
