"""The test plays the parts of Kubernetes the emulator does not have.

The emulator stores objects and nothing acts on them: no Job controller, no kubelet, no
Deployment controller, no garbage collector. :class:`StandInControllers` does what each of
them would write, through the API (so the operator sees ordinary watch events), when the test
says so::

    await controllers.complete_job("run-1", "ns", termination_message='{"accuracy": 0.9}')
    await controllers.complete_job("run-1", "ns", succeeded=False, reason="BackoffLimitExceeded")
    await controllers.set_deployment_ready("model", "ns", ready=False)
    await controllers.crashloop_pod("model", "ns")
    await controllers.cascade_delete(pipeline)   # delete, then collect the orphans
"""

from __future__ import annotations

from .stand_in_deployments import DeploymentStandIn
from .stand_in_gc import GarbageCollectorStandIn
from .stand_in_jobs import JobStandIn
from .stand_in_shapes import TERMINATION_MESSAGE_LIMIT

__all__ = ["TERMINATION_MESSAGE_LIMIT", "StandInControllers"]


class StandInControllers(JobStandIn, DeploymentStandIn, GarbageCollectorStandIn):
    """Job controller + kubelet, Deployment controller and garbage collector, on demand."""
