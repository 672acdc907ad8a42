"""Training "Jobs" as local processes: ``perennial-runtime train`` with the run's TrainConfig.

The local stand-in for the Job controller and the kubelet. Each run gets a folder
``jobs/<namespace>/<run>/`` with ``config.json`` (the TrainConfig, exactly what the Job's
container gets), ``result.json`` (the trainer's ``--result-path``: the termination
message), ``trainer.log`` and ``job.json`` (attempts, pid, start, end, exit code).

:meth:`LocalJobs.observe` reports a job the way the API server reports a Job and its Pods
(``status.conditions`` Complete/Failed, the container's ``terminated`` state with the
termination message), so the run is judged by the same
:func:`perennial.core.job_state.observe` as in a cluster. Like the Job controller, it
enforces ``activeDeadlineSeconds`` (on the runner's clock) and retries a failed trainer
``backoffLimit`` times.

A restarted runner finds its trainers again: one still running is waited for, one that
finished while the runner was away is read from its result file. A trainer the runner
stopped itself on shutdown is started again (it writes the same artifact folder); one
that vanished without a result counts as a failed attempt.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from perennial.core.conditions import timestamp
from perennial.core.job_state import TRAINER_CONTAINER, parse_time
from perennial.local import processes
from perennial.local.clock import Clock
from perennial.local.store import StateStore, read_json, write_json
from perennial_runtime.contract import (
    EXIT_CODE_FOR,
    TERMINATION_MESSAGE_LIMIT,
    ExitCode,
    FailureReason,
    TrainConfig,
    TrainResult,
)

JOB_FILE = "job.json"
CONFIG_FILE = "config.json"
RESULT_FILE = "result.json"
LOG_FILE = "trainer.log"
LOG_TAIL_BYTES = 2048  # what FallbackToLogsOnError keeps of a log


@dataclass
class JobRecord:
    namespace: str
    run: str
    backoff_limit: int = 0
    active_deadline_seconds: int = 3600
    created_at: str | None = None
    attempts: int = 0
    pid: int | None = None
    attempt_started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    state: str = "Pending"  # Pending, Running, Succeeded, Failed
    reason: str | None = None  # the Job controller's: DeadlineExceeded, BackoffLimitExceeded
    message: str | None = None
    interrupted: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)  # earlier attempts

    @property
    def finished(self) -> bool:
        return self.state in ("Succeeded", "Failed")


def exit_code_of(result: TrainResult) -> int:
    """The trainer's exit code for ``result`` (``perennial_runtime.training.trainer.exit_code``)."""
    if result.status == "Succeeded":
        return int(ExitCode.OK)
    try:
        return int(EXIT_CODE_FOR[FailureReason(result.reason)])
    except ValueError:
        return int(ExitCode.UNEXPECTED)


