"""Context effects on play propensity: genre × daypart and genre × device.

A few effects are written out because they are what a context-aware model should find
(children's titles in the afternoon and on tablets, horror at night); the rest is small noise.
Each is in logit units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.config import DAYPARTS, DEVICES, GENRES

_DAYPART_EFFECTS: dict[str, dict[str, float]] = {
    "kids": {"afternoon": 1.2, "evening": -0.3, "night": -1.2},
    "animation": {"afternoon": 0.9, "night": -0.8},
    "family": {"afternoon": 0.6, "night": -0.6},
    "horror": {"night": 0.9, "morning": -0.8},
    "thriller": {"night": 0.5, "morning": -0.4},
    "documentary": {"morning": 0.6, "night": -0.2},
    "romance": {"evening": 0.4},
    "reality": {"morning": 0.3},
}
_DEVICE_EFFECTS: dict[str, dict[str, float]] = {
    "anime": {"mobile": 0.6},
    "reality": {"mobile": 0.6, "tv": -0.3},
    "comedy": {"mobile": 0.3},
    "war": {"mobile": -0.5, "tv": 0.3},
    "action": {"tv": 0.5},
    "scifi": {"tv": 0.4},
    "kids": {"tablet": 0.8},
    "animation": {"tablet": 0.6},
    "documentary": {"web": 0.4},
}


@dataclass(frozen=True)
class ContextEffects:
    """daypart: (n_genres, n_dayparts); device: (n_genres, n_devices); both in logits."""

    daypart: np.ndarray
    device: np.ndarray


def _table(
    written: dict[str, dict[str, float]], columns: tuple[str, ...], noise: np.ndarray
) -> np.ndarray:
    table = noise.copy()
    for genre, row in written.items():
        for column, value in row.items():
            table[GENRES.index(genre), columns.index(column)] += value
    return table


def make_effects(rng: np.random.Generator, *, daypart: float, device: float) -> ContextEffects:
    """Context effect tables, scaled by ``daypart`` and ``device`` strengths."""
    dp_noise = 0.15 * rng.normal(size=(len(GENRES), len(DAYPARTS)))
    dev_noise = 0.15 * rng.normal(size=(len(GENRES), len(DEVICES)))
    return ContextEffects(
        daypart=daypart * _table(_DAYPART_EFFECTS, DAYPARTS, dp_noise),
        device=device * _table(_DEVICE_EFFECTS, DEVICES, dev_noise),
    )
