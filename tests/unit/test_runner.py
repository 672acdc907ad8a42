"""The `run` arguments become the right kopf keyword arguments; bad ones are refused clearly."""

from __future__ import annotations

import sys

import pytest

from perennial.controllers.runner import (
    CORE_MODULES,
    build_run_options,
    load_handler_modules,
    run_operator,
)

LIVENESS = "http://0.0.0.0:8080/healthz"


def test_cluster_wide_standalone_by_default() -> None:
    options = build_run_options(
        namespaces=[], liveness=LIVENESS, metrics_port=9090, peering=None, priority=0
    )
    assert options.kopf_kwargs() == {
        "clusterwide": True,
        "namespaces": [],
        "standalone": True,
        "liveness_endpoint": LIVENESS,
    }
    assert options.metrics_port == 9090


def test_namespaces_make_it_namespaced_and_are_deduplicated() -> None:
    options = build_run_options(
        namespaces=["ml", "team-b", "ml"],
        liveness=LIVENESS,
        metrics_port=9090,
        peering=None,
        priority=0,
    )
    kwargs = options.kopf_kwargs()
    assert kwargs["clusterwide"] is False
    assert kwargs["namespaces"] == ["ml", "team-b"]


def test_peering_passes_name_and_priority_and_is_not_standalone() -> None:
    options = build_run_options(
        namespaces=[], liveness=LIVENESS, metrics_port=9090, peering="perennial", priority=100
    )
    kwargs = options.kopf_kwargs()
    assert kwargs["standalone"] is False
    assert kwargs["peering_name"] == "perennial"
    assert kwargs["priority"] == 100


def test_empty_liveness_disables_it_and_port_zero_disables_metrics() -> None:
    options = build_run_options(
        namespaces=[], liveness="", metrics_port=0, peering=None, priority=0
    )
    assert options.liveness_endpoint is None
    assert options.metrics_port == 0


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"namespaces": ["ML"]}, "--namespace"),
        ({"namespaces": ["team-*"]}, "--namespace"),
        ({"liveness": "https://0.0.0.0:8080/healthz"}, "--liveness"),
        ({"liveness": "http://0.0.0.0/healthz"}, "--liveness"),  # no port
        ({"liveness": "http://0.0.0.0:8080"}, "--liveness"),  # no path
        ({"metrics_port": 70000}, "--metrics-port"),
        ({"metrics_port": 8080}, "--metrics-port"),  # same as liveness
        ({"peering": "Bad_Name"}, "--peering"),
        ({"priority": 5}, "--priority"),  # without --peering
    ],
)
def test_bad_arguments_name_the_flag(kwargs: dict[str, object], flag: str) -> None:
    args: dict[str, object] = {
        "namespaces": [],
        "liveness": LIVENESS,
        "metrics_port": 9090,
        "peering": None,
        "priority": 0,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=flag):
        build_run_options(**args)  # type: ignore[arg-type]


def test_run_operator_refuses_bad_arguments_with_exit_code_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = run_operator(
        namespaces=["Not A Namespace"],
        liveness=LIVENESS,
        metrics_port=9090,
        peering=None,
        priority=0,
        verbose=False,
    )
    assert code == 2
    assert "--namespace" in capsys.readouterr().err


def test_run_refuses_a_bad_notification_sink_with_exit_code_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from perennial.cli import main

    assert main(["run", "--notify-sink", "event-display:8080"]) == 2
    assert "--notify-sink: 'event-display:8080' is not an http" in capsys.readouterr().err
    monkeypatch.setenv("PERENNIAL_NOTIFY_MODE", "xml")
    assert main(["run"]) == 2
    assert "PERENNIAL_NOTIFY_MODE: 'xml' is not a mode" in capsys.readouterr().err


def test_core_modules_load_and_missing_optional_modules_are_skipped() -> None:
    loaded = load_handler_modules(optional=("perennial.controllers.no_such_module",))
    assert loaded == list(CORE_MODULES)
    for name in CORE_MODULES:
        assert name in sys.modules


def test_a_broken_optional_module_is_not_silently_skipped() -> None:
    # A parent package that does not exist is an import error, not "absent".
    with pytest.raises(ModuleNotFoundError):
        load_handler_modules(core=(), optional=("perennial_no_such_pkg.handlers",))


def test_registered_handlers() -> None:
    import kopf

    load_handler_modules()
    registry = kopf.get_default_registry()
    ids = {handler.id for handler in registry._activities.get_all_handlers()}
    assert {"perennial-settings", "api", "perennial-notifications"} <= ids
    assert "perennial-notifications-stop" in ids
