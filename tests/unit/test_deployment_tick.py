import pytest

from perennial.controllers.deployment_reconciler import rollout_tick_seconds


def test_the_rollout_tick_comes_from_the_environment_and_bad_values_name_it() -> None:
    assert rollout_tick_seconds({}) == 5.0
    assert rollout_tick_seconds({"PERENNIAL_DEPLOYMENT_TICK_SECONDS": "0.5"}) == 0.5
    for bad in ("soon", "0", "-1"):
        with pytest.raises(ValueError, match="PERENNIAL_DEPLOYMENT_TICK_SECONDS"):
            rollout_tick_seconds({"PERENNIAL_DEPLOYMENT_TICK_SECONDS": bad})
