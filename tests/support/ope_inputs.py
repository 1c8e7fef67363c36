"""Valid OPE input columns and the mutations that break them, for the bad-input tables."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Mutation = Callable[[dict], None]


def good_columns(n: int = 10) -> dict[str, np.ndarray]:
    """Every column of the input contract, valid: two slots per decision, a reward model."""
    return {
        "reward": np.linspace(0.0, 1.0, n),
        "pscore": np.full(n, 0.5),
        "target_pscore": np.full(n, 0.25),
        "decision_id": np.arange(n) // 2,
        "slot": np.arange(n) % 2,
        "q_hat": np.linspace(0.2, 0.4, n),
        "v_hat": np.linspace(0.3, 0.5, n),
    }


def with_value(column: str, row: int, value: float) -> Mutation:
    def mutate(cols: dict) -> None:
        cols[column] = cols[column].astype(float)
        cols[column][row] = value

    return mutate


def drop_last(column: str) -> Mutation:
    def mutate(cols: dict) -> None:
        cols[column] = cols[column][:-1]

    return mutate
