"""Seeded drifting labelled streams (numpy only; nothing is downloaded).

Five numeric features ``x ~ N(mean_t, I)`` and a binary label
``y = [w_t . x + noise > 0]``. The *concept* ``w_t = cos(a_t) u + sin(a_t) v`` turns in the
plane of two fixed orthonormal directions ``u, v`` (``a_t`` in degrees); the *inputs* move
by ``mean_t = s_t * p`` along a third direction ``p`` orthogonal to both (a covariate shift:
the rule is unchanged, but a RandomForest extrapolates poorly outside the region it was
trained on). Label noise: a Gaussian on the margin, so no model is perfect.

Window 0 is the first model's training data; windows 1.. are served and labelled. A
stream's ``changes`` are the windows where the world changes abruptly (the signal the
time-to-serve metric is measured from); gradual streams have none.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

FEATURES: tuple[str, ...] = ("f1", "f2", "f3", "f4", "f5")
TARGET = "label"
NOISE = 0.3  # standard deviation of the noise on the margin

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class World:
    """The state of the world in one window."""

    angle: float  # degrees: which concept labels the rows
    shift: float  # how far the inputs moved along the covariate direction


@dataclass(frozen=True)
class StreamSpec:
    name: str
    description: str
    world: Callable[[int, int], World]  # (window, windows) -> World
    changes: Callable[[int], tuple[int, ...]]  # windows -> abrupt changes
    label_delay: int = 0  # windows between a prediction and its label


@dataclass(frozen=True)
class Window:
    index: int
    x: FloatArray
    y: IntArray
    world: World


def _at(fraction: float, windows: int) -> int:
    return max(1, round(fraction * (windows - 1)))


def _gradual(t: int, n: int) -> World:
    return World(angle=150.0 * t / max(n - 1, 1), shift=0.0)


def _sudden(t: int, n: int) -> World:
    first, second = _at(0.3, n), _at(0.65, n)
    return World(angle=0.0 if t < first else (110.0 if t < second else 220.0), shift=0.0)


def _rotation_shifts(t: int, n: int) -> World:
    first, second = _at(0.3, n), _at(0.65, n)
    jumps = 100.0 * ((t >= first) + (t >= second))
    return World(angle=60.0 * t / max(n - 1, 1) + jumps, shift=0.0)


def _recurring(t: int, n: int) -> World:
    block = max(1, round((n - 1) / 4))
    return World(angle=0.0 if ((t - 1) // block) % 2 == 0 or t == 0 else 120.0, shift=0.0)


def _recurring_changes(n: int) -> tuple[int, ...]:
    return tuple(t for t in range(2, n) if _recurring(t, n) != _recurring(t - 1, n))


def _covariate(t: int, n: int) -> World:
    return World(angle=0.0, shift=3.0 * t / max(n - 1, 1))


def _covariate_concept(t: int, n: int) -> World:
    first, second = _at(0.3, n), _at(0.65, n)
    shift = 0.0 if t < first else 2.5
    return World(angle=0.0 if t < second else 120.0, shift=shift)


STREAMS: dict[str, StreamSpec] = {
    spec.name: spec
    for spec in (
        StreamSpec(
            "gradual",
            "the concept turns steadily, 150 degrees over the stream",
            _gradual,
            lambda n: (),
        ),
        StreamSpec(
            "sudden",
            "two sudden concept changes (0 -> 110 -> 220 degrees)",
            _sudden,
            lambda n: (_at(0.3, n), _at(0.65, n)),
        ),
        StreamSpec(
            "recurring",
            "concepts A and B (120 degrees apart) alternate in blocks",
            _recurring,
            _recurring_changes,
        ),
        StreamSpec(
            "covariate",
            "the inputs move away (3 sd), the concept stays: covariate shift only",
            _covariate,
            lambda n: (),
        ),
        StreamSpec(
            "covariate+concept",
            "the inputs jump (2.5 sd), later the concept changes too (120 degrees)",
            _covariate_concept,
            lambda n: (_at(0.3, n), _at(0.65, n)),
        ),
        StreamSpec(
            "rotation+shifts",
            "the concept turns steadily (60 degrees) and jumps twice (100 degrees each)",
            _rotation_shifts,
            lambda n: (_at(0.3, n), _at(0.65, n)),
        ),
        StreamSpec(
            "rotation+shifts, delay 2",
            "the same, labels arriving two windows after the predictions",
            _rotation_shifts,
            lambda n: (_at(0.3, n), _at(0.65, n)),
            label_delay=2,
        ),
    )
}


# What `make bench-ct` runs (the others are there for --streams).
DEFAULT_STREAMS: tuple[str, ...] = (
    "rotation+shifts",
    "recurring",
    "covariate+concept",
    "rotation+shifts, delay 2",
)


class DriftingStream:
    """The windows of one stream, reproducible from ``seed``."""

    def __init__(self, spec: StreamSpec, windows: int, rows: int, seed: int) -> None:
        if windows < 3:
            raise ValueError(f"a stream needs at least 3 windows, got {windows}")
        self.spec = spec
        self.windows = windows
        self.rows = rows
        self.seed = seed
        basis = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(FEATURES), 3)))[0]
        self.u, self.v, self.p = basis[:, 0], basis[:, 1], basis[:, 2]

    @property
    def changes(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.spec.changes(self.windows))))

    def world(self, index: int) -> World:
        return self.spec.world(index, self.windows)

    def window(self, index: int) -> Window:
        world = self.world(index)
        rng = np.random.default_rng([self.seed, index])
        x = rng.normal(size=(self.rows, len(FEATURES))) + world.shift * self.p
        angle = np.deg2rad(world.angle)
        w = np.cos(angle) * self.u + np.sin(angle) * self.v
        margin = x @ w + rng.normal(scale=NOISE, size=self.rows)
        y = (margin > 0).astype(np.int64)
        return Window(index=index, x=x, y=y, world=world)


def write_csv(window: Window, path: Path) -> None:
    """Replace ``path`` with the window's labelled rows in one step (no half-written file
    is ever read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join((*FEATURES, TARGET))]
    lines += [
        ",".join(f"{value:.5f}" for value in row) + f",{label}"
        for row, label in zip(window.x, window.y, strict=True)
    ]
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
