"""Performance decay: the limit a live metric is held to, and whether it lies beyond it.

Pure. The limit is an absolute ``threshold``, or relative to the served model's own quality:
its holdout accuracy minus ``maxDrop`` (accuracy points), or its holdout rmse times
``1 + maxDrop`` (a fraction). With a ``confidence``, a decay is declared only when a
one-sided confidence bound of the live metric lies beyond the limit:

- accuracy: the Wilson score interval's upper bound (Wilson 1927) of the share of correct
  predictions among the ``n`` feedback samples;
- rmse: the chi-square lower bound of the error's standard deviation, assuming normal
  errors: ``sqrt(n * rmse^2 / q)`` with ``q`` the ``confidence`` quantile of chi-square with
  ``n`` degrees of freedom (Wilson-Hilferty approximation; within 0.5 % of the exact
  quantile from n = 30 on, and decay verdicts need min_feedback_samples, 100 by default).

So a small feedback window cannot fire on noise (its bound is wide) and a large one sees a
real drop close to the limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from perennial_runtime.contract import metric_higher_is_better


def decay_limit(
    metric: str, threshold: float | None, max_drop: float | None, holdout: float | None
) -> float | None:
    """The live value at which the metric counts as decayed (None: unknown yet)."""
    if threshold is not None:
        return threshold
    if max_drop is None or holdout is None:
        return None
    if metric_higher_is_better(metric):
        return holdout - max_drop
    return holdout * (1.0 + max_drop)


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(confidence)


def wilson_upper(share: float, n: int, confidence: float) -> float:
    """One-sided upper confidence bound of a proportion (``share`` of ``n`` trials)."""
    if n <= 0:
        return 1.0
    z = _z(confidence)
    z2 = z * z
    centre = share + z2 / (2 * n)
    margin = z * math.sqrt(share * (1.0 - share) / n + z2 / (4 * n * n))
    return min(1.0, (centre + margin) / (1.0 + z2 / n))


def chi2_quantile(k: int, confidence: float) -> float:
    """The ``confidence`` quantile of chi-square with ``k`` degrees of freedom
    (Wilson-Hilferty)."""
    c = 2.0 / (9.0 * k)
    return k * (1.0 - c + _z(confidence) * math.sqrt(c)) ** 3


def rmse_lower(rmse: float, n: int, confidence: float) -> float:
    """One-sided lower confidence bound of the error's standard deviation."""
    if n <= 0:
        return 0.0
    return math.sqrt(n * rmse * rmse / chi2_quantile(n, confidence))


@dataclass(frozen=True)
class DecayVerdict:
    decayed: bool
    limit: float | None
    bound: float | None  # the confidence bound compared with the limit (None: the value)
    text: str  # "live accuracy 0.7800 (95% upper bound 0.8120) < limit 0.8500 (...)"


def judge(
    *,
    metric: str,
    value: float,
    samples: int,
    threshold: float | None,
    max_drop: float | None,
    holdout: float | None,
    confidence: float | None,
) -> DecayVerdict:
    """Whether ``value`` (over ``samples`` feedback rows) is beyond the rule's limit."""
    limit = decay_limit(metric, threshold, max_drop, holdout)
    if limit is None:
        return DecayVerdict(
            False,
            None,
            None,
            f"the served model's holdout {metric} is not known: maxDrop has no limit yet",
        )
    higher = metric_higher_is_better(metric)
    bound: float | None = None
    compared = value
    shown = f"live {metric} {value:.4f}"
    if confidence is not None:
        if higher:
            bound = wilson_upper(value, samples, confidence)
            shown += f" ({confidence:.0%} upper bound {bound:.4f})"
        else:
            bound = rmse_lower(value, samples, confidence)
            shown += f" ({confidence:.0%} lower bound {bound:.4f})"
        compared = bound
    decayed = compared < limit if higher else compared > limit
    if threshold is not None:
        origin = f"threshold {limit:.4f}"
    elif higher:
        origin = f"limit {limit:.4f} (holdout {holdout:.4f} - maxDrop {max_drop:g})"
    else:
        origin = f"limit {limit:.4f} (holdout {holdout:.4f} x (1 + maxDrop {max_drop:g}))"
    relation = ("<" if decayed else ">=") if higher else (">" if decayed else "<=")
    return DecayVerdict(
        decayed, limit, bound, f"{shown} {relation} {origin} over {samples} feedback samples"
    )
