"""How long a test waits for a condition before it fails: one deadline, one factor.

Every wait of the tests (the integration harness's ``wait_for``, the blocking
:func:`~testsupport.waiting.wait_until` of the runtime and local runner tests) is a wait for
a condition; it returns as soon as the condition holds, so a generous deadline costs nothing
on a quiet machine and keeps a busy one (CI, other work on the same cores) from failing a
correct test.
The deadline is :data:`DEADLINE_SECONDS` times ``$PERENNIAL_TEST_TIMEOUT_FACTOR`` (default
1): on a machine slower still, raise the factor rather than any single wait.
"""

from __future__ import annotations

import os
from typing import Final

__all__ = ["DEADLINE_SECONDS", "FACTOR_VARIABLE", "deadline", "scaled", "timeout_factor"]

FACTOR_VARIABLE: Final = "PERENNIAL_TEST_TIMEOUT_FACTOR"
DEADLINE_SECONDS: Final = 30.0


def timeout_factor() -> float:
    """``$PERENNIAL_TEST_TIMEOUT_FACTOR`` as a positive number (1 when unset)."""
    raw = os.environ.get(FACTOR_VARIABLE, "").strip()
    if not raw:
        return 1.0
    try:
        factor = float(raw)
    except ValueError:
        factor = 0.0
    if not factor > 0 or factor == float("inf"):
        raise ValueError(
            f"{FACTOR_VARIABLE}={raw!r}: give a positive number (e.g. 3 on a slow machine), "
            "or unset it for 1"
        )
    return factor


def scaled(seconds: float) -> float:
    """``seconds`` times the factor."""
    return seconds * timeout_factor()


def deadline() -> float:
    """The one deadline of every wait: :data:`DEADLINE_SECONDS` times the factor."""
    return scaled(DEADLINE_SECONDS)
