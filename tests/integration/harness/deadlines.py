"""The harness's deadline is the one every test folder shares: :mod:`testsupport.deadlines`."""

from __future__ import annotations

from testsupport.deadlines import (
    DEADLINE_SECONDS,
    FACTOR_VARIABLE,
    deadline,
    scaled,
    timeout_factor,
)

__all__ = ["DEADLINE_SECONDS", "FACTOR_VARIABLE", "deadline", "scaled", "timeout_factor"]
