"""The kopf settings we rely on, applied to a fresh kopf.OperatorSettings (no cluster)."""

from __future__ import annotations

import logging

import kopf
import pytest

from perennial.controllers.settings import (
    ANNOTATION_PREFIX,
    FINALIZER,
    HANDLER_LIMITS,
    apply_settings,
    reporting_instance,
)


@pytest.fixture
def settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    apply_settings(settings, namespaced=False, instance="perennial-operator-abc")
    return settings


def test_own_finalizer_and_annotation_prefix(settings: kopf.OperatorSettings) -> None:
    assert settings.persistence.finalizer == FINALIZER == "perennial.dev/finalizer"
    progress = settings.persistence.progress_storage
    diffbase = settings.persistence.diffbase_storage
    assert isinstance(progress, kopf.AnnotationsProgressStorage)
    assert isinstance(diffbase, kopf.AnnotationsDiffBaseStorage)
    assert progress.prefix == diffbase.prefix == ANNOTATION_PREFIX == "perennial.dev"
    # One key per handler, in our own prefix (no legacy v1 duplicate).
    assert list(progress.make_keys("create_pipeline")) == ["perennial.dev/create_pipeline"]
    assert list(diffbase.make_keys(diffbase.key)) == ["perennial.dev/last-handled-configuration"]


def test_events_are_explicit_and_attributed(settings: kopf.OperatorSettings) -> None:
    assert settings.posting.enabled is True
    assert settings.posting.loggers is False
    assert settings.posting.level == logging.INFO
    assert settings.posting.reporting_component == "perennial-operator"
    assert settings.posting.reporting_instance == "perennial-operator-abc"
    assert settings.posting.event_name_prefix == "perennial-event-"


def test_watches_are_bounded_so_a_stalled_one_is_re_established(
    settings: kopf.OperatorSettings,
) -> None:
    watching = settings.watching
    assert watching.server_timeout is not None and watching.client_timeout is not None
    # The server closes the request first; the client only cuts a stream that went silent.
    assert 0 < watching.server_timeout < watching.client_timeout
    # Sent as the `timeoutSeconds` query parameter, which the API server parses as an integer.
    assert str(watching.server_timeout).isdigit()
    assert watching.connect_timeout is not None and watching.connect_timeout > 0
    assert 0 < watching.inactivity_timeout <= 120
    assert watching.chunk_size == 500


def test_api_requests_and_retries_are_bounded(settings: kopf.OperatorSettings) -> None:
    networking = settings.networking
    assert networking.request_timeout is not None and networking.request_timeout <= 60
    assert networking.connect_timeout is not None and networking.connect_timeout <= 30
    backoffs = networking.error_backoffs
    assert not isinstance(backoffs, int | float)
    assert 0 < len(list(backoffs)) <= 8
    assert settings.execution.default_backoff == 15
    assert settings.execution.max_workers == 16
    assert settings.queueing.worker_limit == 100
    assert settings.peering.stealth is True


def test_handler_limits_bound_every_handler() -> None:
    assert HANDLER_LIMITS == {"retries": 10, "timeout": 600.0, "backoff": 15.0}

    registry = kopf.OperatorRegistry()

    # The limits fit kopf's decorator signature as keyword arguments.
    @kopf.on.create(
        "perennial.dev", "v1alpha1", "trainingpipelines", registry=registry, **HANDLER_LIMITS
    )
    def handler(**_: object) -> None:
        pass

    (registered,) = registry._changing.get_all_handlers()
    assert (registered.retries, registered.timeout, registered.backoff) == (10, 600.0, 15.0)


def test_scanning_is_off_only_for_a_namespaced_operator() -> None:
    cluster = kopf.OperatorSettings()
    apply_settings(cluster, namespaced=False, instance="x")
    namespaced = kopf.OperatorSettings()
    apply_settings(namespaced, namespaced=True, instance="x")
    assert cluster.scanning.disabled is False
    assert namespaced.scanning.disabled is True


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"POD_NAME": "perennial-operator-7d9f", "HOSTNAME": "h"}, "perennial-operator-7d9f"),
        ({"HOSTNAME": "laptop"}, "laptop"),
        ({}, "local"),
    ],
)
def test_reporting_instance(environ: dict[str, str], expected: str) -> None:
    assert reporting_instance(environ) == expected


def test_built_in_kinds_are_watched_only_where_the_operator_made_them(
    settings: kopf.OperatorSettings,
) -> None:
    """Server-side label selectors on Jobs, Pods and Deployments: they select every object
    the operator makes (and the Pods made from their templates), whatever labels the user
    asked for on the Pods, and nothing of anyone else's."""
    from integration.harness.label_selectors import label_filter
    from perennial.k8s.builders.training_job import build_job
    from perennial.k8s.serving import build_deployment
    from unit.k8s.test_serving import MD, S3_MODEL, spec
    from unit.k8s.test_training_builders import run_body

    def selector(group: str, version: str, plural: str) -> str:
        found = list(
            settings.watching.label_selectors.collect(kopf.Resource(group, version, plural))
        )
        return ",".join(found)

    hostile = {"app.kubernetes.io/managed-by": "helm", "team": "ml"}
    job = build_job(run_body(runTemplate={"podLabels": hostile}))
    serving = build_deployment(MD, spec(podLabels=hostile), S3_MODEL, track="stable", replicas=1)
    pods = [job["spec"]["template"], serving["spec"]["template"]]
    foreign = {"metadata": {"labels": {"perennial.dev/run": "iris-00001", **hostile}}}

    jobs, deployments = selector("batch", "v1", "jobs"), selector("apps", "v1", "deployments")
    pod_filter = label_filter(selector("", "v1", "pods"))
    assert label_filter(jobs)(job) and not label_filter(jobs)(foreign)
    assert label_filter(deployments)(serving) and not label_filter(deployments)(foreign)
    assert all(pod_filter(pod) for pod in pods) and not pod_filter(foreign)
    # The operator's own kinds are watched whole.
    assert selector("perennial.dev", "v1alpha1", "modeldeployments") == ""


def test_kopf_waits_for_its_own_patch_long_enough_not_to_repeat_create_handlers(
    settings: kopf.OperatorSettings,
) -> None:
    # kopf's default (5 s) was outlasted by the watch's lag in a burst of creations, and the
    # create handler ran a second time on a body without kopf's own patch (bench-operator
    # counts such repeats); the wait ends as soon as the patched version arrives.
    assert settings.persistence.consistency_timeout >= 30
