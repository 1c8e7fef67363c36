"""The recommender that loopbreak wraps: event histories in, calibrated P(play) out.

This package holds the Scorer interface, its inputs, and the baseline scorer. It may import torch
and numpy, never loopbreak's other parts. Nothing here touches CUDA at import time.
"""

from fm_core.baseline import PopularityAffinityScorer, TrainingImpressions
from fm_core.scorer import Scorer
from fm_core.types import History, ItemCatalog, ScoreRequest, daypart_of

__all__ = [
    "History",
    "ItemCatalog",
    "PopularityAffinityScorer",
    "ScoreRequest",
    "Scorer",
    "TrainingImpressions",
    "daypart_of",
]
