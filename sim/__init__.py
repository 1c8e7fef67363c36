"""The simulated world: catalog, users, behaviour on slates and search, and ground truth.

It is deterministic for a seed and small by default. It is loopbreak's embedded default and its
test oracle: it knows the expected reward of every slate for every request.
"""

from sim.config import DAYPARTS, DEVICES, GENRES, WorldConfig
from sim.world import Outcome, Play, Request, World, examination_probabilities

__all__ = [
    "DAYPARTS",
    "DEVICES",
    "GENRES",
    "Outcome",
    "Play",
    "Request",
    "World",
    "WorldConfig",
    "examination_probabilities",
]
