"""What should a ModelDeployment serve? Pure, over the objects as read from the API.

The source is a pipeline's champion (``pipelineRef``) or one pinned run (``runRef``).
``champion_source`` / ``pinned_source`` turn the referenced objects into a
:class:`SourceModel` (a model, or why there is none yet). ``desired_model`` then applies the
manual overrides, in this order:

1. ``spec.rollbackTo`` (Git owns it): serve that revision from the history while it is set.
2. The ``perennial.dev/rollback`` annotation: a *new* value (not the one last acted on,
   recorded in ``status.lastRollbackToken``) pins that revision; the pin is recorded in
   ``status.manualRollback`` and holds until the source offers a different model (a new
   blessed run, or a different pinned run). The operator never writes the spec.
3. Otherwise the source's model.

A revision is named by its run (``iris-00003``) or by its revision number (``3``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from perennial.api.constants import DEFAULT_RUNTIME_IMAGE, ROLLBACK_ANNOTATION
from perennial.core.rollout import ModelRef

# Runs in these phases will never be servable: a deployment pinned to one is stuck.
_FINAL_UNBLESSED = frozenset({"Rejected", "Failed"})


@dataclass(frozen=True)
class SourceModel:
    """The source's model, or why there is none (``reason``/``message``).

    ``stalled``: waiting will not help (a pinned run was rejected): the spec must change."""

    model: ModelRef | None
    reason: str
    message: str
    stalled: bool = False


@dataclass(frozen=True)
class Revision:
    """A model in ``status.currentModel`` / ``status.history``."""

    ref: ModelRef
    revision: int
    deployed_at: datetime | None = None


@dataclass(frozen=True)
class ManualPin:
    """``status.manualRollback``: a rollback asked for with the annotation."""

    run: str
    source_run: str | None
    requested_at: datetime | None = None


@dataclass(frozen=True)
class Notice:
    """A one-off event to post (not a lasting condition)."""

    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Desired:
    """The model that should serve, and why."""

    model: ModelRef | None
    reason: str
    message: str
    manual: bool = False  # chosen by hand: rolled out even if it was rolled back before
    stalled: bool = False  # cannot make progress without a change (bad rollbackTo, ...)
    pin: ManualPin | None = None  # to record in status.manualRollback
    token: str | None = None  # to record in status.lastRollbackToken
    notices: tuple[Notice, ...] = ()


def _get(obj: Mapping[str, Any] | None, *path: str) -> Any:
    node: Any = obj
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _context(training_spec: Mapping[str, Any] | None) -> dict[str, str | None]:
    """Image, artifact volume and secret of a training spec (pipeline or run snapshot)."""
    volume = _get(training_spec, "artifacts", "volume")
    claim = _get(volume, "claimName")
    return {
        "image": _get(training_spec, "runTemplate", "image") or DEFAULT_RUNTIME_IMAGE,
        "artifact_claim": claim or None,
        "artifact_mount_path": (_get(volume, "mountPath") or "/artifacts") if claim else None,
        "secret_name": _get(training_spec, "artifacts", "secretRef", "name") or None,
    }


MAX_HOLDOUT_METRICS = 64  # as many as status.metrics holds


def holdout_metrics(metrics: Any) -> tuple[tuple[str, float], ...]:
    """The finite numeric metrics of a run's ``status.metrics``, as sorted pairs."""
    if not isinstance(metrics, Mapping):
        return ()
    pairs = [
        (str(name), float(value))
        for name, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ]
    return tuple(sorted(pairs)[:MAX_HOLDOUT_METRICS])


def model_of_run(run: Mapping[str, Any]) -> ModelRef | None:
    """The servable model of a TrainingRun (its ``status.artifact``), or None."""
    artifact = _get(run, "status", "artifact")
    uri, sha = _get(artifact, "modelUri"), _get(artifact, "sha256")
    name = _get(run, "metadata", "name")
    if not (uri and sha and name):
        return None
    return ModelRef(
        run=str(name),
        model_uri=str(uri),
        sha256=str(sha),
        holdout_metrics=holdout_metrics(_get(run, "status", "metrics")),
        **_context(_get(run, "spec", "pipelineSpec")),
    )


def champion_source(
    pipeline_name: str,
    pipeline: Mapping[str, Any] | None,
    champion_run: Mapping[str, Any] | None = None,
) -> SourceModel:
    """The champion of ``pipeline`` (None: it does not exist). ``champion_run`` is the
    champion's TrainingRun if it could be read: its snapshot names the image and volume
    (else the pipeline's current spec does)."""
    if pipeline is None:
        return SourceModel(
            None,
            "PipelineNotFound",
            f"waiting for TrainingPipeline {pipeline_name}: it does not exist",
        )
    champion = _get(pipeline, "status", "champion")
    run = _get(champion, "run")
    if not run:
        return SourceModel(
            None,
            "NoBlessedModel",
            f"waiting for a blessed model: pipeline {pipeline_name} has no champion yet",
        )
    if champion_run is not None:
        ref = model_of_run(champion_run)
        if ref is not None and ref.run == run:
            return SourceModel(ref, "ChampionAvailable", f"champion of {pipeline_name}: {run}")
    uri, sha = _get(champion, "modelUri"), _get(champion, "sha256")
    if not (uri and sha):
        return SourceModel(
            None,
            "NoBlessedModel",
            f"waiting for a blessed model: champion {run} of {pipeline_name} has no model "
            "file recorded yet",
        )
    metric, value = _get(champion, "metric"), _get(champion, "value")
    ref = ModelRef(
        run=str(run),
        model_uri=str(uri),
        sha256=str(sha),
        holdout_metrics=holdout_metrics({metric: value}) if metric else (),
        **_context(_get(pipeline, "spec")),
    )
    return SourceModel(ref, "ChampionAvailable", f"champion of {pipeline_name}: {run}")


