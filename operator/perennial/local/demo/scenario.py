"""``make demo``: the continuous-training story, end to end, on this machine.

1. v1 is trained on the first window of data, passes the gates and serves; a traffic
   generator sends requests and the ground truth as feedback.
2. The stream drifts and a new labelled window lands: the served model's drift score and
   live accuracy show it; the drift / decay / new-data triggers start a retrain; v2 must
   beat v1 on the same holdout; v2 rolls out; live accuracy recovers.
3. A candidate trained on corrupted labels is rejected by the gates; the champion keeps
   serving.
4. The stream shifts again; the new model is blessed but its artifact is tampered with
   after blessing (its recorded sample predictions no longer match), so its server fails
   the smoke test: it is rolled back automatically, and no request fails meanwhile.
5. After the triggers' cool-down the next retrain is blessed, rolls out, and live accuracy
   recovers.

Everything runs through :class:`perennial.local.runner.Runner` (the operator's core
decisions, local processes) on a clock that runs ``speed`` times faster than the wall
clock, so minutes of cool-downs and poll intervals pass in seconds. At the end: a summary
(runs, triggers, gate verdicts, rollouts, rollbacks, live accuracy per phase), a PNG plot,
and the list of expected outcomes; any one missing makes the demo fail.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from perennial.api.constants import MODEL_DEPLOYMENT, TRAINING_RUN
from perennial.core.naming import run_name
from perennial.local.clock import ScaledClock
from perennial.local.demo import manifests, report
from perennial.local.demo.report import Check, TimedEvent
from perennial.local.demo.stream import FEATURES, DriftingStream, publish
from perennial.local.demo.traffic import Totals, TrafficGenerator
from perennial.local.demo.view import BOLD, GREEN, RED, YELLOW, LiveView
from perennial.local.runner import Runner
from perennial.local.store import Event

MARKER = ".made-by-perennial-demo"
RETRAIN_TRIGGERS = frozenset({"Drift", "PerformanceDecay", "DataChange"})


class DemoError(RuntimeError):
    """An expected step did not happen in time."""


@dataclass(frozen=True)
class DemoSettings:
    workdir: Path = Path(".demo")
    speed: float = 60.0  # seconds of the demo's clock per real second
    tick_seconds: float = 0.25  # real seconds between two passes of the runner
    window_rows: int = 1500  # rows of each labelled data window
    batch_rows: int = 25
    rate: float = 20.0  # batches per real second
    observe_rows: int = 1500  # traffic rows watched in each steady phase
    burst_rows: int = 300  # shifted rows sent before the runner looks again
    phase_timeout: float = 180.0  # real seconds any one wait may take
    port: int = 8765  # the stable endpoint (0: any free port)
    plot: bool = True
    rules: manifests.DemoRules = field(default_factory=manifests.DemoRules)

    @classmethod
    def quick(cls, workdir: Path) -> DemoSettings:
        """A shorter stream for the test suite (same story, fewer rows)."""
        return cls(
            workdir=workdir,
            window_rows=800,
            observe_rows=400,
            burst_rows=250,
            rate=25.0,
            port=0,
            phase_timeout=90.0,
        )


@dataclass(frozen=True)
class MonitorSample:
    time: float
    phase: str
    serving: str | None
    max_drift: float | None
    live_accuracy: float | None
    feedback: int


@dataclass
class DemoResult:
    checks: list[Check]
    summary: str
    workdir: Path
    plot: Path | None
    failure: str | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    events: list[TimedEvent] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.failure is None and all(c.passed for c in self.checks)


class Demo:
    def __init__(self, settings: DemoSettings, out: TextIO | None = None) -> None:
        self.s = settings
        self.view = LiveView(out)
        self.workdir = settings.workdir.resolve()
        self.data = self.workdir / "data" / manifests.DATA_FILE
        self.manifest = self.workdir / "manifests" / "stream.yaml"
        self.clock = ScaledClock(speed=settings.speed)
        self.stream = DriftingStream()
        self.events: list[TimedEvent] = []
        self.monitor: list[MonitorSample] = []
        self.phase = "starting"
        self.tamper_run: str | None = None
        self.tampered: str | None = None
        self.runner: Runner | None = None
        self.traffic: TrafficGenerator | None = None
        self.facts: dict[str, Any] = {}
        self.jumps: list[tuple[float, float]] = []

    # --- time and state ------------------------------------------------------------------

    def elapsed(self) -> float:
        return self.clock.elapsed_seconds()

    def label(self, seconds: float | None = None) -> str:
        value = self.elapsed() if seconds is None else seconds
        return f"[+{value / 60:5.1f} min]"

    @property
    def r(self) -> Runner:
        assert self.runner is not None
        return self.runner

    def md(self) -> dict[str, Any]:
        return self.r.store.get(MODEL_DEPLOYMENT, "default", manifests.DEPLOYMENT) or {}

    def md_status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.md().get("status") or {}
        return status

    def serving(self) -> str | None:
        current = self.md_status().get("currentModel") or {}
        run = current.get("run")
        return str(run) if run else None

    def run(self, sequence: int) -> dict[str, Any] | None:
        return self.r.store.get(TRAINING_RUN, "default", run_name(manifests.PIPELINE, sequence))

    def run_phase(self, sequence: int) -> str | None:
        body = self.run(sequence)
        return ((body or {}).get("status") or {}).get("phase")

    def run_finished(self, sequence: int) -> bool:
        return self.run_phase(sequence) in ("Succeeded", "Rejected", "Failed")

    # --- the loop ------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        target = None
        if event.kind == "ModelDeployment":
            status = self.md_status()
            if event.reason in ("RolloutStarted", "ManualRollback"):
                target = (status.get("rollout") or {}).get("toRun")
            elif event.reason in ("RolloutSucceeded", "RolledBack"):
                target = (status.get("lastRollout") or {}).get("toRun")
        timed = TimedEvent(
            time=self.elapsed(),
            kind=event.kind,
            name=event.name,
            reason=event.reason,
            message=event.message,
            type=event.type,
            target=target,
        )
        self.events.append(timed)
        if event.reason in QUIET_EVENTS:
            return
        kind = {"TrainingRun": "tr", "TrainingPipeline": "tp", "ModelDeployment": "md"}
        text = f"{kind.get(event.kind, event.kind)}/{event.name} {event.reason}: {event.message}"
        self.view.event(self.label(timed.time), _shorten(text, 150), event.type == "Warning")
        if (
            event.kind == "TrainingRun"
            and event.reason == "ModelBlessed"
            and event.name == self.tamper_run
        ):
            self._tamper(event.name)

    def _tamper(self, run: str) -> None:
        """Fault injection: break the blessed model's smoke test (see :func:`break_smoke_test`)."""
        body = self.r.store.get(TRAINING_RUN, "default", run) or {}
        folder = ((body.get("status") or {}).get("artifact") or {}).get("uri", "")
        break_smoke_test(Path(str(folder).removeprefix("file://")))
        self.tampered = run
        self.view.note(
            self.view.paint(
                f"chaos: {run}'s metadata.json altered after blessing (its sample "
                "predictions no longer match the model)",
                YELLOW,
            )
        )

    def _observe(self) -> None:
        status = self.md_status()
        monitoring = status.get("monitoring") or {}
        self.monitor.append(
            MonitorSample(
                time=self.elapsed(),
                phase=self.phase,
                serving=self.serving(),
                max_drift=monitoring.get("maxDriftScore"),
                live_accuracy=monitoring.get("liveAccuracy"),
                feedback=int(monitoring.get("feedbackSamples") or 0),
            )
        )

    def _render(self) -> None:
        status = self.md_status()
        monitoring = status.get("monitoring") or {}
        serving = self.serving() or "nothing yet"
        acc, base = self._recent_accuracy()
        runs = []
        for body in self.r.store.list_objects(TRAINING_RUN, "default"):
            phase = (body.get("status") or {}).get("phase") or "Pending"
            if phase in ("Pending", "Training", "Evaluating"):
                trigger = (body.get("spec") or {}).get("trigger", {}).get("type", "")
                runs.append(f"{body['metadata']['name']} {phase} ({trigger})")
        totals = self.traffic.totals() if self.traffic else None
        drift = monitoring.get("maxDriftScore")
        live = monitoring.get("liveAccuracy")
        lines = [
            f"{self.label()} {self.phase}",
            f"serving {serving} ({status.get('phase') or 'Waiting'}) at "
            f"{self.r.endpoint_url(manifests.DEPLOYMENT) or '-'}",
            "live accuracy "
            + ("-" if acc is None else f"{acc:.2f}")
            + " (never retrained: "
            + ("-" if base is None else f"{base:.2f}")
            + "); server: drift PSI "
            + ("-" if drift is None else f"{drift:.2f}")
            + ", live accuracy "
            + ("-" if live is None else f"{live:.2f}"),
            "training: " + (", ".join(runs) if runs else "idle"),
            (
                f"requests {totals.requests}, failed {totals.failed}"
                if totals
                else "traffic: not started"
            ),
        ]
        key = f"{self.phase}|{serving}|{','.join(runs)}|{status.get('phase')}"
        self.view.status(["  " + line for line in lines], key)

    def _recent_accuracy(self, rows: int = 200) -> tuple[float | None, float | None]:
        if self.traffic is None:
            return None, None
        recent = [r for r in self.traffic.records()[-(rows // self.s.batch_rows + 1) :]]
        answered = [r for r in recent if r.run is not None]
        n = sum(r.rows for r in answered)
        b = [r for r in recent if r.baseline_correct is not None]
        nb = sum(r.rows for r in b)
        acc = sum(r.correct for r in answered) / n if n else None
        base = sum(r.baseline_correct or 0 for r in b) / nb if nb else None
        return acc, base

    def step(self, *, tick: bool = True) -> None:
        if tick:
            self.r.tick()
        self._observe()
        self._render()
        time.sleep(self.s.tick_seconds)

    def wait(self, what: str, done: Callable[[], bool], *, tick: bool = True) -> None:
        deadline = time.monotonic() + self.s.phase_timeout
        while not done():
            if time.monotonic() > deadline:
                raise DemoError(f"timed out after {self.s.phase_timeout:.0f}s waiting for {what}")
            self.step(tick=tick)

    def observe_rows(self, rows: int, *, tick: bool = True) -> None:
        assert self.traffic is not None
        since = self.traffic.elapsed()
        self.wait(
            f"{rows} rows of traffic",
            lambda: self.traffic is not None and self.traffic.rows_since(since) >= rows,
            tick=tick,
        )

    def jump(self, seconds: float, why: str) -> None:
        """Move the demo's clock ahead (the wait a real deployment would sit through)."""
        before = self.elapsed()
        self.clock.jump(seconds)
        self.jumps.append((before, self.elapsed()))
        self.view.note(f"the clock jumps {seconds / 60:.0f} min ahead ({why})")

    def set_phase(self, name: str) -> None:
        self.phase = name
        if self.traffic is not None:
            self.traffic.phase = name

    # --- the story -----------------------------------------------------------------------

    def prepare(self) -> None:
        if self.workdir.exists():
            if not (self.workdir / MARKER).exists() and any(self.workdir.iterdir()):
                raise DemoError(
                    f"{self.workdir} exists and was not made by the demo; pass another --workdir"
                )
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        (self.workdir / MARKER).write_text("made by perennial demo; deleted by the next run\n")
        publish(self.stream.window(self.s.window_rows, "A"), self.data)
        manifests.write(self.manifest, self.data, self.s.rules)

    def start(self) -> None:
        self.runner = Runner(
            [self.manifest],
            self.workdir / "state",
            clock=self.clock,
            port=self.s.port,
            listeners=[self._on_event],
            server_env={"PERENNIAL_FEEDBACK_WINDOW": str(self.s.rules.drift_window)},
        )
        self.runner.start()

    def chapter_1(self) -> None:
        self.view.heading("1. Train v1 on the first window of data; it passes the gates and serves")
        self.set_phase("1 v1 serves")
        self.view.note(f"data: {self.data} ({self.s.window_rows} labelled rows, regime A)")
        self.view.note(f"manifests: {self.manifest}")
        v1 = run_name(manifests.PIPELINE, 1)
        self.wait(f"{v1} to serve", lambda: self.serving() == v1)
        url = self.r.endpoint_url(manifests.DEPLOYMENT)
        assert url is not None
        self.view.note(f"stable endpoint: {url}  (POST /predict, POST /feedback, /v2/...)")
        self.traffic = TrafficGenerator(
            url, self.stream, self.clock, batch_rows=self.s.batch_rows, rate=self.s.rate
        )
        self.traffic.start_time = self.clock.start
        self.traffic.baseline = self._baseline(v1)
        self.traffic.phase = self.phase
        self.traffic.start()
        self.view.note("traffic: requests to /predict, then the true labels to /feedback")
        self.observe_rows(self.s.observe_rows)

    def _baseline(self, run: str) -> Callable[[Any], Any]:
        """The first model in memory: what a never-retrained deployment would answer."""
        import pandas as pd

        from perennial_runtime import artifacts
        from perennial_runtime.training.preprocessing import coerce_features

        body = self.run(int(run.rsplit("-", 1)[1])) or {}
        artifact = (body.get("status") or {}).get("artifact") or {}
        model = artifacts.load_model(
            artifacts.fetch_verified(artifact["modelUri"], artifact["sha256"])
        )
        meta = artifacts.read_metadata(artifact["uri"])

        def predict(x: Any) -> Any:
            frame = coerce_features(pd.DataFrame(x, columns=list(FEATURES)), meta.features)
            return model.predict(frame)

        return predict

    def _shift(self, regime: str, data_rows: int, *, jump: float, why: str) -> None:
        """Shift the traffic, let the server see a window of it, drop new data, move on."""
        assert self.traffic is not None
        since = self.traffic.elapsed()
        self.stream.set_regime(regime)
        self.wait(
            f"{self.s.burst_rows} rows of regime {regime}",
            lambda: (
                self.traffic is not None and self.traffic.rows_since(since) >= self.s.burst_rows
            ),
            tick=False,
        )
        publish(self.stream.window(data_rows, regime), self.data)
        self.jump(jump, why)

    def chapter_2(self) -> None:
        rules = self.s.rules
        self.view.heading(
            "2. The stream drifts; a new labelled window lands; drift, decay and new-data "
            "rules retrain"
        )
        self.set_phase("2 drift, v1 serves")
        self.view.note("traffic shifts to regime B (inputs move, the labelling rule changes)")
        self._shift(
            "B",
            self.s.window_rows,
            jump=max(rules.poll_seconds, rules.scrape_seconds) * 2,
            why="the next data poll and scrape",
        )
        self.view.note(
            f"new data: {self.s.window_rows} labelled rows of regime B in {self.data.name}"
        )
        v2 = run_name(manifests.PIPELINE, 2)
        self.wait(f"{v2} to start", lambda: self.run(2) is not None)
        self.wait(f"{v2} to finish", lambda: self.run_finished(2))
        self.wait(
            f"{v2} to serve", lambda: self.serving() == v2 or self.run_phase(2) != "Succeeded"
        )
        if self.serving() != v2:
            raise DemoError(f"{v2} was not blessed: {self.run_phase(2)}")
        self.set_phase("2 v2 serves")
        self.observe_rows(self.s.observe_rows)

    def chapter_3(self) -> None:
        rules = self.s.rules
        self.view.heading("3. A bad candidate: trained on corrupted labels, rejected by the gates")
        self.set_phase("3 bad candidate, v2 serves")
        publish(self.stream.window(self.s.window_rows, "B", corrupt=0.45), self.data)
        self.view.note("new data with a labelling bug: 45% of the labels flipped")
        self.jump(rules.poll_seconds * 2, "the next data poll")
        v3 = run_name(manifests.PIPELINE, 3)
        self.wait(f"{v3} to finish", lambda: self.run_finished(3))
        self.facts["serving_after_rejection"] = self.serving()
        self.observe_rows(self.s.observe_rows // 2)

    def chapter_4(self) -> None:
        rules = self.s.rules
        self.view.heading(
            "4. The stream shifts again; the new model is blessed but broken: rolled back"
        )
        self.set_phase("4 shift again, v2 serves")
        v4 = run_name(manifests.PIPELINE, 4)
        self.tamper_run = v4
        self.view.note("traffic shifts to regime C; a new labelled window of regime C lands")
        self._shift(
            "C",
            self.s.window_rows,
            jump=rules.cooldown_seconds + 60,
            why="past the drift and decay cool-downs",
        )
        self.wait(f"{v4} to finish", lambda: self.run_finished(4))

        def rolled_back() -> bool:
            last = self.md_status().get("lastRollout") or {}
            return last.get("toRun") == v4 and last.get("result") in ("RolledBack", "Succeeded")

        self.wait(f"the rollout of {v4} to end", rolled_back)
        self.facts["serving_after_rollback"] = self.serving()
        self.set_phase("4 v4 rolled back, v2 serves")
        self.observe_rows(self.s.observe_rows // 2)

    def chapter_5(self) -> None:
        rules = self.s.rules
        self.view.heading("5. After the cool-down the next retrain is blessed, serves, recovers")
        self.jump(rules.cooldown_seconds, "the drift and decay cool-downs")
        v5 = run_name(manifests.PIPELINE, 5)
        self.wait(f"{v5} to finish", lambda: self.run_finished(5))
        self.wait(
            f"{v5} to serve", lambda: self.serving() == v5 or self.run_phase(5) != "Succeeded"
        )
        if self.serving() != v5:
            raise DemoError(f"{v5} was not served: {self.run_phase(5)}")
        self.set_phase("5 v5 serves")
        self.observe_rows(self.s.observe_rows)

    # --- the end -------------------------------------------------------------------------

    def run_story(self) -> DemoResult:
        failure: str | None = None
        self.view.line(
            self.view.paint("Perennial local demo: continuous training, no cluster", BOLD)
        )
        self.view.note(f"clock: {self.s.speed:.0f}x real time; work dir: {self.workdir}")
        logger = logging.getLogger("perennial")
        handler: logging.Handler | None = None
        saved = (logger.level, logger.propagate)
        try:
            self.prepare()
            # The runner's log goes to a file: the terminal shows the story.
            handler = logging.FileHandler(self.workdir / "runner.log", encoding="utf-8")
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False
            self.start()
            for chapter in (
                self.chapter_1,
                self.chapter_2,
                self.chapter_3,
                self.chapter_4,
                self.chapter_5,
            ):
                chapter()
        except DemoError as exc:
            failure = str(exc)
            self.view.line(self.view.paint(f"DEMO FAILED: {failure}", RED, BOLD))
        except KeyboardInterrupt:
            failure = "interrupted"
        finally:
            if self.traffic is not None:
                self.traffic.stop()
            runs = self.r.store.list_objects(TRAINING_RUN, "default") if self.runner else []
            if self.runner is not None:
                self.runner.close()
            if handler is not None:
                logger.removeHandler(handler)
                handler.close()
            logger.setLevel(saved[0])
            logger.propagate = saved[1]
        return self._finish(runs, failure)

    def _finish(self, runs: list[dict[str, Any]], failure: str | None) -> DemoResult:
        records = self.traffic.records() if self.traffic else []
        totals = self.traffic.totals() if self.traffic else Totals(0, 0, 0, 0)
        served = {e.target for e in self.events if e.reason == "RolloutSucceeded" and e.target}
        run_rows = report.run_rows(runs, served)
        rollout_list = report.rollouts(self.events, records)
        phases = report.phase_stats(records)
        plot_path: Path | None = None
        if self.s.plot and records:
            from perennial.local.demo.plot import draw

            plot_path = draw(
                self.workdir / "demo.png",
                records=records,
                events=self.events,
                runs=run_rows,
                phases=phases,
                jumps=self.jumps,
            )
        checks = expected_outcomes(
            runs=runs,
            monitor=self.monitor,
            phases=phases,
            rollout_list=rollout_list,
            totals=totals,
            facts=self.facts,
            rules=self.s.rules,
            plot=plot_path,
        )
        if failure is not None:
            checks.append(Check("the story ran to its end", False, failure))
        summary = report.render(
            runs=run_rows, rollout_list=rollout_list, phases=phases, totals=totals, checks=checks
        )
        ours = (self.workdir / MARKER).exists()  # never write into someone else's folder
        if ours:
            (self.workdir / "summary.txt").write_text(summary + "\n", encoding="utf-8")
            (self.workdir / "summary.json").write_text(
                report.to_json(
                    runs=run_rows,
                    rollout_list=rollout_list,
                    phases=phases,
                    totals=totals,
                    checks=checks,
                ),
                encoding="utf-8",
            )
        self.view.heading("Summary")
        for line in summary.splitlines():
            colour = GREEN if "[PASS]" in line else RED if "[FAIL]" in line else ""
            self.view.line(self.view.paint(line, colour) if colour else line)
        self.view.line()
        if plot_path is not None:
            self.view.line(f"plot: {plot_path}")
        if ours:
            self.view.line(f"summary: {self.workdir / 'summary.txt'}")
            state = self.workdir / "state"
            self.view.line(f"objects as kubectl would show them: {state / 'objects'}")
            self.view.line(f"events: {state / 'events.jsonl'}")
            self.view.line(f"runner log: {self.workdir / 'runner.log'}")
        self.view.close()
        return DemoResult(
            checks=checks,
            summary=summary,
            workdir=self.workdir,
            plot=plot_path,
            failure=failure,
            runs=runs,
            events=list(self.events),
        )


QUIET_EVENTS = frozenset({"GatePassed", "GateSkipped", "JobCreated", "TrainingCompleted"})


def break_smoke_test(artifact_folder: Path) -> None:
    """Alter a blessed model's recorded sample predictions (the model file itself stays
    intact): its server's smoke test fails, so it never becomes ready, as a broken build
    would."""
    path = artifact_folder / "metadata.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    classes = meta.get("classes") or [0, 1]
    sample = meta["sample"]
    sample["predictions"] = [
        classes[(classes.index(p) + 1) % len(classes)] if p in classes else p
        for p in sample["predictions"]
    ]
    path.write_text(json.dumps(meta, indent=2), encoding="utf-8")


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else str(value)


def _num(stat: report.PhaseStat | None) -> str:
    return "-" if stat is None or stat.accuracy is None else f"{stat.accuracy:.3f}"


def _run(runs: list[dict[str, Any]], sequence: int) -> dict[str, Any]:
    name = run_name(manifests.PIPELINE, sequence)
    return next((r for r in runs if r["metadata"]["name"] == name), {})


def expected_outcomes(
    *,
    runs: list[dict[str, Any]],
    monitor: list[MonitorSample],
    phases: list[report.PhaseStat],
    rollout_list: list[report.Rollout],
    totals: Totals,
    facts: dict[str, Any],
    rules: manifests.DemoRules,
    plot: Path | None,
) -> list[Check]:
    """Every outcome the story promises, checked against what was recorded."""
    checks: list[Check] = []

    def status(sequence: int) -> dict[str, Any]:
        out: dict[str, Any] = _run(runs, sequence).get("status") or {}
        return out

    def trigger(sequence: int) -> dict[str, Any]:
        out: dict[str, Any] = (_run(runs, sequence).get("spec") or {}).get("trigger") or {}
        return out

    def phase(name: str) -> report.PhaseStat | None:
        return next((p for p in phases if p.phase == name), None)

    def served(run: int) -> bool:
        target = run_name(manifests.PIPELINE, run)
        return any(r.target == target and r.result == "Succeeded" for r in rollout_list)

    v = {i: run_name(manifests.PIPELINE, i) for i in range(1, 6)}
    checks.append(
        Check(
            "v1 trained, blessed and served",
            status(1).get("phase") == "Succeeded"
            and trigger(1).get("type") == "Initial"
            and served(1),
            f"{v[1]}: {status(1).get('phase')}, trigger {trigger(1).get('type')}",
        )
    )
    drifted = [m for m in monitor if m.phase == "2 drift, v1 serves" and m.serving == v[1]]
    max_drift = max((m.max_drift for m in drifted if m.max_drift is not None), default=None)
    min_live = min((m.live_accuracy for m in drifted if m.live_accuracy is not None), default=None)
    checks.append(
        Check(
            "the drift shows in the served model's monitoring",
            max_drift is not None
            and max_drift >= rules.drift_threshold
            and min_live is not None
            and min_live < rules.decay_threshold,
            f"max drift PSI {max_drift if max_drift is None else round(max_drift, 3)}, "
            f"lowest live accuracy {min_live if min_live is None else round(min_live, 3)}",
        )
    )
    kind = trigger(2).get("type")
    checks.append(
        Check(
            "the retrain was started by the drift/decay/new-data rules",
            kind in RETRAIN_TRIGGERS,
            f"{v[2]}: {kind}: {trigger(2).get('reason', '')[:160]}",
        )
    )
    primary = status(2).get("primaryMetric") or {}
    candidate, champion = primary.get("candidate"), primary.get("champion")
    checks.append(
        Check(
            "v2 beat v1 on the same holdout",
            status(2).get("phase") == "Succeeded"
            and candidate is not None
            and champion is not None
            and candidate > champion
            and bool(status(2).get("holdoutSha256")),
            f"accuracy {_fmt(candidate)} vs champion {v[1]} {_fmt(champion)} on holdout "
            f"{str(status(2).get('holdoutSha256', ''))[:12]}",
        )
    )
    checks.append(
        Check("v2 rolled out", served(2), f"rollouts: {[r.target for r in rollout_list]}")
    )
    before, after = phase("2 drift, v1 serves"), phase("2 v2 serves")
    recovered = (
        before is not None
        and after is not None
        and before.accuracy is not None
        and after.accuracy is not None
        and after.accuracy >= before.accuracy + 0.15
        and after.accuracy >= rules.decay_threshold
    )
    checks.append(
        Check(
            "live accuracy recovered after v2",
            recovered,
            f"{_num(before)} during the drift -> {_num(after)} with v2",
        )
    )
    failed_gates = [g["name"] for g in status(3).get("gates") or [] if not g.get("passed")]
    checks.append(
        Check(
            "the candidate trained on corrupted labels was rejected by the gates",
            status(3).get("phase") == "Rejected"
            and bool(failed_gates)
            and facts.get("serving_after_rejection") == v[2]
            and not any(r.target == v[3] for r in rollout_list),
            f"{v[3]}: {status(3).get('phase')}, failed gates {failed_gates}; serving "
            f"{facts.get('serving_after_rejection')}",
        )
    )
    rolled = [r for r in rollout_list if r.target == v[4]]
    checks.append(
        Check(
            "the broken model was blessed, rolled out and rolled back automatically",
            status(4).get("phase") == "Succeeded"
            and bool(rolled)
            and rolled[-1].result == "RolledBack"
            and facts.get("serving_after_rollback") == v[2],
            f"{v[4]}: {status(4).get('phase')}, rollout "
            f"{rolled[-1].result if rolled else 'never started'}; serving "
            f"{facts.get('serving_after_rollback')}",
        )
    )
    watched = [r for r in rollout_list if r.ended is not None and r.requests > 0]
    checks.append(
        Check(
            "no request failed during any rollout or rollback",
            len(watched) >= 3 and all(r.failed == 0 for r in watched),
            "; ".join(f"{r.target} {r.result}: {r.failed}/{r.requests} failed" for r in watched)
            or "no rollout saw traffic",
        )
    )
    checks.append(
        Check(
            "no request failed at all",
            totals.requests > 0 and totals.failed == 0,
            f"{totals.failed} of {totals.requests} requests failed",
        )
    )
    last = phase("5 v5 serves")
    shifted = phase("4 v4 rolled back, v2 serves") or phase("4 shift again, v2 serves")
    checks.append(
        Check(
            "after the cool-down a new model serves and live accuracy recovers",
            served(5)
            and last is not None
            and last.accuracy is not None
            and shifted is not None
            and shifted.accuracy is not None
            and last.accuracy >= max(shifted.accuracy + 0.15, rules.decay_threshold),
            f"{v[5]} served: {served(5)}; accuracy {_num(shifted)} -> {_num(last)}",
        )
    )
    checks.append(
        Check(
            "the plot was written",
            plot is not None and plot.exists() and plot.stat().st_size > 0,
            str(plot),
        )
    )
    return checks


def run_demo(settings: DemoSettings, out: TextIO | None = None) -> DemoResult:
    return Demo(settings, out).run_story()


def with_workdir(settings: DemoSettings, workdir: Path) -> DemoSettings:
    return replace(settings, workdir=workdir)
