"""What the server observes: requests, predictions, input drift, feedback.

Hot path: a request costs a few integer increments (its count and latency bucket, plain
Python counters rendered as Prometheus families when scraped: no client-library lock per
request), one list append (its validated batch, for drift) and one signed id per row
(``feedback_ids``: the id carries the model, the time and the prediction, so no cache).
Binning, counts, PSI and the prediction distribution are computed later, in batches of
at least ``FOLD_ROWS`` rows after a response has been sent, or when ``/metrics`` or the
monitoring endpoint is read. Everything here runs on the
server's event-loop thread, so nothing is locked.

The drift and feedback windows are per process: with ``--workers N`` each worker watches
the traffic it served (see docs/serving.md). Feedback by id is scored by whichever
process receives it, against the model that made the prediction: the serving model's
window, or one of the last ``EARLIER_MODELS`` models' windows.
"""

from __future__ import annotations

import logging
import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from perennial_runtime.contract import EarlierModelFeedback, FeatureReference, MonitoringSnapshot
from perennial_runtime.drift import MIN_DRIFT_SAMPLES
from perennial_runtime.serve.config import ServeConfig
from perennial_runtime.serve.errors import RequestError, describe
from perennial_runtime.serve.feedback_ids import (
    ID,
    LEGACY_ID,
    SHA_CHARS,
    IdCodec,
    PredictionRef,
    class_field,
    float_fields,
    float_of,
)
from perennial_runtime.serve.model import Prediction, ServedModel
from perennial_runtime.serve.schema import Batch
from perennial_runtime.serve.windows import (
    BinnedWindow,
    Binner,
    LabelBinner,
    NumericBinner,
    PredictionLabelBinner,
    ScoreWindow,
    TimeOrderedScores,
    psi_of,
)

log = logging.getLogger("perennial_runtime.serve")

INFERENCE_ENDPOINTS = ("infer", "predict")
ENDPOINTS = (
    *INFERENCE_ENDPOINTS,
    "feedback",
    "model_metadata",
    "model_ready",
    "server_metadata",
    "health",
    "metrics",
    "monitoring",
    "unknown",
)
OUTCOMES = ("ok", "client_error", "server_error")
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
FOLD_ROWS = 256
LATENCY_SAMPLES = 1024
PREDICTION_COLUMN = "__prediction__"
# Earlier models whose feedback windows are kept (the ones that predicted most recently).
EARLIER_MODELS = 4
EXAMPLE_ID = "3f5a1c9e.5f1c9a2e.misxm0zf.18.0.c0.ZvH4RJcoDcNk"
UNVERIFIED_HINT = (
    "{n} id(s) failed the authentication check: they were not issued by a server of this "
    "deployment (another deployment, a server without the deployment's feedback key, or an "
    "altered id); send feedback to the deployment that made the prediction"
)


def outcome_of(status: int) -> str:
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "client_error"
    return "ok"


class _Tracked:
    """The columns the drift window watches: features with a reference, then predictions."""

    def __init__(self, model: ServedModel) -> None:
        meta = model.metadata
        schema = model.schema
        self.names: list[str] = []
        self.binners: list[Binner] = []
        self.sources: list[tuple[str, int]] = []  # ("numeric"|"labels"|"prediction", column)
        for name in schema.names:
            ref = meta.reference.get(name)
            if ref is None:
                continue
            if name in schema.numeric_names and ref.kind == "numeric":
                self._add(name, NumericBinner(ref), ("numeric", schema.numeric_names.index(name)))
            elif name in schema.label_names and ref.kind == "categorical":
                self._add(name, LabelBinner(ref), ("labels", schema.label_names.index(name)))
        self.features = len(self.names)
        pref = meta.prediction_reference
        if pref is not None:
            if model.is_classifier and pref.kind == "categorical":
                self._add(PREDICTION_COLUMN, PredictionLabelBinner(pref), ("prediction", 0))
            elif not model.is_classifier and pref.kind == "numeric":
                self._add(PREDICTION_COLUMN, NumericBinner(pref), ("prediction", 0))

    def _add(self, name: str, binner: Binner, source: tuple[str, int]) -> None:
        self.names.append(name)
        self.binners.append(binner)
        self.sources.append(source)

    def reference(self, column: int) -> FeatureReference:
        return self.binners[column].reference


