"""Which Kubernetes events become notifications (CloudEvents), and what they carry.

Every event the operator posts goes through one helper (``perennial.k8s.events.post_event``)
with a CamelCase reason; the few that matter outside the cluster are mapped here to a
CloudEvent ``type``, a ``source`` (the object's collection in the Kubernetes API), a
``subject`` (the object's name) and JSON ``data``. Pure: no clock, no ids, no I/O (the
sender adds ``id`` and ``time``).

=====================================================  =================  ===============
CloudEvent type                                        Kubernetes event   on
=====================================================  =================  ===============
``dev.perennial.trainingrun.blessed``                  ModelBlessed       TrainingRun
``dev.perennial.trainingrun.rejected``                 ModelRejected      TrainingRun
``dev.perennial.trainingrun.failed``                   TrainingFailed     TrainingRun
``dev.perennial.trainingpipeline.champion.changed``    ChampionUpdated    TrainingPipeline
``dev.perennial.modeldeployment.rollout.succeeded``    RolloutSucceeded   ModelDeployment
``dev.perennial.modeldeployment.rolledback``           RolledBack         ModelDeployment
``dev.perennial.trainingpipeline.trigger.drift``       RunCreated         TrainingRun
``dev.perennial.trainingpipeline.trigger.decay``       RunCreated         TrainingRun
=====================================================  =================  ===============

The trigger types come from the new run's ``spec.trigger.type`` (``Drift``,
``PerformanceDecay``); runs created for other triggers notify nothing until their verdict.
A ModelDeployment posts ``RolledBack`` twice: when it rolls back ("rolled back A -> B:
why") and once more when it settles in the degraded state ("run A was rolled back and is
not retried ..."); only the first is a notification.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from perennial.api.constants import (
    API_VERSION,
    MODEL_DEPLOYMENT,
    PLURALS,
    TRAINING_PIPELINE,
    TRAINING_RUN,
)

__all__ = [
    "CHAMPION_CHANGED",
    "EVENT_TYPES",
    "ROLLED_BACK",
    "ROLLOUT_SUCCEEDED",
    "RUN_BLESSED",
    "RUN_FAILED",
    "RUN_REJECTED",
    "TRIGGER_DECAY",
    "TRIGGER_DRIFT",
    "Notification",
    "notification_for",
]

PREFIX: Final = "dev.perennial."
RUN_BLESSED: Final = PREFIX + "trainingrun.blessed"
RUN_REJECTED: Final = PREFIX + "trainingrun.rejected"
RUN_FAILED: Final = PREFIX + "trainingrun.failed"
CHAMPION_CHANGED: Final = PREFIX + "trainingpipeline.champion.changed"
ROLLOUT_SUCCEEDED: Final = PREFIX + "modeldeployment.rollout.succeeded"
ROLLED_BACK: Final = PREFIX + "modeldeployment.rolledback"
TRIGGER_DRIFT: Final = PREFIX + "trainingpipeline.trigger.drift"
TRIGGER_DECAY: Final = PREFIX + "trainingpipeline.trigger.decay"

EVENT_TYPES: Final = (
    RUN_BLESSED,
    RUN_REJECTED,
    RUN_FAILED,
    CHAMPION_CHANGED,
    ROLLOUT_SUCCEEDED,
    ROLLED_BACK,
    TRIGGER_DRIFT,
    TRIGGER_DECAY,
)
"""Every type a sink may receive."""

# (kind, reason) -> type; the verdict a run's type stands for.
_BY_REASON: Final[dict[tuple[str, str], str]] = {
    (TRAINING_RUN, "ModelBlessed"): RUN_BLESSED,
    (TRAINING_RUN, "ModelRejected"): RUN_REJECTED,
    (TRAINING_RUN, "TrainingFailed"): RUN_FAILED,
    (TRAINING_PIPELINE, "ChampionUpdated"): CHAMPION_CHANGED,
    (MODEL_DEPLOYMENT, "RolloutSucceeded"): ROLLOUT_SUCCEEDED,
    (MODEL_DEPLOYMENT, "RolledBack"): ROLLED_BACK,
}
_VERDICTS: Final = {RUN_BLESSED: "Blessed", RUN_REJECTED: "Rejected", RUN_FAILED: "Failed"}
_TRIGGERS: Final = {"Drift": TRIGGER_DRIFT, "PerformanceDecay": TRIGGER_DECAY}

# The messages these are parsed from are built by perennial.core.rollout (_rollback, the
# Succeed decision) and the pipeline reconciler (ChampionUpdated); a parse that fails only
# leaves the field out (the message is always in the data).
_ROLLED_BACK = re.compile(r"^rolled back (?P<run>\S+) -> (?P<restored>\S+): ")
_ROLLOUT_TO = re.compile(r"^model (?P<run>\S+) serves\b")
_CHAMPION = re.compile(r"^run (?P<run>\S+) is the new champion\b")


@dataclass(frozen=True)
class Notification:
    """A CloudEvent without its ``id`` and ``time``."""

    type: str
    source: str
    subject: str
    data: dict[str, Any]


def notification_for(
    obj: Mapping[str, Any], reason: str, message: str, event_type: str = "Normal"
) -> Notification | None:
    """The notification a Kubernetes event about ``obj`` stands for, or None."""
    kind = str(obj.get("kind") or "")
    metadata = obj.get("metadata")
    meta: Mapping[str, Any] = metadata if isinstance(metadata, Mapping) else obj
    name = str(meta.get("name") or "")
    namespace = str(meta.get("namespace") or "")
    if kind not in PLURALS or not name:
        return None
    spec = obj.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    data: dict[str, Any] = {
        "kind": kind,
        "namespace": namespace,
        "name": name,
        "reason": reason,
        "message": message,
        "eventType": event_type,
    }
    if meta.get("uid"):
        data["uid"] = meta["uid"]

    cloud_type = _BY_REASON.get((kind, reason))
    if kind == TRAINING_RUN:
        raw_trigger = spec.get("trigger")
        trigger: Mapping[str, Any] = raw_trigger if isinstance(raw_trigger, Mapping) else {}
        pipeline_ref = spec.get("pipelineRef")
        if isinstance(pipeline_ref, Mapping) and pipeline_ref.get("name"):
            data["pipeline"] = pipeline_ref["name"]
        if trigger.get("type"):
            data["trigger"] = {"type": trigger["type"], "reason": trigger.get("reason", "")}
        if reason == "RunCreated":
            cloud_type = _TRIGGERS.get(str(trigger.get("type")))
        if cloud_type in _VERDICTS:
            data["verdict"] = _VERDICTS[cloud_type]
    elif kind == TRAINING_PIPELINE:
        data["pipeline"] = name
        if cloud_type == CHAMPION_CHANGED and (found := _CHAMPION.match(message)):
            data["champion"] = found["run"]
    elif kind == MODEL_DEPLOYMENT:
        data["deployment"] = name
        if cloud_type == ROLLED_BACK:
            found = _ROLLED_BACK.match(message)
            if found is None:  # the degraded state that follows a rollback, not a rollback
                return None
            data["rolledBackRun"] = found["run"]
            if found["restored"] != "nothing":
                data["restoredRun"] = found["restored"]
        elif cloud_type == ROLLOUT_SUCCEEDED and (found := _ROLLOUT_TO.match(message)):
            data["run"] = found["run"]
    if cloud_type is None:
        return None
    collection = f"/apis/{API_VERSION}"
    if namespace:
        collection += f"/namespaces/{namespace}"
    return Notification(
        type=cloud_type,
        source=f"{collection}/{PLURALS[kind]}",
        subject=name,
        data=data,
    )
