"""Decision ids seed the sampler, so that any decision can be replayed and audited."""

from __future__ import annotations

import uuid

import numpy as np


def rng_for_decision(decision_id: str | uuid.UUID) -> np.random.Generator:
    """The random generator of one decision: seeded by the 128 bits of its UUID."""
    value = decision_id if isinstance(decision_id, uuid.UUID) else uuid.UUID(str(decision_id))
    return np.random.default_rng(value.int)
