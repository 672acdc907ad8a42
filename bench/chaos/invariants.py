"""What must hold after every restart of the operator, and at the end of a round."""

from __future__ import annotations

from typing import Any

import kmock

from bench.chaos.cluster import ChaosEmulator
from bench.chaos.scenario import BLESSED, OUTCOMES, RUN_LABEL


def violations(emulator: ChaosEmulator, namespace: str) -> list[str]:
    """Duplicates and unblessed models, from every object ever stored in ``namespace``:
    never two Jobs for one run, never a run the scenario's triggers do not explain (a
    second run for one trigger gets the next sequence number: an unexpected name), never a
    serving Deployment (stable or canary, any version it ever had) with a model that was
    not blessed."""
    found: list[str] = []
    for (plural, ns, name), count in sorted(emulator.creations.items(), key=str):
        if ns != namespace:
            continue
        if plural == "jobs" and name not in OUTCOMES:
            found.append(f"Job {name}: not a run of the scenario")
        if plural == "trainingruns" and name not in OUTCOMES:
            found.append(f"TrainingRun {name}: a run no trigger of the scenario explains")
        if plural in ("jobs", "trainingruns") and count > 1:
            found.append(f"{plural} {name} created {count} times")
    deployments = kmock.resource("apps/v1/deployments")
    for (resource, ns, name), obj in list(emulator.objects.items()):
        if resource != deployments or ns != namespace:
            continue
        for version in obj.history:
            if version is None:
                continue
            raw: dict[str, Any] = dict(version)
            labels = raw["spec"]["template"]["metadata"].get("labels") or {}
            run = labels.get(RUN_LABEL)
            if run is not None and run not in BLESSED:
                found.append(f"Deployment {name} was given model {run}, which was not blessed")
    return sorted(set(found))
