"""The enumerated values of the API (phases, trigger types, policies)."""

from __future__ import annotations

from enum import StrEnum


class TriggerType(StrEnum):
    """Why a TrainingRun was started."""

    INITIAL = "Initial"
    SPEC_CHANGE = "SpecChange"
    SCHEDULE = "Schedule"
    DATA_CHANGE = "DataChange"
    DRIFT = "Drift"
    PERFORMANCE_DECAY = "PerformanceDecay"
    MANUAL = "Manual"
    REPRODUCE = "Reproduce"


class PipelinePhase(StrEnum):
    IDLE = "Idle"
    TRAINING = "Training"
    SUSPENDED = "Suspended"
    STALLED = "Stalled"


class RunPhase(StrEnum):
    PENDING = "Pending"
    TRAINING = "Training"
    EVALUATING = "Evaluating"
    SUCCEEDED = "Succeeded"
    REJECTED = "Rejected"
    FAILED = "Failed"

    @property
    def finished(self) -> bool:
        """Succeeded (blessed), Rejected (a gate failed) and Failed are final."""
        return self in _FINISHED_RUN_PHASES


_FINISHED_RUN_PHASES = frozenset({RunPhase.SUCCEEDED, RunPhase.REJECTED, RunPhase.FAILED})


class DeploymentPhase(StrEnum):
    WAITING = "Waiting"
    PROGRESSING = "Progressing"
    AVAILABLE = "Available"
    DEGRADED = "Degraded"


class ConcurrencyPolicy(StrEnum):
    FORBID = "Forbid"
    REPLACE = "Replace"


class RolloutStrategyType(StrEnum):
    ROLLING_UPDATE = "RollingUpdate"
    CANARY = "Canary"


class RolloutResult(StrEnum):
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"