def pinned_source(run_name: str, run: Mapping[str, Any] | None) -> SourceModel:
    """The model of the pinned run ``run_name`` (None: it does not exist)."""
    if run is None:
        return SourceModel(
            None, "RunNotFound", f"waiting for TrainingRun {run_name}: it does not exist"
        )
    phase = _get(run, "status", "phase")
    if phase in _FINAL_UNBLESSED:
        why = _get(run, "status", "message") or _get(run, "status", "reason") or "no reason given"
        return SourceModel(
            None,
            "RunNotBlessed",
            f"pinned run {run_name} is {phase} ({why}); pin a Succeeded run in spec.source.runRef",
            stalled=True,
        )
    ref = model_of_run(run) if phase == "Succeeded" else None
    if ref is None:
        return SourceModel(
            None,
            "RunNotFinished",
            f"waiting for pinned run {run_name} to succeed (phase {phase or 'unknown'})",
        )
    return SourceModel(ref, "PinnedRun", f"pinned run {run_name}")


def find_revision(
    target: str, current: Revision | None, history: Sequence[Revision]
) -> Revision | None:
    """The revision named ``target`` (a run name, or a revision number) in
    ``current`` + ``history``."""
    wanted = target.strip()
    number = int(wanted) if wanted.isdigit() else None
    for rev in (current, *history):
        if rev is None:
            continue
        if rev.ref.run == wanted or (number is not None and rev.revision == number):
            return rev
    return None


def _known(current: Revision | None, history: Sequence[Revision]) -> str:
    revs = [r for r in (current, *history) if r is not None]
    return ", ".join(f"{r.ref.run} (revision {r.revision})" for r in revs) or "none"


def desired_model(
    *,
    source: SourceModel,
    rollback_to: str | None,
    annotation: str | None,
    last_token: str | None,
    pin: ManualPin | None,
    current: Revision | None,
    history: Sequence[Revision],
    now: datetime,
) -> Desired:
    """The model that should serve now (see the module docstring for the precedence)."""
    notices: list[Notice] = []
    token = last_token
    annotation = (annotation or "").strip() or None
    if annotation is not None and annotation != last_token:
        token = annotation
        found = find_revision(annotation, current, history)
        if rollback_to:
            notices.append(
                Notice(
                    "Warning",
                    "RollbackIgnored",
                    f"annotation {ROLLBACK_ANNOTATION}={annotation} ignored: spec.rollbackTo="
                    f"{rollback_to} takes precedence; clear it first",
                )
            )
        elif found is None:
            notices.append(
                Notice(
                    "Warning",
                    "RollbackTargetUnknown",
                    f"annotation {ROLLBACK_ANNOTATION}={annotation}: no such run or revision in "
                    f"status.history (known: {_known(current, history)})",
                )
            )
        else:
            source_run = source.model.run if source.model else None
            pin = ManualPin(run=found.ref.run, source_run=source_run, requested_at=now)

    if rollback_to:
        found = find_revision(rollback_to, current, history)
        if found is None:
            return Desired(
                current.ref if current else None,
                "RollbackTargetUnknown",
                f"spec.rollbackTo={rollback_to}: no such run or revision in status.history "
                f"(known: {_known(current, history)}); keeping the current model",
                stalled=True,
                token=token,
                notices=tuple(notices),
            )
        return Desired(
            found.ref,
            "RollbackToSet",
            f"spec.rollbackTo pins {found.ref.run} (revision {found.revision}); remove it to "
            "follow the source again",
            manual=True,
            token=token,
            notices=tuple(notices),
        )

    if pin is not None:
        source_run = source.model.run if source.model else None
        if source.model is None or source_run == pin.source_run:
            found = find_revision(pin.run, current, history)
            if found is not None:
                return Desired(
                    found.ref,
                    "ManualRollback",
                    f"rolled back by hand to {found.ref.run} ({ROLLBACK_ANNOTATION}); the next "
                    "blessed model is rolled out normally",
                    manual=True,
                    pin=pin,
                    token=token,
                    notices=tuple(notices),
                )
        else:
            notices.append(
                Notice(
                    "Normal",
                    "ManualRollbackEnded",
                    f"the source offers a new model ({source_run}): the manual rollback to "
                    f"{pin.run} ends",
                )
            )
    return Desired(
        source.model,
        source.reason,
        source.message,
        stalled=source.stalled,
        token=token,
        notices=tuple(notices),
    )
