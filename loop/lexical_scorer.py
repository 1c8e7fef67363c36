"""A search engine's ranking before a learned one: search requests in BM25 order.

``LexicalFirstScorer`` wraps a scorer: a request with a query is scored by the lexical index's
BM25 of each candidate (``loop.retrieval.LexicalIndex``, near words included), scaled into
(0.01, 0.99) with the wrapped scorer's score breaking ties; any other request gets the wrapped
scorer's scores. Its scores order candidates; they are not calibrated probabilities. It is the
logging policy's scorer of ``bench surfaces``: search served as a lexical engine serves it, so
that the log's search impressions look like those a product had before one ranker served every
surface. Embeddings and retrieval are the wrapped scorer's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fm_core import ItemCatalog, Scorer, ScoreRequest
from loop.retrieval import indexes_of, query_terms


class LexicalFirstScorer:
    """Search requests in BM25 order, everything else by ``base`` (see the module docstring)."""

    def __init__(self, base: Scorer) -> None:
        self.base = base
        self.catalog: ItemCatalog = base.catalog
        self.model_version = f"{base.model_version}+bm25"

    def score(
        self, requests: Sequence[ScoreRequest], candidates: Sequence[np.ndarray]
    ) -> list[np.ndarray]:
        """The wrapped scorer's scores, replaced by scaled BM25 for requests with a query."""
        out = self.base.score(requests, candidates)
        lexical = indexes_of(self).lexical(self)
        for j, (request, items) in enumerate(zip(requests, candidates, strict=True)):
            if request.surface != "search" or not query_terms(request.query):
                continue
            bm25 = lexical.scores(request.query)[self.catalog.rows(np.asarray(items))]
            top = float(bm25.max())
            relevance = bm25 / top if top > 0 else np.zeros_like(bm25)
            out[j] = 0.01 + 0.97 * relevance + 0.01 * np.clip(out[j], 0.0, 1.0)
        return out

    def user_embeddings(self, requests: Sequence[ScoreRequest]) -> np.ndarray:
        return self.base.user_embeddings(requests)

    def item_embeddings(self, items: np.ndarray) -> np.ndarray:
        return self.base.item_embeddings(items)

    def retrieve(self, request: ScoreRequest, n: int, *, exclude_seen: bool = False) -> np.ndarray:
        return self.base.retrieve(request, n, exclude_seen=exclude_seen)
