"""Names of the Perennial API: group, version, kinds, plurals, annotations, conditions."""

from __future__ import annotations

from typing import Final

from perennial._version import __version__

GROUP: Final = "perennial.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

TRAINING_PIPELINE: Final = "TrainingPipeline"
TRAINING_RUN: Final = "TrainingRun"
MODEL_DEPLOYMENT: Final = "ModelDeployment"

TRAINING_PIPELINES: Final = "trainingpipelines"
TRAINING_RUNS: Final = "trainingruns"
MODEL_DEPLOYMENTS: Final = "modeldeployments"

PLURALS: Final[dict[str, str]] = {
    TRAINING_PIPELINE: TRAINING_PIPELINES,
    TRAINING_RUN: TRAINING_RUNS,
    MODEL_DEPLOYMENT: MODEL_DEPLOYMENTS,
}
CATEGORIES: Final = ("perennial", "ml")

# Set (to any new value, e.g. a timestamp) on a TrainingPipeline to start a run now:
#   kubectl annotate tp/NAME perennial.dev/retrain="$(date +%s)" --overwrite
RETRAIN_ANNOTATION: Final = f"{GROUP}/retrain"
# Set on a ModelDeployment to the name of a TrainingRun from its history to serve it again:
#   kubectl annotate md/NAME perennial.dev/rollback=RUN --overwrite
ROLLBACK_ANNOTATION: Final = f"{GROUP}/rollback"

# kstatus condition types (metav1.Condition), as read by Argo CD, Flux and kubectl wait.
CONDITION_READY: Final = "Ready"
CONDITION_RECONCILING: Final = "Reconciling"
CONDITION_STALLED: Final = "Stalled"

RUNTIME_IMAGE_REPOSITORY: Final = "ghcr.io/perennial-dev/perennial-runtime"
DEFAULT_RUNTIME_IMAGE: Final = f"{RUNTIME_IMAGE_REPOSITORY}:{__version__}"
DEFAULT_SERVING_PORT: Final = 8080