class Monitor:
    """Counters, windows and the Prometheus registry of one server process."""

    def __init__(self, config: ServeConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.registry = CollectorRegistry(auto_describe=False)
        # (endpoint, outcome) -> requests; endpoint -> [bucket counts..., +Inf], seconds
        self.request_counts = {(e, o): 0 for e in ENDPOINTS for o in OUTCOMES}
        self.latency_buckets = {e: [0] * (len(LATENCY_BUCKETS) + 1) for e in ENDPOINTS}
        self.latency_sums = dict.fromkeys(ENDPOINTS, 0.0)
        self.requests = 0
        self.errors = 0
        self._latencies = np.zeros(LATENCY_SAMPLES, dtype=np.float64)
        self._latency_count = 0
        self.rows_predicted = 0
        if not config.feedback_key or config.feedback_key_generated:
            log.warning(
                "no feedback key configured (PERENNIAL_FEEDBACK_KEY or "
                "PERENNIAL_FEEDBACK_KEY_FILE): prediction ids are signed with a key generated "
                "at start, so only this server can score them, and not after a restart"
            )
        self.ids = IdCodec(config.feedback_key or IdCodec.new_key())
        self._seq = 0
        self._sha8 = ""
        self._class_fields: dict[Any, str] = {}
        self.feedback = TimeOrderedScores(config.feedback_window)
        self.earlier: dict[str, tuple[bool, TimeOrderedScores]] = {}  # sha8 -> (classifier, w)
        self.feedback_total = 0
        self.model: ServedModel | None = None
        self.status = "loading"
        self._pending: list[tuple[Batch, npt.NDArray[Any]]] = []
        self._pending_rows = 0
        self._tracked: _Tracked | None = None
        self._window: BinnedWindow | None = None
        self._class_counts: npt.NDArray[np.int64] | None = None
        self._value_edges: npt.NDArray[np.float64] | None = None
        self._value_buckets: npt.NDArray[np.int64] | None = None
        self._value_sum = 0.0
        self._values = ScoreWindow(config.drift_window)  # recent regression predictions
        self.registry.register(_Collector(self))

    # --- lifecycle ----------------------------------------------------------------------

    def attach(self, model: ServedModel) -> None:
        self.model = model
        self._sha8 = model.sha256[:SHA_CHARS]
        self._class_fields = {c: class_field(c) for c in model.classes or []}
        self._tracked = _Tracked(model)
        self._window = BinnedWindow(
            [b.bins for b in self._tracked.binners] or [1], self.config.drift_window
        )
        if model.classes is not None:
            self._class_counts = np.zeros(len(model.classes), dtype=np.int64)
        else:
            pref = model.metadata.prediction_reference
            edges = pref.edges if pref is not None and pref.kind == "numeric" else []
            self._value_edges = np.asarray(edges, dtype=np.float64)
            self._value_buckets = np.zeros(len(edges) + 1, dtype=np.int64)

    # --- hot path ------------------------------------------------------------------------

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.request_counts[endpoint, outcome_of(status)] += 1
        self.latency_buckets[endpoint][bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sums[endpoint] += seconds
        if endpoint in INFERENCE_ENDPOINTS:
            self.requests += 1
            if status >= 500:
                self.errors += 1
            self._latencies[self._latency_count % LATENCY_SAMPLES] = seconds
            self._latency_count += 1

    def record(self, batch: Batch, prediction: Prediction) -> list[str]:
        """Remember a served batch; returns one signed feedback id per row."""
        self._seq += 1
        self._pending.append((batch, prediction.values))
        self._pending_rows += batch.rows
        self.rows_predicted += batch.rows
        made_ms = int(self.clock() * 1000)
        return self.ids.issue(self._sha8, made_ms, self._seq, self._fields(prediction.values))

    def _fields(self, values: npt.NDArray[Any]) -> list[str]:
        if self.model is not None and self.model.classes is None:
            return float_fields(values)
        known = self._class_fields
        return [known.get(v) or class_field(v) for v in values.tolist()]

    def after_response(self) -> None:
        if self._pending_rows >= FOLD_ROWS:
            self.fold()

    # --- batched bookkeeping ---------------------------------------------------------------

    def fold(self) -> None:
        """Bin pending rows into the drift window and the prediction distribution."""
        if not self._pending or self.model is None or self._tracked is None:
            return
        pending, self._pending, self._pending_rows = self._pending, [], 0
        values = _concat([v for _, v in pending])
        if self._class_counts is not None:
            classes = np.asarray(self.model.classes, dtype=object)
            index = {c: i for i, c in enumerate(classes.tolist())}
            hits = np.fromiter((index.get(v, -1) for v in values.tolist()), np.int64, len(values))
            hits = hits[hits >= 0]
            self._class_counts += np.bincount(hits, minlength=len(classes))
        elif self._value_edges is not None and self._value_buckets is not None:
            floats = np.asarray(values, dtype=np.float64)
            slot = np.searchsorted(self._value_edges, floats, side="left")
            self._value_buckets += np.bincount(slot, minlength=len(self._value_edges) + 1)
            self._value_sum += float(floats.sum())
            self._values.add(floats)
        # Only the newest drift_window rows can still be in the window.
        keep: list[tuple[Batch, npt.NDArray[Any]]] = []
        rows = 0
        for batch, vals in reversed(pending):
            keep.append((batch, vals))
            rows += batch.rows
            if rows >= self.config.drift_window:
                break
        keep.reverse()
        numeric = _concat([b.numeric for b, _ in keep])
        labels = _concat([b.labels for b, _ in keep])
        predicted = _concat([v for _, v in keep])
        tracked = self._tracked
        if not tracked.binners or self._window is None:
            return
        local = np.empty((len(predicted), len(tracked.binners)), dtype=np.int64)
        for c, (binner, (source, column)) in enumerate(
            zip(tracked.binners, tracked.sources, strict=True)
        ):
            if source == "numeric":
                local[:, c] = binner(numeric[:, column])
            elif source == "labels":
                local[:, c] = binner(labels[:, column].tolist())
            else:
                local[:, c] = binner(predicted.tolist() if predicted.dtype == object else predicted)
        self._window.add(local)

    def drift(self) -> tuple[dict[str, float], float | None]:
        """Per-feature PSI (features with enough observations) and the prediction PSI."""
        self.fold()
        scores: dict[str, float] = {}
        prediction_psi: float | None = None
        tracked, window = self._tracked, self._window
        if tracked is None or window is None:
            return scores, None
        for c, name in enumerate(tracked.names):
            score, observed = psi_of(window, c, tracked.reference(c))
            if observed < MIN_DRIFT_SAMPLES:
                continue
            if name == PREDICTION_COLUMN:
                prediction_psi = score
            else:
                scores[name] = score
        return scores, prediction_psi

    @property
    def drift_samples(self) -> int:
        return self._window.filled if self._window is not None else 0

    # --- feedback ------------------------------------------------------------------------------

    def targets(self, raw: Sequence[Any], where: str = "targets") -> list[Any]:
        """Ground-truth values checked against the model: a known class, or a number."""
        model = self.model
        assert model is not None
        out: list[Any] = []
        if model.classes is not None:
            lookup: dict[Any, Any] = {}
            for c in model.classes:
                lookup[str(c)] = c
                lookup[c] = c
            for i, t in enumerate(raw):
                if not isinstance(t, str | int | float) or t not in lookup:
                    shown = ", ".join(repr(c) for c in model.classes[:10])
                    raise RequestError(
                        f"{where}[{i}]: {describe(t)} is not one of the model's classes ({shown})"
                    )
                out.append(lookup[t])
            return out
        for i, t in enumerate(raw):
            if type(t) not in (int, float) or not math.isfinite(t):
                raise RequestError(f"{where}[{i}]: expects a number, got {describe(t)}")
            out.append(float(t))
        return out

    def score_feedback(self, predicted: Sequence[Any], targets: Sequence[Any]) -> None:
        """Rows predicted again now (feedback by ``instances``): the serving model's, made now."""
        model = self.model
        assert model is not None
        if not predicted:
            return
        made_ms = int(self.clock() * 1000)
        self._seq += 1
        uid = f"{self.ids.process}.rows.{self._seq}."
        for row, (p, t) in enumerate(zip(predicted, targets, strict=True)):
            if model.classes is not None:
                outcome = 1.0 if p == t else 0.0
            else:
                outcome = (float(p) - float(t)) ** 2
            self.feedback.add(made_ms, self._seq, row, f"{uid}{row}", outcome)
        self.feedback_total += len(predicted)

    def feedback_by_ids(self, ids: Sequence[Any], targets: Sequence[Any]) -> dict[str, Any]:
        """Score each id against the model that made the prediction, in that model's
        window at the time it was made (``targets`` already checked by :meth:`targets`)."""
        outcomes: dict[str, list[str]] = {
            "ok": [],
            "duplicate": [],
            "stale": [],
            "unknown": [],
            "unverified": [],
            "earlier": [],
        }
        for i, (pid, target) in enumerate(zip(ids, targets, strict=True)):
            match = ID.fullmatch(pid) if type(pid) is str else None
            if match is None:
                if type(pid) is str and LEGACY_ID.fullmatch(pid):
                    outcomes["unknown"].append(pid)  # an id of a server before signed ids
                    continue
                raise RequestError(
                    f"ids[{i}]: expects a prediction id as returned by /predict or infer "
                    f"(like '{EXAMPLE_ID}'), got {describe(pid)}"
                )
            ref = self.ids.verify(match)
            if ref is None:
                outcomes["unverified"].append(pid)
                continue
            state = self._score(ref, target)
            outcomes[state].append(pid)
            if state == "ok" and ref.model != self._sha8:
                outcomes["earlier"].append(pid)
        accepted = len(outcomes["ok"])
        self.feedback_total += accepted
        return self.feedback_summary(
            accepted,
            unknown=outcomes["unknown"] + outcomes["unverified"],
            duplicates=outcomes["duplicate"],
            stale=len(outcomes["stale"]),
            unverified=len(outcomes["unverified"]),
            earlier=len(outcomes["earlier"]),
        )

    def _score(self, ref: PredictionRef, target: Any) -> str:
        """``ok``, ``duplicate``, ``stale`` or ``unknown`` (a prediction of another kind of
        model: a regressor's id sent to a classifier, or the reverse)."""
        model = self.model
        assert model is not None
        classifier = model.classes is not None
        if ref.classification != classifier:
            return "unknown"
        if classifier:
            truth = self._class_fields.get(target) or class_field(target)
            outcome = 1.0 if truth == ref.value else 0.0
        else:
            outcome = (float_of(ref.value) - float(target)) ** 2
        if ref.model == self._sha8:
            window = self.feedback
        else:
            found = self._earlier_window(ref, classifier)
            if found is None:
                return "stale"
            window = found
        return window.add(ref.made_ms, ref.seq, ref.row, ref.text, outcome)

    def _earlier_window(self, ref: PredictionRef, classifier: bool) -> TimeOrderedScores | None:
        """The window of an earlier model; a new model's displaces the one whose newest
        prediction is oldest (None: this prediction is older than all of those)."""
        entry = self.earlier.get(ref.model)
        if entry is not None:
            return entry[1]
        if len(self.earlier) >= EARLIER_MODELS:
            oldest = min(self.earlier, key=lambda k: self.earlier[k][1].newest_ms or 0)
            if ref.made_ms < (self.earlier[oldest][1].newest_ms or 0):
                return None
            del self.earlier[oldest]
        window = TimeOrderedScores(self.config.feedback_window)
        self.earlier[ref.model] = (classifier, window)
        return window

    def feedback_summary(
        self,
        accepted: int,
        unknown: Sequence[str] = (),
        duplicates: Sequence[str] = (),
        *,
        stale: int = 0,
        unverified: int = 0,
        earlier: int = 0,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "accepted": accepted,
            "feedbackSamples": self.feedback.filled,
        }
        if earlier:
            body["earlierModels"] = earlier
        if unknown:
            body["unknownIds"] = list(unknown[:20])
            body["unknown"] = len(unknown)
        if unverified:
            body["unverified"] = unverified
            body["hint"] = UNVERIFIED_HINT.format(n=unverified)
        if duplicates:
            body["duplicateIds"] = list(duplicates[:20])
            body["duplicates"] = len(duplicates)
        if stale:
            body["stale"] = stale
        live = self.feedback.mean()
        if self.model is not None and live is not None:
            if self.model.is_classifier:
                body["liveAccuracy"] = live
            else:
                body["liveRmse"] = math.sqrt(live)
        return body

    def earlier_models(self) -> list[EarlierModelFeedback]:
        out: list[tuple[int, EarlierModelFeedback]] = []
        for sha8, (classifier, window) in self.earlier.items():
            mean = window.mean()
            out.append(
                (
                    window.newest_ms or 0,
                    EarlierModelFeedback(
                        sha256_prefix=sha8,
                        feedback_samples=window.filled,
                        live_accuracy=mean if classifier else None,
                        live_rmse=None if classifier or mean is None else math.sqrt(mean),
                        oldest_prediction=_rfc3339(window.oldest_ms),
                        newest_prediction=_rfc3339(window.newest_ms),
                    ),
                )
            )
        return [e for _, e in sorted(out, key=lambda item: -item[0])]

    # --- read side -------------------------------------------------------------------------------

    def latency_p99(self) -> float | None:
        n = min(self._latency_count, LATENCY_SAMPLES)
        if n == 0:
            return None
        return float(np.percentile(self._latencies[:n], 99))

    def prediction_distribution(self) -> dict[str, float]:
        model = self.model
        if model is None:
            return {}
        if model.classes is not None and self._class_counts is not None:
            total = int(self._class_counts.sum())
            if total == 0:
                return {}
            counts = self._class_counts.tolist()
            return {str(c): n / total for c, n in zip(model.classes, counts, strict=True)}
        if self._values.filled == 0:
            return {}
        recent = self._values.values[: self._values.filled]
        return {
            "mean": float(recent.mean()),
            "std": float(recent.std()),
            "p10": float(np.percentile(recent, 10)),
            "p50": float(np.percentile(recent, 50)),
            "p90": float(np.percentile(recent, 90)),
        }

    def snapshot(self) -> MonitoringSnapshot:
        scores, _ = self.drift()
        live = self.feedback.mean()
        model = self.model
        p99 = self.latency_p99()
        return MonitoringSnapshot(
            model=model.name if model is not None else (self.config.model_name or ""),
            run=model.version if model is not None else None,
            sha256=model.sha256 if model is not None else None,
            backend=model.backend if model is not None else "",
            requests=self.requests,
            errors=self.errors,
            error_rate=(self.errors / self.requests) if self.requests else 0.0,
            rows_predicted=self.rows_predicted,
            latency_p99_ms=None if p99 is None else p99 * 1000.0,
            drift_samples=self.drift_samples,
            drift_scores=scores,
            max_drift_score=max(scores.values()) if scores else None,
            prediction_distribution=self.prediction_distribution(),
            feedback_samples=self.feedback.filled,
            live_accuracy=live if model is not None and model.is_classifier else None,
            live_rmse=(
                math.sqrt(live)
                if live is not None and model is not None and not model.is_classifier
                else None
            ),
            earlier_models=self.earlier_models(),
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _rfc3339(ms: int | None) -> str | None:
    if ms is None:
        return None
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _concat(arrays: list[npt.NDArray[Any]]) -> npt.NDArray[Any]:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


class _Collector:
    """Model-dependent metrics, computed when Prometheus scrapes."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        m = self.monitor
        requests = CounterMetricFamily(
            "perennial_requests",
            "HTTP requests by endpoint and outcome (ok, client_error, server_error).",
            labels=["endpoint", "outcome"],
        )
        for (endpoint, outcome), count in m.request_counts.items():
            requests.add_metric([endpoint, outcome], count)
        yield requests
        latency = HistogramMetricFamily(
            "perennial_request_duration_seconds",
            "Server time per request, from the first byte read to the last byte sent.",
            labels=["endpoint"],
        )
        bounds = [repr(b) for b in LATENCY_BUCKETS] + ["+Inf"]
        for endpoint, counts in m.latency_buckets.items():
            cumulative = np.cumsum(counts).tolist()
            latency.add_metric(
                [endpoint], list(zip(bounds, cumulative, strict=True)), m.latency_sums[endpoint]
            )
        yield latency
        ready = GaugeMetricFamily(
            "perennial_model_ready", "1 when the model is loaded and passed its smoke test."
        )
        ready.add_metric([], 1.0 if m.status == "ready" else 0.0)
        yield ready
        model = m.model
        if model is None:
            return
        info = GaugeMetricFamily(
            "perennial_model_info",
            "The served model (always 1).",
            labels=["model", "run", "sha256", "backend"],
        )
        info.add_metric([model.name, model.version, model.sha256, model.backend], 1)
        yield info
        load = GaugeMetricFamily(
            "perennial_model_load_seconds", "Time to verify, load and smoke-test the model."
        )
        load.add_metric([], model.load_seconds)
        yield load
        scores, prediction_psi = m.drift()
        rows = CounterMetricFamily("perennial_rows_predicted", "Rows predicted (all endpoints).")
        rows.add_metric([], m.rows_predicted)
        yield rows
        if m._class_counts is not None and model.classes is not None:
            classes = CounterMetricFamily(
                "perennial_predictions", "Predicted rows by class.", labels=["class"]
            )
            for label, count in zip(model.classes, m._class_counts.tolist(), strict=True):
                classes.add_metric([str(label)], count)
            yield classes
        elif m._value_edges is not None and m._value_buckets is not None:
            hist = HistogramMetricFamily(
                "perennial_prediction_value",
                "Predicted values; buckets are the training predictions' decile edges.",
            )
            cumulative = np.cumsum(m._value_buckets).tolist()
            edges = [repr(float(e)) for e in m._value_edges.tolist()] + ["+Inf"]
            buckets = list(zip(edges, cumulative, strict=True))
            hist.add_metric([], buckets, m._value_sum)
            yield hist
        samples = GaugeMetricFamily(
            "perennial_drift_window_rows", "Input rows currently in the drift window."
        )
        samples.add_metric([], m.drift_samples)
        yield samples
        drift = GaugeMetricFamily(
            "perennial_feature_drift_psi",
            f"PSI of each feature over the drift window vs the training reference "
            f"(reported from {MIN_DRIFT_SAMPLES} observations on).",
            labels=["feature"],
        )
        for name, score in scores.items():
            drift.add_metric([name], score)
        yield drift
        if prediction_psi is not None:
            pred = GaugeMetricFamily(
                "perennial_prediction_drift_psi",
                "PSI of the predictions over the drift window vs the training predictions.",
            )
            pred.add_metric([], prediction_psi)
            yield pred
        fb = CounterMetricFamily("perennial_feedback_rows", "Feedback rows scored.")
        fb.add_metric([], m.feedback_total)
        yield fb
        window = GaugeMetricFamily(
            "perennial_feedback_window_rows", "Feedback rows in the live-metric window."
        )
        window.add_metric([], m.feedback.filled)
        yield window
        live = m.feedback.mean()
        if live is not None:
            if model.is_classifier:
                gauge = GaugeMetricFamily(
                    "perennial_live_accuracy", "Accuracy over the feedback window."
                )
                gauge.add_metric([], live)
            else:
                gauge = GaugeMetricFamily("perennial_live_rmse", "RMSE over the feedback window.")
                gauge.add_metric([], math.sqrt(live))
            yield gauge
        earlier = m.earlier_models()
        if earlier:
            accuracy = GaugeMetricFamily(
                "perennial_earlier_model_live_accuracy",
                "Accuracy of an earlier model's predictions whose labels arrived here.",
                labels=["sha256"],
            )
            rmse = GaugeMetricFamily(
                "perennial_earlier_model_live_rmse",
                "RMSE of an earlier model's predictions whose labels arrived here.",
                labels=["sha256"],
            )
            for e in earlier:
                if e.live_accuracy is not None:
                    accuracy.add_metric([e.sha256_prefix], e.live_accuracy)
                if e.live_rmse is not None:
                    rmse.add_metric([e.sha256_prefix], e.live_rmse)
            yield accuracy
            yield rmse
