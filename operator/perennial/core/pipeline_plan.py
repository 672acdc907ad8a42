"""What a TrainingPipeline should do now: pure, every fact (clock included) passed in.

:func:`plan` looks at the pipeline's runs, what its status remembers (the last spec hash,
retrain token, schedule time, data fingerprint, trigger times, champion) and the trigger
signals observed now, and returns one :class:`PipelinePlan`: the champion, the run to
start (if any, with the trigger that caused it and the other due triggers coalesced into
it), the runs to cancel (``Replace``) or prune (history limits; never the champion nor a
run a ModelDeployment references), and the status to record, with a message that tells a
newcomer what happened and what happens next.

Exactly-once starts: what a run consumed (spec hash, retrain token, schedule time, data
fingerprint, trigger types) is written on the run itself (:class:`Consumed`, an
annotation) when it is created, and folded back into the memory by :func:`recover`. An
operator that died between creating a run and writing the pipeline status therefore sees
the run, takes its record as consumed, and never starts a second run for the same
trigger; the next run number is always past every existing run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from perennial.api.enums import ConcurrencyPolicy, RunPhase, TriggerType
from perennial.api.pipeline import TrainingPipelineSpec
from perennial.core.display import display_value
from perennial.core.history import RunRecord, runs_to_prune
from perennial.core.job_state import parse_time
from perennial.core.naming import run_name
from perennial.core.schedule import ScheduleDecision
from perennial.core.triggers import (
    DecaySignal,
    DriftSignal,
    Trigger,
    TriggerInputs,
    backoff_notes,
    decay_trigger,
    drift_trigger,
    due_triggers,
)

# Labels and annotations the operator puts on the runs (and Jobs, Pods) it creates.
LABEL_PIPELINE = "perennial.dev/pipeline"
LABEL_RUN = "perennial.dev/run"
LABEL_SEQUENCE = "perennial.dev/run-sequence"
ANNOTATION_CONSUMED = "perennial.dev/consumed"

_SEQUENCE_SUFFIX = re.compile(r"-(\d{5,})$")
_FINISHED = frozenset({RunPhase.SUCCEEDED.value, RunPhase.REJECTED.value, RunPhase.FAILED.value})


def _iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


@dataclass(frozen=True)
class Consumed:
    """What starting a run used up; stored on the run as :data:`ANNOTATION_CONSUMED`."""

    spec_hash: str | None = None
    retrain_token: str | None = None
    schedule_time: datetime | None = None
    data_fingerprint: str | None = None
    triggers: tuple[str, ...] = ()
    time: datetime | None = None

    def to_annotation(self) -> str:
        body = {
            "specHash": self.spec_hash,
            "retrainToken": self.retrain_token,
            "scheduleTime": _iso(self.schedule_time),
            "dataFingerprint": self.data_fingerprint,
            "triggers": list(self.triggers),
            "time": _iso(self.time),
        }
        return json.dumps({k: v for k, v in body.items() if v is not None}, sort_keys=True)

    @classmethod
    def from_annotation(cls, text: str | None) -> Consumed | None:
        if not text:
            return None
        try:
            body = json.loads(text)
        except ValueError:
            return None
        if not isinstance(body, dict):
            return None
        return cls(
            spec_hash=body.get("specHash"),
            retrain_token=body.get("retrainToken"),
            schedule_time=parse_time(body.get("scheduleTime")),
            data_fingerprint=body.get("dataFingerprint"),
            triggers=tuple(str(t) for t in body.get("triggers") or ()),
            time=parse_time(body.get("time")),
        )


@dataclass(frozen=True)
class RunSummary:
    """What the pipeline needs to know about one of its runs."""

    name: str
    sequence: int
    phase: str | None = None
    trigger: str | None = None
    reason: str | None = None
    message: str | None = None
    finished: datetime | None = None
    model_uri: str | None = None
    sha256: str | None = None
    metric: str | None = None
    value: float | None = None
    consumed: Consumed | None = None

    @property
    def active(self) -> bool:
        return self.phase not in _FINISHED


def sequence_of(name: str, labels: Mapping[str, str] | None = None) -> int:
    """The run's sequence number: its label, else the ``-NNNNN`` suffix of its name."""
    value = (labels or {}).get(LABEL_SEQUENCE)
    if value and value.isdigit():
        return int(value)
    match = _SEQUENCE_SUFFIX.search(name)
    return int(match.group(1)) if match else 0


