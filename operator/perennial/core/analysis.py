"""From the servers' monitoring snapshots to a canary analysis sample and to
``status.monitoring``. Pure (no numpy: the operator does not ship it).

A server answers ``GET /v2/models/{name}/monitoring`` with a
:class:`perennial_runtime.contract.MonitoringSnapshot`. For a canary step the snapshots of
every candidate Pod are summed (requests, errors; the worst p99) and their prediction
distribution is compared with the stable Pods' by PSI:

- classifiers report the share of each predicted class: PSI over the classes;
- regressors report mean/std/p10/p50/p90 of recent predictions: the stable quantiles cut
  four bins holding 10/40/40/10 % of the stable predictions, and the candidate's share of
  each bin is read off its own quantiles (a piecewise-linear CDF through them). An
  approximation, but one that sees a shifted or widened prediction distribution.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pydantic import ValidationError

from perennial.api.deployment import MAX_EARLIER_MODELS
from perennial.core.rollout import AnalysisSample
from perennial_runtime.contract import MonitoringSnapshot

_EPS: Final = 1e-4
_REGRESSION_KEYS: Final = frozenset({"mean", "std", "p10", "p50", "p90"})
_KNOWN: Final = frozenset(
    field.alias or name for name, field in MonitoringSnapshot.model_fields.items()
)


class SnapshotError(ValueError):
    """A server's monitoring answer is not a MonitoringSnapshot."""


def parse_snapshot(payload: Any) -> MonitoringSnapshot:
    """Validate a monitoring answer; fields a newer server added are ignored."""
    if not isinstance(payload, Mapping):
        raise SnapshotError(f"expected a JSON object, got {type(payload).__name__}")
    known = {k: v for k, v in payload.items() if k in _KNOWN}
    try:
        return MonitoringSnapshot.model_validate(known)
    except ValidationError as exc:
        raise SnapshotError(f"not a monitoring snapshot: {exc}") from exc


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population Stability Index of two distributions over the same bins."""
    total = 0.0
    for exp, act in zip(expected, actual, strict=True):
        e, a = max(exp, _EPS), max(act, _EPS)
        total += (a - e) * math.log(a / e)
    return total


def _weighted(snapshots: Sequence[MonitoringSnapshot]) -> dict[str, float]:
    """The prediction distributions of several Pods, weighted by rows predicted."""
    sums: dict[str, float] = {}
    weight = 0.0
    for snap in snapshots:
        if not snap.prediction_distribution:
            continue
        w = float(max(snap.rows_predicted, 1))
        weight += w
        for key, value in snap.prediction_distribution.items():
            sums[key] = sums.get(key, 0.0) + w * float(value)
    return {k: v / weight for k, v in sums.items()} if weight else {}


def _cdf(quantiles: Mapping[str, float], x: float) -> float:
    """A piecewise-linear CDF through (p10, .1), (p50, .5), (p90, .9), tails extrapolated."""
    points = [(quantiles["p10"], 0.1), (quantiles["p50"], 0.5), (quantiles["p90"], 0.9)]
    (x0, y0), (x1, y1), (x2, y2) = points
    if x <= x1:
        lo, hi = (x0, y0), (x1, y1)
    else:
        lo, hi = (x1, y1), (x2, y2)
    if hi[0] <= lo[0]:  # a point mass
        value = hi[1] if x >= hi[0] else lo[1] - 0.1
    else:
        value = lo[1] + (x - lo[0]) * (hi[1] - lo[1]) / (hi[0] - lo[0])
    return min(1.0, max(0.0, value))


def prediction_shift(stable: Mapping[str, float], candidate: Mapping[str, float]) -> float | None:
    """PSI between the stable and the candidate prediction distributions (None: not
    comparable, e.g. one side has served nothing yet)."""
    if not stable or not candidate:
        return None
    if set(stable) >= _REGRESSION_KEYS and set(candidate) >= _REGRESSION_KEYS:
        edges = [stable["p10"], stable["p50"], stable["p90"]]
        cuts = [0.0, *(_cdf(candidate, e) for e in edges), 1.0]
        actual = [max(0.0, b - a) for a, b in itertools.pairwise(cuts)]
        return psi([0.1, 0.4, 0.4, 0.1], actual)
    classes = sorted(set(stable) | set(candidate))
    return psi(
        [float(stable.get(c, 0.0)) for c in classes],
        [float(candidate.get(c, 0.0)) for c in classes],
    )


def analysis_sample(
    candidate: Sequence[MonitoringSnapshot], stable: Sequence[MonitoringSnapshot]
) -> AnalysisSample | None:
    """The canary analysis input: candidate Pods summed, shift vs the stable Pods."""
    if not candidate:
        return None
    p99s = [s.latency_p99_ms for s in candidate if s.latency_p99_ms is not None]
    return AnalysisSample(
        requests=sum(s.requests for s in candidate),
        errors=sum(s.errors for s in candidate),
        p99_latency_ms=max(p99s) if p99s else None,
        prediction_shift=prediction_shift(_weighted(stable), _weighted(candidate)),
    )


def scrape_message(snapshot: MonitoringSnapshot) -> str:
    """The ``MetricsAvailable`` message of a successful scrape: which model, how much."""
    drift = "n/a" if snapshot.max_drift_score is None else f"{snapshot.max_drift_score:.3f}"
    model = snapshot.run or "a model that does not name its run"
    return (
        f"{model}: {snapshot.requests} requests, max drift {drift} over "
        f"{snapshot.drift_samples} rows, {snapshot.feedback_samples} feedback rows"
    )


def monitoring_status(snapshot: MonitoringSnapshot, *, scraped_at: str) -> dict[str, Any]:
    """``status.monitoring`` (wire shape) from one snapshot. The pipeline's drift and
    decay triggers read maxDriftScore/driftSamples and liveAccuracy/liveRmse/
    feedbackSamples from here (the serving model's own predictions only), and
    ``run``/``sha256`` (the model the server measured) to count them only for the model the
    deployment serves. ``earlierModels``: late labels the server scored against earlier
    models, for people (no trigger reads them)."""
    out: dict[str, Any] = {
        "driftScores": {k: round(float(v), 6) for k, v in snapshot.drift_scores.items()},
        "driftSamples": snapshot.drift_samples,
        "errorRate": round(snapshot.error_rate, 6),
        "requests": snapshot.requests,
        "feedbackSamples": snapshot.feedback_samples,
        "lastScrapeTime": scraped_at,
        "reachable": True,
    }
    for key, value in (("run", snapshot.run), ("sha256", snapshot.sha256)):
        if value:
            out[key] = value
    optional = {
        "maxDriftScore": snapshot.max_drift_score,
        "liveAccuracy": snapshot.live_accuracy,
        "liveRmse": snapshot.live_rmse,
        "latencyP99Ms": snapshot.latency_p99_ms,
    }
    out.update({k: round(float(v), 6) for k, v in optional.items() if v is not None})
    if snapshot.earlier_models:
        out["earlierModels"] = [
            _rounded(e.to_dict()) for e in snapshot.earlier_models[:MAX_EARLIER_MODELS]
        ]
    return out


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in values.items()}
