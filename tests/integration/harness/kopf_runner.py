"""Run a kopf operator in its own thread against the emulator, stop it, restart it.

kopf gets a thread with its own event loop (``kopf.run``), so the test's loop stays free to
serve the emulator; stopping sets kopf's ``stop_flag`` and joins the thread with
``asyncio.to_thread``. :meth:`OperatorRunner.start` returns once kopf has run its startup
handlers and opened a WATCH for every resource the test named: objects created after that
are seen, and (with the emulator's resourceVersion-aware watches) so are the ones created
between kopf's LIST and its WATCH.

Handlers live in the ``kopf.OperatorRegistry`` the test passes: a fresh registry per test
keeps one test's handlers out of another's operator. The runner adds one login handler to
that registry (id :data:`HARNESS_LOGIN_ID`, once per registry object) that connects to the
current emulator; nothing else in the registry is touched.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import kmock
import kopf

from .clients import DUMMY_TOKEN
from .deadlines import deadline
from .emulator import ApiServerEmulator
from .waiting import WaitTimeoutError, wait_for

__all__ = ["HARNESS_LOGIN_ID", "OperatorError", "OperatorRunner", "harness_settings"]

HARNESS_LOGIN_ID: Final = "perennial-test-harness-login"
# Expected in every run of kopf outside the main thread; not a problem of the operator.
_EXPECTED_WARNINGS: Final = ("OS signals are ignored: running not in the main thread.",)
# What kopf says when the harness stops it in the middle of work (a stop is a crash: the
# queues are not drained, running handlers are cancelled). Said during stop(), they are
# kept in OperatorRunner.stop_records, not reported as problems; said otherwise, they are.
_STOP_WARNINGS: Final = (
    re.compile(r"^Unprocessed streams left for "),
    re.compile(r"^Handler '[^']+' is cancelled\. Will escalate\.$"),
)


def _line(record: logging.LogRecord) -> str:
    return f"{record.levelname} {record.name}: {record.getMessage()}"


class OperatorError(RuntimeError):
    """kopf did not start, did not stop, or exited on its own."""


@dataclass
class _LoginTarget:
    server: str


_login_targets: weakref.WeakKeyDictionary[kopf.OperatorRegistry, _LoginTarget] = (
    weakref.WeakKeyDictionary()
)


def _login_to_emulator(registry: kopf.OperatorRegistry, server: str) -> None:
    target = _login_targets.get(registry)
    if target is None:
        target = _LoginTarget(server)
        bound = target

        async def login_to_emulator(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(
                server=bound.server,
                scheme="Bearer",
                token=DUMMY_TOKEN,
                insecure=True,
                default_namespace="default",
                priority=1_000_000,  # above any login handler of the operator itself
            )

        kopf.on.login(registry=registry, id=HARNESS_LOGIN_ID)(login_to_emulator)
        _login_targets[registry] = target
    target.server = server


def harness_settings() -> kopf.OperatorSettings:
    """kopf settings for a test run (the operator's startup handlers may change them)."""
    settings = kopf.OperatorSettings()
    # kopf SIGKILLs its own thread when it exits without the stop flag and does not finish
    # in time; in a test process that would kill pytest.
    settings.process.ultimate_exiting_timeout = None
    # A stop gives in-flight handlers this long before cancelling them: short, so a stop in
    # the middle of a handler behaves like a crash (the handler's outcome is not stored).
    settings.queueing.exit_timeout = 0.2
    return settings


class _ProblemCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class _Run:
    thread: threading.Thread
    stop_flag: threading.Event = field(default_factory=threading.Event)
    ready_flag: threading.Event = field(default_factory=threading.Event)
    settings: kopf.OperatorSettings = field(default_factory=harness_settings)
    error: BaseException | None = None


@dataclass
class _StartArgs:
    registry: kopf.OperatorRegistry
    watching: tuple[kmock.resource, ...]
    configure: Callable[[kopf.OperatorSettings], None] | None
    namespaces: tuple[str, ...]
    memo: object | None


class OperatorRunner:
    """Starts/stops/restarts one kopf operator at a time against one emulator."""

    def __init__(self, emulator: ApiServerEmulator) -> None:
        self._emulator = emulator
        self._run: _Run | None = None
        self._args: _StartArgs | None = None
        self._collector = _ProblemCollector()
        logging.getLogger("kopf").addHandler(self._collector)
        self.starts = 0
        # kopf's warnings about work cut short by stop() (see _STOP_WARNINGS).
        self.stop_records: list[logging.LogRecord] = []
        self._expected: list[str] = []

    def expect_problem(self, fragment: str) -> None:
        """A test that provokes a failure: kopf messages containing ``fragment`` are not
        problems."""
        self._expected.append(fragment)

    @property
    def running(self) -> bool:
        return self._run is not None and self._run.thread.is_alive()

    async def start(
        self,
        *,
        registry: kopf.OperatorRegistry,
        watching: Iterable[str],
        configure: Callable[[kopf.OperatorSettings], None] | None = None,
        namespaces: Sequence[str] = (),
        memo: object | None = None,
    ) -> None:
        """Start kopf with ``registry``; return when it watches every resource in
        ``watching`` (``"group/version/plural"``, e.g. ``"batch/v1/jobs"``).

        ``configure`` adjusts the :func:`harness_settings` before kopf starts. Without
        ``namespaces`` kopf serves the whole cluster (``clusterwide=True``); with them, only
        those, with ``settings.scanning.disabled`` (kopf would list namespaces otherwise,
        which the emulator cannot serve; namespace patterns are not supported either).
        """
        if self._run is not None:
            raise OperatorError("the operator is already running: stop() or restart() it")
        if not watching:
            raise ValueError(
                "watching: name at least one resource the operator watches (e.g. "
                "'perennial.dev/v1alpha1/trainingruns'); start() returns once kopf watches them"
            )
        self._args = _StartArgs(
            registry=registry,
            watching=tuple(kmock.resource(name) for name in watching),
            configure=configure,
            namespaces=tuple(namespaces),
            memo=memo,
        )
        await self._start(self._args)

    async def _start(self, args: _StartArgs) -> None:
        _login_to_emulator(args.registry, self._emulator.base_url)
        run = _Run(thread=threading.Thread())  # replaced below, once the flags exist
        if args.namespaces:
            # kopf would list /api/v1/namespaces to resolve them, which kmock cannot serve.
            run.settings.scanning.disabled = True
        if args.configure is not None:
            args.configure(run.settings)
        kwargs: dict[str, Any] = {
            "registry": args.registry,
            "settings": run.settings,
            "standalone": True,
            "clusterwide": not args.namespaces,
            "namespaces": list(args.namespaces),
            "stop_flag": run.stop_flag,
            "ready_flag": run.ready_flag,
            "memo": args.memo if args.memo is not None else kopf.Memo(),
        }
        self.starts += 1
        run.thread = threading.Thread(
            target=self._main, args=(run, kwargs), name=f"kopf-{self.starts}", daemon=True
        )
        # The requests already kept (an old operator's watches may still be in flight):
        # by identity, not by count - the emulator forgets answered requests, so a count
        # taken now may exceed the list later and hide the new watches.
        before = list(self._emulator)  # held: their ids stay unique while we compare
        seen = {id(r) for r in before}
        self._run = run
        run.thread.start()

        def started() -> bool:
            if run.error is not None or not run.thread.is_alive():
                raise OperatorError(f"kopf exited while starting: {run.error!r}") from run.error
            return run.ready_flag.is_set() and not missing()

        def missing() -> list[str]:
            requests = [r for r in self._emulator if id(r) not in seen]
            watched = {r.resource for r in requests if r.action == kmock.action.WATCH}
            return [str(res.plural) for res in args.watching if res not in watched]

        try:
            await wait_for(started, interval=0.01, what="kopf ready and watching")
        except OperatorError:
            self._run = None
            raise
        except WaitTimeoutError:
            await self.stop()
            raise OperatorError(
                f"kopf did not start watching {missing()} within {deadline():g} s (ready: "
                f"{run.ready_flag.is_set()}); are the resources declared in the emulator and "
                "handled by the registry?"
            ) from None

    @staticmethod
    def _main(run: _Run, kwargs: dict[str, Any]) -> None:
        try:
            kopf.run(**kwargs)
        except BaseException as exc:  # reported by start()/stop() in the test's thread
            run.error = exc

    async def stop(self) -> None:
        """Stop kopf and join its thread; handlers still running are cancelled (after
        ``settings.queueing.exit_timeout``), as in a crash. Raises if kopf had crashed, or
        if it does not stop within the deadline."""
        run, self._run = self._run, None
        if run is None:
            return
        first_record = len(self._collector.records)
        run.stop_flag.set()
        limit = deadline()
        await asyncio.to_thread(run.thread.join, limit)
        self._set_aside_stop_noise(first_record)
        if run.thread.is_alive():
            raise OperatorError(f"kopf did not stop within {limit:g} s")
        run.settings.execution.executor.shutdown(wait=False, cancel_futures=True)
        if run.error is not None:
            raise OperatorError(f"kopf failed: {run.error!r}") from run.error

    def _set_aside_stop_noise(self, first_record: int) -> None:
        records = self._collector.records
        during_stop = records[first_record:]
        noise = [r for r in during_stop if any(p.match(r.getMessage()) for p in _STOP_WARNINGS)]
        self.stop_records.extend(noise)
        records[first_record:] = [r for r in during_stop if r not in noise]

    async def restart(self) -> None:
        """Stop, then start again with the same arguments (an operator pod restart)."""
        if self._args is None:
            raise OperatorError("restart() before start()")
        await self.stop()
        await self._start(self._args)

    def problems(self) -> list[str]:
        """kopf's warnings and errors so far (``level logger: message``), in order; without
        what it said about work cut short by :meth:`stop` (:meth:`stop_messages`)."""
        return [
            _line(record)
            for record in self._collector.records
            if record.getMessage() not in _EXPECTED_WARNINGS
            and not any(fragment in record.getMessage() for fragment in self._expected)
        ]

    def stop_messages(self) -> list[str]:
        """What kopf said, during :meth:`stop`, about work the stop cut short."""
        return [_line(record) for record in self.stop_records]

    async def close(self) -> None:
        """Stop the operator (if running) and detach the log collector."""
        try:
            await self.stop()
        finally:
            logging.getLogger("kopf").removeHandler(self._collector)
