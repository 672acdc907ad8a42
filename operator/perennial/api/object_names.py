"""Limits on the names of our objects, set by the objects derived from them.

Kubernetes accepts a custom resource name of up to 253 characters, but the operator
derives other names and label values from it, and those are shorter:

- a TrainingPipeline's name is the ``perennial.dev/pipeline`` label value of its runs,
  Jobs and Pods, and its runs are named ``<pipeline>-00001``: a run's name is a label
  value and its Job's name, so at most 63 characters. Pipeline names: at most 57.
- a TrainingRun's name is the ``perennial.dev/run`` label value of its Job and Pods and
  the Job's name: at most 63 characters.
- a ModelDeployment's name is a label value, and its serving Deployments and Service are
  named ``<name>-serving`` / ``<name>-canary``. A Service name is a DNS-1035 label (it
  must start with a letter, no dots, at most 63 characters). Deployment names: at most 55
  characters, starting with a letter, lowercase letters, digits and '-' only.

Each limit is a root-level CEL rule on ``self.metadata.name`` (the API server refuses the
object at admission, with a message that says the limit and why); the resource model
checks the same (:func:`name_errors`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from perennial.api.base import CelRule

MAX_LABEL_VALUE: Final = 63  # label values, DNS-1123 / DNS-1035 labels
RUN_SEQUENCE_DIGITS: Final = 5
RUN_SUFFIX_EXAMPLE: Final = "-" + "1".zfill(RUN_SEQUENCE_DIGITS)  # -00001
SERVING_SUFFIX: Final = "-serving"
CANARY_SUFFIX: Final = "-canary"
WORKLOAD_SUFFIXES: Final = (SERVING_SUFFIX, CANARY_SUFFIX)

MAX_PIPELINE_NAME: Final = MAX_LABEL_VALUE - len(RUN_SUFFIX_EXAMPLE)  # 57
MAX_RUN_NAME: Final = MAX_LABEL_VALUE  # 63
MAX_DEPLOYMENT_NAME: Final = MAX_LABEL_VALUE - max(len(s) for s in WORKLOAD_SUFFIXES)  # 55

DNS1035_LABEL: Final = "^[a-z]([-a-z0-9]*[a-z0-9])?$"
# What a real API server accepts as metadata.name of a custom resource (DNS-1123 subdomain);
# declared on the root schema so CEL rules reading the name have a bounded cost.
MAX_OBJECT_NAME: Final = 253


@dataclass(frozen=True)
class NameRule:
    """A CEL rule on ``self.metadata.name`` and its Python mirror."""

    rule: CelRule
    holds: Callable[[str], bool]


def _max_length(limit: int, why: str) -> NameRule:
    return NameRule(
        CelRule(
            rule=f"size(self.metadata.name) <= {limit}",
            message=f"metadata.name must be at most {limit} characters: {why}",
            field_path=".metadata.name",
        ),
        lambda name: len(name) <= limit,
    )


_DNS1035 = re.compile(DNS1035_LABEL)

PIPELINE_NAME_RULES: Final = (
    _max_length(
        MAX_PIPELINE_NAME,
        f"runs are named <pipeline>{RUN_SUFFIX_EXAMPLE}, and a run's name is a label value "
        f"and its Job's name (at most {MAX_LABEL_VALUE} characters)",
    ),
)
RUN_NAME_RULES: Final = (
    _max_length(
        MAX_RUN_NAME,
        "it is the perennial.dev/run label value of the run's Job and Pods, and the Job's "
        f"name (label values hold at most {MAX_LABEL_VALUE} characters)",
    ),
)
DEPLOYMENT_NAME_RULES: Final = (
    _max_length(
        MAX_DEPLOYMENT_NAME,
        f"the serving Deployment and Service are named <name>{SERVING_SUFFIX} and the canary "
        f"<name>{CANARY_SUFFIX}, and those names hold at most {MAX_LABEL_VALUE} characters",
    ),
    NameRule(
        CelRule(
            rule=f"self.metadata.name.matches('{DNS1035_LABEL}')",
            message="metadata.name must start with a letter and hold only lowercase letters, "
            "digits and '-' (a DNS-1035 label): the Service <name>-serving is named after it",
            field_path=".metadata.name",
        ),
        lambda name: _DNS1035.fullmatch(name) is not None,
    ),
)


def name_errors(name: str | None, rules: tuple[NameRule, ...]) -> list[str]:
    """The messages of the rules ``name`` breaks (none for an unnamed object)."""
    if name is None:
        return []
    return [r.rule.message for r in rules if not r.holds(name)]


def name_cel_rules(rules: tuple[NameRule, ...]) -> tuple[CelRule, ...]:
    return tuple(r.rule for r in rules)
