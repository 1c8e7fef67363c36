"""Candidate generation on the decision side: which catalog items a decision scores.

:func:`candidates_for_request` is the one place a decision's candidate list comes from
(``DecisionService.candidates_for`` calls it):

- **client candidates win**: a request that names its candidates gets exactly those (unknown ids
  raise :class:`UnknownCandidatesError`), on every surface;
- **search** with a query: the union of a lexical match of the query against the catalog's
  item tokens (BM25, Lucene's variant, from ``bm25s``, the sparse-matrix BM25 library; a query
  word no title has counts through the title words it nearly matches, a prefix of them or one
  typing error away, at ``fm_core.term_match.NEAR_STRENGTH`` of a whole word's score, so that a
  partial or misspelled query still finds its title) and the
  scorer's own top items for the request (``Scorer.retrieve``: for the FM, user state · item
  embedding + bias), at most ``RetrievalConfig.search_cap`` in all. The lexical side takes
  ``lexical_share`` of the cap first (best BM25 first), the scorer's top fills the rest;
- **title** with a known ``source_item``, when the scorer has learned item embeddings
  (``embedding_neighbours`` on the scorer, True for the FM): the ``title_cap`` available items
  nearest the source item by cosine of the item embeddings, the source item itself left out;
- **anything else** (home, billboard, search without a query, title without a source item or
  with a scorer without embeddings): every item available at the decision's time, as before.

Only items released at the decision's time are retrieved, and the list is returned in ascending
item id order (as the whole-catalog list always was), so that it does not depend on the order in
which the two sources answered.

**OPE replay stays exact.** The decision record logs ``candidate_ids``: exactly the list the
scorer scored and the policy sampled from, with its scores. Propensities are the policy's exact
probabilities over that list, and replay (``slate_probability``, ``marginals``) reruns a policy
on the logged list; it never runs retrieval again. What replay estimates is therefore a new
ranking and exploration policy *on the logged candidates*; an item that retrieval did not return
has no support in the log, and a change of retrieval itself is not something the logs of this
retrieval can evaluate (it needs an A/B test or logs with wider candidates).

The per-scorer indexes (the BM25 index of the catalog, the unit item embeddings) are built once
per scorer object on first use and kept while the scorer lives (a hot-reloaded model gets its own
on its first search or title request); building them for a 1,000-item catalog takes a few
milliseconds. The lexical analyzer (:func:`item_terms`, :func:`query_terms`,
``fm_core.term_match``) and the merge are separate functions.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from fm_core import History, ItemCatalog, Scorer
from fm_core.term_match import NEAR_STRENGTH, TermMatcher
from fm_core.types import query_tokens
from loop.context import RequestContext

logger = logging.getLogger(__name__)


class UnknownCandidatesError(ValueError):
    """The request named candidate item ids the catalog does not know."""

    def __init__(self, item_ids: list[int]) -> None:
        self.item_ids = item_ids
        super().__init__(f"candidates contains unknown item ids: {item_ids[:10]}")


class NoCandidatesError(ValueError):
    """No candidate is available for the request."""


@dataclass(frozen=True)
class RetrievalConfig:
    """How many candidates retrieval gives a search or a title decision.

    Attributes:
        search_cap: the most candidates of a search decision (lexical and the scorer's together).
        lexical_share: the share of ``search_cap`` the lexical matches may take first.
        title_cap: the most neighbours of a title decision's source item.
    """

    search_cap: int = 500
    lexical_share: float = 0.5
    title_cap: int = 500

    def __post_init__(self) -> None:
        if self.search_cap < 1 or self.title_cap < 1:
            raise ValueError(
                f"search_cap and title_cap must be >= 1; got {self.search_cap}, {self.title_cap}"
            )
        if not 0.0 <= self.lexical_share <= 1.0:
            raise ValueError(f"lexical_share must be in [0, 1]; got {self.lexical_share}")


DEFAULT_RETRIEVAL = RetrievalConfig()


def query_terms(query: str | None) -> list[str]:
    """The query's terms: casefolded words (``namespace:value`` tokens stay whole), as the
    ranker's lexical features read them (``fm_core.types.query_tokens``)."""
    return query_tokens(query)


def item_terms(tokens: Sequence[str]) -> list[str]:
    """An item's indexed terms: its catalog tokens (title words, ``genre:``, ``lang:``,
    ``country:``), casefolded."""
    return [t.casefold() for t in tokens]


class LexicalIndex:
    """BM25 over the catalog's item tokens (``bm25s``, Lucene's BM25, k1 1.5, b 0.75); a query
    word no item has scores through its near title words (``fm_core.term_match``)."""

    def __init__(self, catalog: ItemCatalog) -> None:
        import bm25s  # about 0.5 s to import: only when a search needs it

        # bm25s sets its logger to DEBUG on import; let it follow the application's level.
        logging.getLogger("bm25s").setLevel(logging.NOTSET)
        tokens = catalog.tokens or tuple(() for _ in range(catalog.n_items))
        self._bm25 = bm25s.BM25()
        self._bm25.index([item_terms(t) for t in tokens], show_progress=False)
        self._terms = TermMatcher(term for t in tokens for term in item_terms(t) if ":" not in term)
        self._known = frozenset(term for t in tokens for term in item_terms(t))
        self._release_time = np.asarray(catalog.release_time, dtype=np.float64)
        self._item_ids = np.asarray(catalog.item_ids, dtype=np.int64)

    def scores(self, query: str | None) -> np.ndarray:
        """(n_items,) BM25 of every catalog item (in catalog order) for ``query``, near words
        included; zeros without query terms."""
        terms = list(dict.fromkeys(query_terms(query)))
        scores = np.zeros(len(self._item_ids))
        known = [t for t in terms if t in self._known]
        if known:
            scores += np.asarray(self._bm25.get_scores(known), dtype=np.float64)
        for term in terms:
            if term not in self._known:
                near = list(self._terms.near(term))
                if near:  # the best of the near words, as one word of the query
                    each = [np.asarray(self._bm25.get_scores([w]), np.float64) for w in near]
                    scores += NEAR_STRENGTH * np.max(each, axis=0)
        return scores

    def search(self, query: str | None, *, time: float, limit: int) -> np.ndarray:
        """Item ids matching ``query`` (BM25 > 0, near words included) released at ``time``,
        best first (ties by id), at most ``limit``."""
        if not query_terms(query) or limit < 1:
            return np.empty(0, dtype=np.int64)
        scores = self.scores(query)
        rows = np.flatnonzero((scores > 0) & (self._release_time <= time))
        if rows.size > limit:
            rows = rows[np.argpartition(-scores[rows], limit - 1)[:limit]]
        order = np.lexsort((self._item_ids[rows], -scores[rows]))
        return self._item_ids[rows[order]]


class ItemNeighbours:
    """Cosine neighbours among the scorer's item embeddings."""

    def __init__(self, scorer: Scorer) -> None:
        catalog = scorer.catalog
        table = np.asarray(scorer.item_embeddings(catalog.item_ids), dtype=np.float64)
        self._unit = table / (np.linalg.norm(table, axis=1, keepdims=True) + 1e-12)
        self._catalog = catalog
        self._release_time = np.asarray(catalog.release_time, dtype=np.float64)

    def of(self, item: int, *, time: float, limit: int) -> np.ndarray | None:
        """The ``limit`` items released at ``time`` nearest ``item``, nearest first (ties by
        id), ``item`` left out; None when the catalog does not know ``item``."""
        catalog = self._catalog
        if not bool(catalog.known(np.array([item]))[0]):
            return None
        row = int(catalog.rows(np.array([item]))[0])
        similarity = self._unit @ self._unit[row]
        keep = self._release_time <= time
        keep[row] = False
        rows = np.flatnonzero(keep)
        if rows.size > limit:
            rows = rows[np.argpartition(-similarity[rows], limit - 1)[:limit]]
        ids = catalog.item_ids[rows]
        return ids[np.lexsort((ids, -similarity[rows]))]


class _Indexes:
    """What retrieval keeps per scorer, built on first use under a lock."""

    def __init__(self, scorer: Scorer) -> None:
        self._scorer = weakref.ref(scorer)
        self._lock = threading.Lock()
        self._lexical: LexicalIndex | None = None
        self._neighbours: ItemNeighbours | None = None

    def lexical(self, scorer: Scorer) -> LexicalIndex:
        with self._lock:
            if self._lexical is None:
                self._lexical = LexicalIndex(scorer.catalog)
                logger.info("built the lexical index of model %s", scorer.model_version)
            return self._lexical

    def neighbours(self, scorer: Scorer) -> ItemNeighbours:
        with self._lock:
            if self._neighbours is None:
                self._neighbours = ItemNeighbours(scorer)
            return self._neighbours


_INDEXES: weakref.WeakKeyDictionary[Any, _Indexes] = weakref.WeakKeyDictionary()
_INDEXES_LOCK = threading.Lock()


def indexes_of(scorer: Scorer) -> _Indexes:
    """The retrieval indexes of ``scorer`` (kept while it lives)."""
    with _INDEXES_LOCK:
        try:
            found = _INDEXES.get(scorer)
        except TypeError:  # not weakly referable: rebuilt per call
            return _Indexes(scorer)
        if found is None:
            found = _INDEXES[scorer] = _Indexes(scorer)
        return found


def has_embedding_neighbours(scorer: Scorer) -> bool:
    """Whether the scorer's item embeddings are learned representations worth retrieving
    neighbours by (``embedding_neighbours``; the baseline's genre shares are not)."""
    return bool(getattr(scorer, "embedding_neighbours", False))


def merge_candidates(first: np.ndarray, second: np.ndarray, *, cap: int) -> np.ndarray:
    """``first`` then the items of ``second`` not in it, cut at ``cap``, as sorted unique ids."""
    extra = second[~np.isin(second, first)]
    merged = np.concatenate([first, extra])[:cap]
    return np.unique(merged.astype(np.int64))


def search_candidates(
    scorer: Scorer,
    context: RequestContext,
    when: datetime,
    *,
    history: History | None = None,
    config: RetrievalConfig = DEFAULT_RETRIEVAL,
) -> np.ndarray:
    """The candidates of a search with a query: lexical matches, then the scorer's top."""
    time = when.timestamp()
    lexical_limit = round(config.search_cap * config.lexical_share)
    lexical = (
        indexes_of(scorer).lexical(scorer).search(context.query, time=time, limit=lexical_limit)
    )
    request = context.score_request(when=when, history=history or History())
    model_top = scorer.retrieve(request, config.search_cap)
    return merge_candidates(lexical, np.asarray(model_top, dtype=np.int64), cap=config.search_cap)


def candidates_for_request(
    scorer: Scorer,
    context: RequestContext,
    given: Sequence[int] | None,
    when: datetime,
    *,
    history: History | None = None,
    config: RetrievalConfig | None = None,
) -> np.ndarray:
    """The candidate item ids of a decision (see the module docstring).

    ``given``: the client's candidates (they win); ``history``: the user's events before
    ``when``, which make the scorer's part of a search personal (None: the FM's top for the
    request's context alone); ``config``: None for ``DEFAULT_RETRIEVAL``. Raises
    :class:`UnknownCandidatesError` for given ids the catalog does not know,
    :class:`NoCandidatesError` when nothing is available.
    """
    config = config or DEFAULT_RETRIEVAL
    catalog = scorer.catalog
    if given is not None:
        candidates = np.asarray(given, dtype=np.int64)
        unknown = candidates[~catalog.known(candidates)]
        if unknown.size:
            raise UnknownCandidatesError([int(i) for i in unknown])
    elif context.surface == "search" and query_terms(context.query):
        candidates = search_candidates(scorer, context, when, history=history, config=config)
    elif (
        context.surface == "title"
        and context.source_item is not None
        and has_embedding_neighbours(scorer)
    ):
        neighbours = (
            indexes_of(scorer)
            .neighbours(scorer)
            .of(context.source_item, time=when.timestamp(), limit=config.title_cap)
        )
        candidates = (
            catalog.available(when.timestamp()) if neighbours is None else np.unique(neighbours)
        )
    else:
        candidates = catalog.available(when.timestamp())
    if candidates.size == 0:
        raise NoCandidatesError("no candidate item is available for this request")
    return candidates
