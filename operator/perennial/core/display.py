"""How numbers read in printer columns (``kubectl get tp`` / ``kubectl get tr``)."""

from __future__ import annotations

from typing import Final

DISPLAY_DECIMALS: Final = 4


def display_value(value: float) -> str:
    """A metric value as printer columns show it: 4 decimals (0.958041958 -> '0.9580')."""
    return f"{value:.{DISPLAY_DECIMALS}f}"
