"""A stable hash of the training-relevant part of a pipeline spec."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

# Changing any of these retrains; triggers, history limits, suspend and concurrency
# policy do not change what a run would produce.
TRAINING_FIELDS = ("data", "model", "evaluation", "gates", "artifacts")


def training_view(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {key: spec[key] for key in TRAINING_FIELDS if key in spec}


def spec_hash(spec: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of the training-relevant fields (first 16 hex)."""
    canonical = json.dumps(training_view(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
