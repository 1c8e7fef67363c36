"""The Scorer interface (DESIGN.md §5): batches of requests and candidates in, calibrated
P(play) arrays out, plus embeddings and retrieval."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from fm_core.types import ItemCatalog, ScoreRequest


@runtime_checkable
class Scorer(Protocol):
    """What every recommender model behind loopbreak offers."""

    model_version: str
    catalog: ItemCatalog

    def score(
        self, requests: Sequence[ScoreRequest], candidates: Sequence[np.ndarray]
    ) -> list[np.ndarray]:
        """Calibrated P(play | shown at the top) for each request's candidate item ids."""
        ...

    def user_embeddings(self, requests: Sequence[ScoreRequest]) -> np.ndarray:
        """(B, D) user representations."""
        ...

    def item_embeddings(self, items: np.ndarray) -> np.ndarray:
        """(N, D) item representations."""
        ...

    def retrieve(self, request: ScoreRequest, n: int, *, exclude_seen: bool = False) -> np.ndarray:
        """The top ``n`` available item ids for the request, best first."""
        ...
