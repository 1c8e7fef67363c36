"""The item side of the FM scorer: what it needs of every catalog item, computed once per model.

The FM's item embeddings and biases (on its device and as numpy), their norms and unit vectors,
the items' release times, genre shares and title words, and an index from token to catalog rows;
with them, the pair features that compare a candidate with the user's plays (genre affinity,
history cosine) or with the request's query (the lexical features). A query word matches a
title word exactly (1) or nearly (a prefix or one typing error away, ``fm_core.term_match``,
0.75), so that partial and misspelled queries read as near matches of their title.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from fm_core.model import FoundationModel
from fm_core.ranker import HISTORY_SIMILARITY_CAP, query_tokens
from fm_core.term_match import TermMatcher
from fm_core.types import ItemCatalog


def _title_words(tokens: Sequence[str]) -> frozenset[str]:
    """The item's title words: its tokens without a ``namespace:`` prefix, casefolded."""
    return frozenset(t.casefold() for t in tokens if ":" not in t)


class ItemSide:
    """Item representations and metadata the scorer needs, computed once per model."""

    def __init__(self, fm: FoundationModel, catalog: ItemCatalog) -> None:
        self.table = fm.item_embeddings().float()  # (N, D) on the FM's device
        self.bias = fm.item_bias.detach().float()  # (N,)
        self.table_np = self.table.cpu().numpy()
        self.bias_np = self.bias.cpu().numpy()
        self.norms = np.linalg.norm(self.table_np, axis=1) + 1e-9
        self.release_time = np.asarray(catalog.release_time, dtype=np.float64)
        tokens = catalog.tokens or tuple(() for _ in range(catalog.n_items))
        self.titles = [_title_words(t) for t in tokens]
        self.n_tokens = np.array([max(len(t), 1) for t in self.titles], dtype=np.float64)
        rows_of: dict[str, list[int]] = defaultdict(list)
        for row, item_tokens in enumerate(tokens):
            for token in {t.casefold() for t in item_tokens}:
                rows_of[token].append(row)
        self.rows_of = {t: np.array(r, dtype=np.int64) for t, r in rows_of.items()}
        self.title_rows_of = {
            t: rows for t, rows in self.rows_of.items() if ":" not in t
        }  # title words only
        self.terms = TermMatcher(self.title_rows_of)
        genres = np.asarray(catalog.genres, dtype=np.float64)
        self.genre_share = genres / np.maximum(genres.sum(axis=1, keepdims=True), 1.0)  # (N, G)
        prior = self.genre_share.sum(axis=0) + 1.0
        self.genre_prior = prior / prior.sum()  # (G,)
        self.unit = self.table_np / self.norms[:, None]  # (N, D) unit vectors

    def genre_affinity(
        self, played_rows: np.ndarray, rows: np.ndarray, *, smoothing: float = 2.0
    ) -> np.ndarray:
        """log (share_i · profile) / (share_i · prior): the user's genre profile (plays smoothed
        toward the catalog's genre mix) against the mix, on each candidate's genres."""
        counts = self.genre_share[played_rows].sum(axis=0) if played_rows.size else 0.0
        profile = (counts + smoothing * self.genre_prior) / (played_rows.size + smoothing)
        share = self.genre_share[rows]
        return np.log((share @ profile + 1e-9) / (share @ self.genre_prior + 1e-9))

    def history_cosine(self, played_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Mean cosine of each candidate with the user's last plays (0 without plays)."""
        recent = played_rows[-HISTORY_SIMILARITY_CAP:]
        if recent.size == 0:
            return np.zeros(rows.size)
        return (self.unit[rows] @ self.unit[recent].T).mean(axis=1)

    def lexical(self, query: str | None, rows: np.ndarray) -> np.ndarray:
        """(n, 5) LEXICAL_FEATURES of ``rows`` against ``query``: has_query, query_share (the
        mean match strength of the query's words), title_share (their summed strength on title
        words over the title's length), all_query_tokens (every word matched, exactly or
        nearly), exact_title (the title's words are exactly the query's)."""
        out = np.zeros((rows.size, 5))
        words = list(dict.fromkeys(query_tokens(query)))
        if not words:
            return out
        found = np.zeros(rows.size)
        title_found = np.zeros(rows.size)
        matched = np.zeros(rows.size)
        none = np.empty(0, np.int64)
        for word in words:
            exact = np.isin(rows, self.rows_of.get(word, none)).astype(np.float64)
            title = np.isin(rows, self.title_rows_of.get(word, none)).astype(np.float64)
            for near, strength in self.terms.near(word).items():
                title = np.maximum(title, strength * np.isin(rows, self.title_rows_of[near]))
            strength = np.maximum(exact, title)
            found += strength
            title_found += title
            matched += strength > 0
        query_set = frozenset(words)
        out[:, 0] = 1.0
        out[:, 1] = found / len(words)
        out[:, 2] = title_found / self.n_tokens[rows]
        out[:, 3] = matched == len(words)
        out[:, 4] = [self.titles[r] == query_set for r in rows]
        return out
