"""Every kopf handler of the operator: importing this module registers them.

The runner (:mod:`perennial.controllers.runner`) imports it. The ModelDeployment
controller is registered when its module is present.
"""

from __future__ import annotations

import importlib
import importlib.util

from perennial.controllers import metric_series, training_pipeline, training_run

OPTIONAL_MODULES = ("perennial.controllers.model_deployment",)

LOADED: list[str] = [training_pipeline.__name__, training_run.__name__, metric_series.__name__]
for _module in OPTIONAL_MODULES:
    if importlib.util.find_spec(_module) is not None:
        importlib.import_module(_module)
        LOADED.append(_module)