class LocalJobs:
    """Every training process of one state directory."""

    def __init__(self, store: StateStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._popen: dict[tuple[str, str], subprocess.Popen[bytes]] = {}

    # --- files ---------------------------------------------------------------------------

    def folder(self, namespace: str, run: str) -> Path:
        return self.store.job_dir(namespace, run)

    def result_path(self, namespace: str, run: str) -> Path:
        return self.folder(namespace, run) / RESULT_FILE

    def _load(self, namespace: str, run: str) -> JobRecord | None:
        raw = read_json(self.folder(namespace, run) / JOB_FILE)
        return JobRecord(**raw) if isinstance(raw, dict) else None

    def _save(self, record: JobRecord) -> None:
        write_json(self.folder(record.namespace, record.run) / JOB_FILE, asdict(record))

    def _marker(self, namespace: str, run: str) -> str:
        return str(self.folder(namespace, run) / CONFIG_FILE)

    # --- the Job's life ------------------------------------------------------------------

    def exists(self, namespace: str, run: str) -> bool:
        return self._load(namespace, run) is not None

    def create(
        self,
        namespace: str,
        run: str,
        config: TrainConfig,
        *,
        backoff_limit: int,
        active_deadline_seconds: int,
    ) -> None:
        """Record the job and start its first attempt (idempotent: an existing job stays)."""
        if self.exists(namespace, run):
            return
        folder = self.folder(namespace, run)
        folder.mkdir(parents=True, exist_ok=True)
        config = config.model_copy(update={"result_path": str(folder / RESULT_FILE)})
        write_json(folder / CONFIG_FILE, config.to_dict())
        record = JobRecord(
            namespace=namespace,
            run=run,
            backoff_limit=backoff_limit,
            active_deadline_seconds=active_deadline_seconds,
            created_at=timestamp(self.clock.now()),
        )
        self._save(record)
        self._launch(record)

    def _launch(self, record: JobRecord) -> None:
        folder = self.folder(record.namespace, record.run)
        (folder / RESULT_FILE).unlink(missing_ok=True)
        record.attempts += 1
        record.attempt_started_at = timestamp(self.clock.now())
        record.state = "Running"
        record.exit_code = None
        record.interrupted = False
        self._save(record)  # the intent first: a crash now leaves a findable marker
        popen = processes.spawn(
            [
                *processes.RUNTIME,
                "train",
                "--config",
                str(folder / CONFIG_FILE),
                "--result-path",
                str(folder / RESULT_FILE),
            ],
            folder / LOG_FILE,
        )
        self._popen[(record.namespace, record.run)] = popen
        record.pid = popen.pid
        self._save(record)

    def _exit_code(self, record: JobRecord) -> int | None:
        """The finished trainer's exit code, or None while it runs."""
        key = (record.namespace, record.run)
        popen = self._popen.get(key)
        if popen is not None:
            code = popen.poll()
            if code is None:
                return None
            del self._popen[key]
            return code
        marker = self._marker(record.namespace, record.run)
        pid = record.pid or processes.find(marker)
        if processes.alive(pid, marker):
            if record.pid is None:
                record.pid = pid
                self._save(record)
            return None
        # Not our child (the runner restarted): the result file tells how it ended.
        result = self._result(record)
        if result is not None:
            return exit_code_of(result)
        return -1  # vanished without a word

    def _result(self, record: JobRecord) -> TrainResult | None:
        text = self._result_text(record)
        if not text:
            return None
        try:
            return TrainResult.model_validate_json(text)
        except ValueError:
            return None

    def _result_text(self, record: JobRecord) -> str | None:
        path = self.result_path(record.namespace, record.run)
        try:
            return path.read_bytes()[:TERMINATION_MESSAGE_LIMIT].decode("utf-8", "replace")
        except OSError:
            return None

    def _log_tail(self, record: JobRecord) -> str | None:
        path = self.folder(record.namespace, record.run) / LOG_FILE
        try:
            size = path.stat().st_size
            with path.open("rb") as fh:
                fh.seek(max(0, size - LOG_TAIL_BYTES))
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return None

    def sync(self, namespace: str, run: str) -> None:
        """One turn of the Job controller for this run's job."""
        record = self._load(namespace, run)
        if record is None or record.finished:
            return
        now = self.clock.now()
        if record.interrupted and record.state == "Running":
            # Stopped by the runner's own shutdown: start it again, not counted as a failure.
            record.attempts -= 1
            self._launch(record)
            return
        code = self._exit_code(record)
        if code is None:
            created = parse_time(record.created_at) or now
            if (now - created).total_seconds() > record.active_deadline_seconds:
                self._stop(record)
                self._fail(
                    record,
                    now,
                    "DeadlineExceeded",
                    f"Job was active longer than specified deadline "
                    f"({record.active_deadline_seconds}s)",
                )
            return
        record.exit_code = code
        record.history.append(
            {"attempt": record.attempts, "exitCode": code, "startedAt": record.attempt_started_at}
        )
        if code == 0:
            record.state = "Succeeded"
            record.finished_at = timestamp(now)
            record.reason, record.message = "Complete", "Job completed"
            self._save(record)
            return
        if record.attempts <= record.backoff_limit:
            self._launch(record)
            return
        self._fail(
            record,
            now,
            "BackoffLimitExceeded",
            f"Job has reached the specified backoff limit ({record.backoff_limit})",
        )

    def _fail(self, record: JobRecord, now: datetime, reason: str, message: str) -> None:
        record.state = "Failed"
        record.finished_at = timestamp(now)
        record.reason, record.message = reason, message
        self._save(record)

    def _stop(self, record: JobRecord) -> None:
        key = (record.namespace, record.run)
        processes.terminate(
            record.pid,
            marker=self._marker(record.namespace, record.run),
            popen=self._popen.pop(key, None),
        )

    def delete(self, namespace: str, run: str) -> None:
        """Stop the trainer (cancelled or pruned run); the files stay for the logs."""
        record = self._load(namespace, run)
        if record is None:
            return
        if not record.finished:
            self._stop(record)
            self._fail(record, self.clock.now(), "Deleted", "the run was cancelled")

    def shutdown(self) -> None:
        """Stop every running trainer; a restarted runner starts them again."""
        for (namespace, run), popen in list(self._popen.items()):
            record = self._load(namespace, run)
            processes.terminate(popen.pid, popen=popen)
            if record is not None and not record.finished:
                record.interrupted = True
                self._save(record)
        self._popen.clear()

    # --- what the API server would report ------------------------------------------------

    def observe(self, namespace: str, run: str) -> tuple[dict[str, Any] | None, list[Any]]:
        """The Job and its Pods as the API server would show them."""
        record = self._load(namespace, run)
        if record is None:
            return None, []
        job_status: dict[str, Any] = {"startTime": record.created_at}
        if record.state == "Succeeded":
            job_status.update(
                succeeded=1,
                completionTime=record.finished_at,
                conditions=[
                    {
                        "type": "Complete",
                        "status": "True",
                        "lastTransitionTime": record.finished_at,
                    }
                ],
            )
        elif record.state == "Failed":
            job_status.update(
                failed=record.attempts,
                conditions=[
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": record.reason,
                        "message": record.message,
                        "lastTransitionTime": record.finished_at,
                    }
                ],
            )
        else:
            job_status["active"] = 1
        job = {"metadata": {"name": run, "namespace": namespace}, "status": job_status}
        return job, [self._pod(record)]

    def _pod(self, record: JobRecord) -> Mapping[str, Any]:
        name = f"{record.run}-{record.attempts}"
        container: dict[str, Any] = {"name": TRAINER_CONTAINER}
        if record.exit_code is None and not record.finished:
            phase = "Running"
            container["state"] = {"running": {"startedAt": record.attempt_started_at}}
        else:
            code = record.exit_code if record.exit_code is not None else 137
            phase = "Succeeded" if code == 0 else "Failed"
            message = self._result_text(record)
            if not message and code != 0:
                message = self._log_tail(record)
            terminated: dict[str, Any] = {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
            }
            if message:
                terminated["message"] = message
            container["state"] = {"terminated": terminated}
        return {
            "metadata": {"name": name, "creationTimestamp": record.attempt_started_at},
            "status": {"phase": phase, "containerStatuses": [container]},
        }

    def log_path(self, namespace: str, run: str) -> Path:
        return self.folder(namespace, run) / LOG_FILE
