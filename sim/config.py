"""The simulated world's parameters: one frozen dataclass, deterministic for its seed.

The defaults are small and fast on two CPU cores; every size is a parameter. The behavioural
constants (examination curve, search and intent rates, effect sizes) are chosen so that the world
has the properties loopbreak must cope with: a Zipf popularity skew, a strong position effect,
context (daypart, device) that changes what is played, cold-start items, and a real share of plays
found through search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from vocab import DAYPARTS

__all__ = [
    "COUNTRIES",
    "DAYPARTS",
    "DEVICES",
    "GENRES",
    "LANGUAGES",
    "UTC_OFFSET_HOURS",
    "WorldConfig",
]

GENRES: tuple[str, ...] = (
    "action", "adventure", "animation", "kids", "comedy", "crime", "documentary", "drama",
    "family", "fantasy", "horror", "music", "mystery", "romance", "scifi", "thriller", "war",
    "western", "anime", "reality",
)  # fmt: skip
DEVICES: tuple[str, ...] = ("tv", "mobile", "web", "tablet")
COUNTRIES: tuple[str, ...] = ("US", "GB", "FR", "ES", "DE", "JP", "KR", "IN")
LANGUAGES: tuple[str, ...] = ("en", "en", "fr", "es", "de", "ja", "ko", "hi")  # by country
UTC_OFFSET_HOURS: tuple[float, ...] = (-5.0, 0.0, 1.0, 1.0, 1.0, 9.0, 9.0, 5.5)  # by country

Examination = Literal["log", "inverse"]
RewardKind = Literal["play", "completion"]


@dataclass(frozen=True, kw_only=True)
class WorldConfig:
    """Sizes and behaviour of the simulated world.

    Times are in days since the world's epoch (``sim.clock.EPOCH``, UTC). Items released after
    day 0 arrive during the simulation (cold start); ``horizon_days`` is the span over which they
    arrive.
    """

    seed: int = 0
    n_items: int = 400
    n_users: int = 300
    latent_dim: int = 8
    horizon_days: float = 60.0
    new_item_share: float = 0.2
    zipf_exponent: float = 1.0
    vocab_per_genre: int = 12
    shared_vocab: int = 40

    # behaviour
    examination: Examination = "log"
    reward: RewardKind = "play"
    base_logit: float = -3.2
    popularity_weight: float = 0.6
    taste_weight: float = 1.0
    latent_weight: float = 0.8
    language_bonus: float = 0.4
    freshness_bonus: float = 0.8
    freshness_days: float = 14.0
    daypart_strength: float = 1.0
    device_strength: float = 1.0
    reconsumption: float = 0.1
    taste_drift_per_year: float = 0.0
    popularity_feedback: float = 0.0
    """Social proof: each title's play logit gains ``popularity_feedback`` × ln(1 + its plays
    so far in this world), so that what is shown and played becomes more appealing (0: the
    popularity prior is static)."""

    # sessions with an intent, and search
    intent_rate: float = 0.3
    intent_play: float = 0.7
    search_rate: float = 0.6
    search_results: int = 10
    query_noise: float = 0.2

    # the search and title surfaces as surfaces of their own (``World.surface_request``)
    query_kinds: tuple[float, float, float] = (0.4, 0.3, 0.3)
    """Shares of exact, partial and misspelled queries (``sim.queries.QUERY_KINDS``) typed on
    the search surface."""
    search_similarity: float = 1.0
    """On the search surface, a result other than the member's intent gains this logit per unit
    of latent cosine to the intent (titles like the one searched for)."""
    search_focus: float = 2.0
    """On the search surface, a result other than the member's intent loses this logit: who
    searched for one title rarely settles for an unrelated one."""
    title_similarity: float = 2.5
    """On a title's "more like this" row, a title gains this logit per unit of latent cosine
    to the title the member opened."""

    def __post_init__(self) -> None:
        positive = ("n_items", "n_users", "latent_dim", "vocab_per_genre", "search_results")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"WorldConfig.{name} must be >= 1; got {getattr(self, name)}")
        probabilities = (
            "new_item_share", "reconsumption", "intent_rate", "intent_play", "search_rate",
            "query_noise",
        )  # fmt: skip
        for name in probabilities:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"WorldConfig.{name} must be in [0, 1]; got {value}")
        if not 0.0 <= self.popularity_feedback <= 5.0:
            raise ValueError(
                f"WorldConfig.popularity_feedback must be in [0, 5]; got {self.popularity_feedback}"
            )
        kinds = tuple(float(x) for x in self.query_kinds)
        if len(kinds) != 3 or min(kinds) < 0.0 or not np.isclose(sum(kinds), 1.0):
            raise ValueError(
                "WorldConfig.query_kinds must be three non-negative shares summing to 1 "
                f"(exact, partial, misspelled); got {self.query_kinds}"
            )
        for name in ("search_similarity", "search_focus", "title_similarity"):
            if not 0.0 <= getattr(self, name) <= 10.0:
                raise ValueError(
                    f"WorldConfig.{name} must be in [0, 10]; got {getattr(self, name)}"
                )
        if self.horizon_days <= 0:
            raise ValueError(f"WorldConfig.horizon_days must be > 0; got {self.horizon_days}")
        if self.examination not in ("log", "inverse"):
            raise ValueError(
                f"WorldConfig.examination must be 'log' or 'inverse'; got {self.examination!r}"
            )
        if self.reward not in ("play", "completion"):
            raise ValueError(
                f"WorldConfig.reward must be 'play' or 'completion'; got {self.reward!r}"
            )
