"""What every test folder shares: the one deadline of every wait, and a blocking wait.

``tests/`` is on ``sys.path`` (``pythonpath`` in pyproject's pytest settings), so any test
module or conftest imports this as ``testsupport``:

- :mod:`.deadlines`: :func:`deadline` (30 s) and :func:`scaled`, both times
  ``$PERENNIAL_TEST_TIMEOUT_FACTOR`` (default 1);
- :mod:`.waiting`: :func:`wait_until`, polling a condition from blocking code (the runtime
  and local runner tests; the integration harness has its own asyncio ``wait_for``, on the
  same deadline).
"""

from .deadlines import DEADLINE_SECONDS, FACTOR_VARIABLE, deadline, scaled, timeout_factor
from .waiting import wait_until

__all__ = [
    "DEADLINE_SECONDS",
    "FACTOR_VARIABLE",
    "deadline",
    "scaled",
    "timeout_factor",
    "wait_until",
]
