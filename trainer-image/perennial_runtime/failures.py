"""Expected training failures: each carries the contract's reason (and so its exit code)."""

from __future__ import annotations

from perennial_runtime.contract import FailureReason, Violation


class RunFailedError(Exception):
    """A failure the trainer reports in its result instead of crashing."""

    reason: FailureReason = FailureReason.UNEXPECTED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidConfigError(RunFailedError):
    reason = FailureReason.INVALID_CONFIG


class DataUnavailableError(RunFailedError):
    reason = FailureReason.DATA_UNAVAILABLE


class DataValidationError(RunFailedError):
    reason = FailureReason.DATA_VALIDATION_FAILED

    def __init__(self, message: str, violations: list[Violation]) -> None:
        super().__init__(message)
        self.violations = violations


class TrainingError(RunFailedError):
    reason = FailureReason.TRAINING_ERROR


class ChampionUnavailableError(RunFailedError):
    reason = FailureReason.CHAMPION_UNAVAILABLE


class ArtifactWriteError(RunFailedError):
    reason = FailureReason.ARTIFACT_ERROR
