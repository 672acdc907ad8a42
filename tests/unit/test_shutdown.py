"""The operator's shutdown flag: what ends a loop kopf respawned while exiting (issue 15)."""

from __future__ import annotations

import kopf

import perennial.controllers.handlers  # registers every handler in the default registry
from perennial.controllers import model_deployment, shutdown


def _activity_ids(registry: kopf.OperatorRegistry) -> list[str]:
    return sorted(handler.id for handler in registry._activities.get_all_handlers())


def test_the_flag_is_down_until_the_cleanup_handler_runs() -> None:
    memo = kopf.Memo()
    assert not shutdown.requested(memo)  # before startup: no flag at all
    shutdown.operator_started(memo)
    assert not shutdown.requested(memo)
    shutdown.operator_stopping(memo)
    assert shutdown.requested(memo)


def test_a_new_operator_starts_with_the_flag_down() -> None:
    memo = kopf.Memo()
    shutdown.operator_started(memo)
    shutdown.operator_stopping(memo)
    shutdown.operator_started(memo)  # a restart (the harness reuses a memo)
    assert not shutdown.requested(memo)


def test_registered_once_per_registry() -> None:
    registry = kopf.OperatorRegistry()
    shutdown.register(registry)
    model_deployment.register(registry)  # registers the flag too
    shutdown.register(registry)
    ids = _activity_ids(registry)
    assert ids.count("shutdown-flag-startup") == 1
    assert ids.count("shutdown-flag-cleanup") == 1


def test_the_default_registry_keeps_the_flag() -> None:
    assert perennial.controllers.handlers.LOADED
    ids = _activity_ids(kopf.get_default_registry())
    assert {"shutdown-flag-startup", "shutdown-flag-cleanup"} <= set(ids)
    assert ids.count("shutdown-flag-startup") == 1