def summarize_run(obj: Mapping[str, Any]) -> RunSummary:
    """A RunSummary of a TrainingRun body as read from the API server."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    artifact = status.get("artifact") or {}
    primary = status.get("primaryMetric") or {}
    name = str(meta.get("name") or "")
    return RunSummary(
        name=name,
        sequence=sequence_of(name, meta.get("labels")),
        phase=status.get("phase"),
        trigger=(spec.get("trigger") or {}).get("type"),
        reason=status.get("reason"),
        message=status.get("message"),
        finished=parse_time(status.get("completionTime")),
        model_uri=artifact.get("modelUri"),
        sha256=artifact.get("sha256"),
        metric=primary.get("name"),
        value=primary.get("candidate"),
        consumed=Consumed.from_annotation((meta.get("annotations") or {}).get(ANNOTATION_CONSUMED)),
    )


@dataclass(frozen=True)
class ChampionRecord:
    run: str
    model_uri: str | None = None
    sha256: str | None = None
    metric: str | None = None
    value: float | None = None
    blessed_at: datetime | None = None

    def to_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"run": self.run}
        for key, value in (
            ("modelUri", self.model_uri),
            ("sha256", self.sha256),
            ("metric", self.metric),
            ("value", self.value),
            ("valueDisplay", None if self.value is None else display_value(self.value)),
            ("blessedAt", _iso(self.blessed_at)),
        ):
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class Memory:
    """What the pipeline status remembers between reconciles."""

    run_sequence: int = 0
    spec_hash: str | None = None
    retrain_token: str | None = None
    schedule_time: datetime | None = None
    data_fingerprint: str | None = None
    last_triggers: Mapping[str, datetime] = field(default_factory=dict)
    champion: ChampionRecord | None = None

    def consume(self, sequence: int, consumed: Consumed) -> Memory:
        triggers = dict(self.last_triggers)
        if consumed.time is not None:
            for trigger in consumed.triggers:
                triggers[trigger] = consumed.time
        return replace(
            self,
            run_sequence=max(self.run_sequence, sequence),
            spec_hash=consumed.spec_hash or self.spec_hash,
            retrain_token=consumed.retrain_token or self.retrain_token,
            schedule_time=consumed.schedule_time or self.schedule_time,
            data_fingerprint=consumed.data_fingerprint or self.data_fingerprint,
            last_triggers=triggers,
        )


def recover(memory: Memory, runs: Sequence[RunSummary]) -> Memory:
    """Fold in the record of every run newer than the memory (created, not yet recorded)."""
    for run in sorted(runs, key=lambda r: r.sequence):
        if run.sequence > memory.run_sequence:
            memory = memory.consume(run.sequence, run.consumed or Consumed())
    return memory


def next_champion(
    current: ChampionRecord | None, runs: Sequence[RunSummary]
) -> ChampionRecord | None:
    """The newest blessed run becomes the champion, if it is newer than the current one.

    Runs are started one at a time, each compared with the champion of its day, so a newer
    blessed run has beaten every older one. Deleting runs never moves the champion back.
    """
    blessed = [r for r in runs if r.phase == RunPhase.SUCCEEDED.value and r.sha256]
    if not blessed:
        return current
    newest = max(blessed, key=lambda r: r.sequence)
    if current is not None:
        by_name = {r.name: r for r in runs}
        known = by_name.get(current.run)
        current_seq = known.sequence if known else sequence_of(current.run)
        if newest.sequence <= current_seq:
            return current
    return ChampionRecord(
        run=newest.name,
        model_uri=newest.model_uri,
        sha256=newest.sha256,
        metric=newest.metric,
        value=newest.value,
        blessed_at=newest.finished,
    )


@dataclass(frozen=True)
class PipelineFacts:
    """Everything :func:`plan` decides from."""

    pipeline: str
    now: datetime
    spec_hash: str
    memory: Memory
    runs: tuple[RunSummary, ...] = ()
    suspend: bool = False
    policy: ConcurrencyPolicy = ConcurrencyPolicy.FORBID
    on_spec_change: bool = True
    manual_token: str | None = None
    schedule: ScheduleDecision | None = None
    data_fingerprint: str | None = None
    drift: DriftSignal | None = None
    decay: DecaySignal | None = None
    successful_limit: int = 10
    failed_limit: int = 5
    protected: frozenset[str] = frozenset()
    watching: tuple[str, ...] = ()  # what the pipeline watches, for the message


@dataclass(frozen=True)
class NewRun:
    sequence: int
    name: str
    trigger: Trigger
    coalesced: tuple[Trigger, ...]
    consumed: Consumed

    @property
    def reason(self) -> str:
        text = self.trigger.reason
        if self.coalesced:
            also = "; ".join(f"{t.type.value}: {t.reason}" for t in self.coalesced)
            text = f"{text} (also due, coalesced into this run: {also})"
        return text[:1024]


@dataclass(frozen=True)
class PipelinePlan:
    memory: Memory  # what the status records after the plan is carried out
    champion_changed: bool
    create: NewRun | None
    cancel: tuple[str, ...]
    deferred: tuple[Trigger, ...]
    prune: tuple[str, ...]
    last_run: RunSummary | None
    phase: str  # Idle, Training, Suspended
    ready: bool
    reconciling: bool
    reason: str
    message: str
    # Drift / decay that would fire but does not describe the champion, or is held by its
    # backed-off cool-down, in words.
    not_counted: tuple[str, ...] = ()


def _with_last_fired(
    signal: Any, memory: Memory, trigger: TriggerType, runs: Sequence[RunSummary]
) -> Any:
    if signal is None:
        return None
    return replace(
        signal,
        last_fired=memory.last_triggers.get(trigger.value),
        rejected_in_a_row=rejected_in_a_row(runs, trigger),
    )


def rejected_in_a_row(runs: Sequence[RunSummary], trigger: TriggerType) -> int:
    """How many of the newest finished runs, in a row, ``trigger`` started (alone or
    coalesced with others) and the gates rejected; any other finished run ends the row."""
    count = 0
    for run in sorted((r for r in runs if not r.active), key=lambda r: -r.sequence):
        started_by = run.consumed.triggers if run.consumed else (run.trigger,)
        if trigger.value not in started_by or run.phase != RunPhase.REJECTED.value:
            break
        count += 1
    return count


@dataclass(frozen=True)
class ServingModel:
    """Which model a ModelDeployment serves, and which one its monitoring numbers were
    measured on."""

    deployment: str
    run: str | None  # status.currentModel.run
    rollout_to: str | None  # status.rollout.toRun, while a rollout is in progress
    rolled_back: tuple[str, ...] = ()  # status.rolledBackRuns
    sha256: str | None = None  # status.currentModel.sha256
    measured_run: str | None = None  # status.monitoring.run: what the server reported
    measured_sha256: str | None = None  # status.monitoring.sha256

    @classmethod
    def of(cls, md: Mapping[str, Any]) -> ServingModel:
        status = md.get("status") or {}
        current = status.get("currentModel") or {}
        monitoring = status.get("monitoring") or {}
        return cls(
            deployment=str((md.get("metadata") or {}).get("name") or ""),
            run=current.get("run"),
            rollout_to=(status.get("rollout") or {}).get("toRun"),
            rolled_back=tuple(str(r) for r in status.get("rolledBackRuns") or ()),
            sha256=current.get("sha256"),
            measured_run=monitoring.get("run"),
            measured_sha256=monitoring.get("sha256"),
        )


def measured_elsewhere(signal: DriftSignal | DecaySignal) -> str | None:
    """Why ``signal``'s numbers were not measured on the model the deployment serves now
    (None: they were). A scrape made before a rollout ended, or answered by a server
    of the previous model, names that model; numbers that name none are not trusted."""
    where = f"md/{signal.deployment}" if signal.deployment else "the deployment"
    serving = signal.serving_run or "no model"
    if signal.measured_run is None:
        return (
            f"{where}'s monitoring does not name the model it was measured on "
            "(a model server older than this operator); it counts once a server that "
            "reports its run and sha256 is scraped"
        )
    same_file = (
        signal.serving_sha256 is None
        or signal.measured_sha256 is None
        or signal.serving_sha256 == signal.measured_sha256
    )
    if signal.measured_run != signal.serving_run or not same_file:
        what = signal.measured_run
        if signal.measured_run == signal.serving_run and signal.measured_sha256:
            what = f"{what} (sha256 {signal.measured_sha256[:12]})"
        return (
            f"{where}'s monitoring was measured on {what}, not on {serving} serving now; "
            "waiting for a scrape of it"
        )
    return None


_ONLY_THE_CHAMPION = "only the champion's own monitoring counts, once it is rolled out"


def not_about_champion(
    signal: DriftSignal | DecaySignal | None, champion: str | None
) -> str | None:
    """Why ``signal`` does not describe the champion serving steadily (None: it does).

    Monitoring numbers judge the model that produced them. A drift or decay of a model that
    is no longer the champion (a newer one is blessed and waits for its rollout), of a
    deployment in the middle of a rollout, of a deployment pinned to another run, or
    measured on another model than the one serving (a scrape from before the rollout)
    says nothing about the champion: retraining on it would repeat the run that just
    replaced that model. Without a champion there is nothing to retrain against. One exception: a
    deployment that rolled the champion back serves its previous model until a new one is
    blessed, so that model's numbers count (else only a user could end it).
    """
    if signal is None:
        return None
    where = f"md/{signal.deployment}" if signal.deployment else "the deployment"
    if champion is None:
        return "there is no champion yet"
    if signal.rollout_to:
        return f"{where} is rolling out {signal.rollout_to}"
    stale = measured_elsewhere(signal)
    if stale is not None:
        return stale
    if champion in signal.rolled_back and signal.serving_run:
        return None  # it will not serve the champion: the model it serves is the one judged
    if signal.serving_run != champion:
        serving = signal.serving_run or "no model"
        return f"{where} serves {serving}, not the champion {champion}"
    return None


def _count_only_the_champion(
    inputs: TriggerInputs, champion: str | None
) -> tuple[TriggerInputs, tuple[str, ...]]:
    """``inputs`` without the drift / decay signals that do not describe ``champion``, and
    a sentence for each one of them that would have fired."""
    held: list[str] = []
    why = not_about_champion(inputs.drift, champion)
    if why is not None:
        if drift_trigger(inputs) is not None:
            held.append(f"Drift not counted: {why} ({_ONLY_THE_CHAMPION}).")
        inputs = replace(inputs, drift=None)
    why = not_about_champion(inputs.decay, champion)
    if why is not None:
        if decay_trigger(inputs) is not None:
            held.append(f"Performance decay not counted: {why} ({_ONLY_THE_CHAMPION}).")
        inputs = replace(inputs, decay=None)
    return inputs, tuple(held)


def _prune(facts: PipelineFacts, champion: ChampionRecord | None) -> tuple[str, ...]:
    protected: set[str] = set(facts.protected)
    if champion is not None:
        protected.add(champion.run)
    records = [
        RunRecord(name=r.name, phase=r.phase, finished=r.finished, sequence=r.sequence)
        for r in facts.runs
    ]
    return tuple(runs_to_prune(records, facts.successful_limit, facts.failed_limit, protected))


def plan(facts: PipelineFacts) -> PipelinePlan:
    memory = recover(facts.memory, facts.runs)
    champion = next_champion(memory.champion, facts.runs)
    champion_changed = champion != memory.champion
    memory = replace(memory, champion=champion)

    inputs = TriggerInputs(
        now=facts.now,
        spec_hash=facts.spec_hash,
        last_spec_hash=memory.spec_hash,
        run_count=len(facts.runs) + memory.run_sequence,
        on_spec_change=facts.on_spec_change,
        manual_token=facts.manual_token,
        last_manual_token=memory.retrain_token,
        schedule=facts.schedule,
        data_fingerprint=facts.data_fingerprint,
        last_data_fingerprint=memory.data_fingerprint,
        drift=_with_last_fired(facts.drift, memory, TriggerType.DRIFT, facts.runs),
        decay=_with_last_fired(facts.decay, memory, TriggerType.PERFORMANCE_DECAY, facts.runs),
    )
    inputs, not_counted = _count_only_the_champion(inputs, champion.run if champion else None)
    not_counted += backoff_notes(inputs)
    due = due_triggers(inputs)
    active = sorted((r for r in facts.runs if r.active), key=lambda r: r.sequence)

    if memory.data_fingerprint is None and facts.data_fingerprint:
        # First look at the data: remember it; only a later change is a trigger.
        memory = replace(memory, data_fingerprint=facts.data_fingerprint)

    create: NewRun | None = None
    cancel: tuple[str, ...] = ()
    deferred: tuple[Trigger, ...] = ()
    waits = facts.suspend or (bool(active) and facts.policy is ConcurrencyPolicy.FORBID)
    if due and waits:
        deferred = tuple(due)
    elif due:
        cancel = tuple(r.name for r in active)
        types = {t.type for t in due}
        schedule_time = (
            facts.schedule.scheduled_time
            if facts.schedule is not None and TriggerType.SCHEDULE in types
            else None
        )
        consumed = Consumed(
            spec_hash=facts.spec_hash,
            retrain_token=facts.manual_token if TriggerType.MANUAL in types else None,
            schedule_time=schedule_time,
            data_fingerprint=facts.data_fingerprint,
            triggers=tuple(t.type.value for t in due),
            time=facts.now,
        )
        sequence = memory.run_sequence + 1
        create = NewRun(
            sequence=sequence,
            name=run_name(facts.pipeline, sequence),
            trigger=due[0],
            coalesced=tuple(due[1:]),
            consumed=consumed,
        )
        memory = memory.consume(sequence, consumed)

    prune = _prune(facts, champion)
    runs_by_seq = sorted(facts.runs, key=lambda r: r.sequence)
    last_run = runs_by_seq[-1] if runs_by_seq else None
    return _describe(
        facts,
        PipelinePlan(
            memory=memory,
            champion_changed=champion_changed,
            create=create,
            cancel=cancel,
            deferred=deferred,
            prune=prune,
            last_run=last_run,
            phase="Idle",
            ready=True,
            reconciling=False,
            reason="Idle",
            message="",
            not_counted=not_counted,
        ),
        active,
    )


def _champion_text(champion: ChampionRecord | None) -> str:
    if champion is None:
        return "No champion yet."
    score = ""
    if champion.metric and champion.value is not None:
        score = f" ({champion.metric} {champion.value:.4f})"
    return f"Champion {champion.run}{score}."


def _describe(facts: PipelineFacts, out: PipelinePlan, active: list[RunSummary]) -> PipelinePlan:
    parts: list[str] = []
    if out.create is not None:
        verb = "Replacing" if out.cancel else "Starting"
        cancelled = f" {', '.join(out.cancel)} with" if out.cancel else ""
        parts.append(
            f"{verb}{cancelled} run {out.create.name} "
            f"({out.create.trigger.type.value}: {out.create.trigger.reason})."
        )
        phase, ready, reconciling, reason = "Training", False, True, "RunCreated"
    elif active:
        run = active[-1]
        parts.append(
            f"Run {run.name} ({run.trigger or 'unknown trigger'}) is {run.phase or 'Pending'}."
        )
        phase, ready, reconciling, reason = "Training", False, True, "RunInProgress"
    elif facts.suspend:
        parts.append("Suspended: no new runs start until spec.suspend is false.")
        phase, ready, reconciling, reason = "Suspended", True, False, "Suspended"
    else:
        phase, ready, reconciling, reason = "Idle", True, False, "Idle"
        last = out.last_run
        if last is not None and last.phase == RunPhase.FAILED.value:
            ready, reason = False, "LastRunFailed"
            why = f": {last.reason}" if last.reason else ""
            detail = f" ({last.message})" if last.message else ""
            parts.append(
                f"Last run {last.name} failed{why}{detail}. The next trigger starts a new run."
            )
        elif last is not None:
            parts.append(f"Idle; last run {last.name} {last.phase or 'Pending'}.")
        else:
            parts.append("Idle.")
    if out.deferred:
        waits = "spec.suspend" if facts.suspend else f"run {active[-1].name} to finish"
        names = ", ".join(t.type.value for t in out.deferred)
        parts.append(f"Due: {names}; waits for {waits} (concurrencyPolicy {facts.policy.value}).")
    parts.extend(out.not_counted)
    parts.append(_champion_text(out.memory.champion))
    if facts.watching:
        parts.append("Watching: " + "; ".join(facts.watching) + ".")
    return replace(
        out,
        phase=phase,
        ready=ready,
        reconciling=reconciling,
        reason=reason,
        message=" ".join(parts),
    )


def watch_list(spec: TrainingPipelineSpec, next_schedule: datetime | None) -> tuple[str, ...]:
    """What the pipeline's triggers watch, in words (for the status message)."""
    triggers = spec.triggers
    out: list[str] = []
    if triggers.schedule is not None:
        when = f", next at {_iso(next_schedule)}" if next_schedule else ""
        out.append(f"schedule {triggers.schedule.cron!r}{when}")
    if triggers.data_change.enabled:
        out.append(
            f"data at {spec.data.uri} polled every {triggers.data_change.poll_interval_seconds}s"
        )
    if triggers.drift is not None:
        out.append(
            f"drift of md/{triggers.drift.deployment_ref.name} (PSI >= {triggers.drift.threshold})"
        )
    if triggers.performance_decay is not None:
        decay = triggers.performance_decay
        limit = (
            f"threshold {decay.threshold}"
            if decay.threshold is not None
            else f"holdout - maxDrop {decay.max_drop}"
        )
        if decay.confidence is not None:
            limit += f", at {decay.confidence:.0%} confidence"
        out.append(
            f"live {spec.resolved_decay_metric()} of md/{decay.deployment_ref.name} ({limit})"
        )
    if triggers.on_spec_change:
        out.append("spec changes")
    out.append("annotation perennial.dev/retrain")
    return tuple(out)


def deployment_references(deployments: Collection[Mapping[str, Any]]) -> frozenset[str]:
    """Runs that ModelDeployments serve, roll out, pin or keep in their history."""
    names: set[str] = set()
    for md in deployments:
        spec = md.get("spec") or {}
        status = md.get("status") or {}
        ref = ((spec.get("source") or {}).get("runRef") or {}).get("name")
        if ref:
            names.add(ref)
        if spec.get("rollbackTo"):
            names.add(spec["rollbackTo"])
        current = (status.get("currentModel") or {}).get("run")
        if current:
            names.add(current)
        for revision in status.get("history") or ():
            if revision.get("run"):
                names.add(revision["run"])
        rollout = status.get("rollout") or {}
        for key in ("fromRun", "toRun"):
            if rollout.get(key):
                names.add(rollout[key])
    return frozenset(names)
