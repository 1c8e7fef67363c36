"""The search surface of the simulated world: lexical match of a query against title words.

It stands for the search engine that users fall back on when the home slate does not show what
they came for. Plays that follow from it have ``source="search"``.
"""

from __future__ import annotations

import numpy as np

from sim.catalog import Catalog


class LexicalSearch:
    """Ranks available items by how many query words their titles contain, popularity breaking
    ties."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._word_index = {word: j for j, word in enumerate(catalog.vocab)}
        incidence = np.zeros((catalog.n_items, len(catalog.vocab)), dtype=np.float64)
        for i, tokens in enumerate(catalog.title_tokens):
            incidence[i, tokens] = 1.0
        self._incidence = incidence
        self._tie_break = 1e-3 * np.log(catalog.popularity) / -np.log(catalog.popularity).max()

    def make_query(self, item: int, rng: np.random.Generator, *, noise: float) -> str:
        """A query a user types for ``item``: one or two of its title words, sometimes with one
        word wrong."""
        tokens = self._catalog.title_tokens[item]
        n_words = min(len(tokens), int(rng.integers(1, 3)))
        words = [self._catalog.vocab[j] for j in rng.choice(tokens, size=n_words, replace=False)]
        if rng.random() < noise:
            words[int(rng.integers(n_words))] = self._catalog.vocab[
                int(rng.integers(len(self._catalog.vocab)))
            ]
        return " ".join(words)

    def search(self, query: str, *, t: float, limit: int) -> np.ndarray:
        """Item ids answering ``query`` at world time ``t``, best first, at most ``limit``."""
        columns = [self._word_index[w] for w in query.split() if w in self._word_index]
        if not columns:
            return np.empty(0, dtype=np.int64)
        matches = self._incidence[:, columns].sum(axis=1)
        matches[self._catalog.release_day > t] = 0.0
        hits = np.flatnonzero(matches > 0)
        order = np.lexsort((hits, -(matches[hits] + self._tie_break[hits])))
        return hits[order][:limit]
