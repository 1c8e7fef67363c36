"""Typo- and prefix-tolerant matching of query words against title words.

Members type partial words ("tenip" for "tenipi") and make typing errors ("tneipi"). A query word
matches a title word with a strength:

- 1 when they are equal;
- ``NEAR_STRENGTH`` when the query word (at least ``MIN_PREFIX`` letters) begins the title word,
  or when the two are one edit apart (a letter dropped, added, replaced, or two neighbours
  swapped: the optimal string alignment distance is 1) and the shorter has at least
  ``MIN_TYPO_LENGTH`` letters;
- 0 otherwise.

``TermMatcher`` holds the title words of a catalog. Only a query word the titles do not have is
looked up nearly ("did you mean"): a word some title has is taken as typed, so that an exact
query is never diluted by the near neighbours of its words. The matcher finds an unknown word's
near title words once and keeps them while it lives. The ranker's lexical features
(``fm_core.fm_scorer_items``) and the decision side's lexical retrieval (``loop.retrieval``)
both read it. It needs only the standard library.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

NEAR_STRENGTH = 0.75
MIN_PREFIX = 3
MIN_TYPO_LENGTH = 3


def within_one_edit(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` differ by exactly one edit (insert, delete, replace, or swap of
    two neighbouring letters)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [j for j, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        if len(diff) == 1:
            return True
        return (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    short, long = (a, b) if len(a) < len(b) else (b, a)
    j = 0
    while j < len(short) and short[j] == long[j]:
        j += 1
    return short[j:] == long[j + 1 :]


def match_strength(query_word: str, title_word: str) -> float:
    """How well ``query_word`` matches ``title_word`` (see the module docstring)."""
    if query_word == title_word:
        return 1.0
    if len(query_word) >= MIN_PREFIX and title_word.startswith(query_word):
        return NEAR_STRENGTH
    if min(len(query_word), len(title_word)) >= MIN_TYPO_LENGTH and within_one_edit(
        query_word, title_word
    ):
        return NEAR_STRENGTH
    return 0.0


class TermMatcher:
    """The near matches of query words among a fixed vocabulary of title words."""

    def __init__(self, vocabulary: Iterable[str]) -> None:
        self._vocabulary = tuple(sorted(set(vocabulary)))
        self._known = frozenset(self._vocabulary)
        self._near: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()

    def __contains__(self, word: object) -> bool:
        return word in self._known

    def near(self, query_word: str) -> dict[str, float]:
        """The title words an unknown ``query_word`` nearly matches, with their strengths;
        empty for a word some title has."""
        if query_word in self._known:
            return {}
        with self._lock:
            found = self._near.get(query_word)
        if found is None:
            found = {}
            for word in self._vocabulary:
                if word != query_word:
                    strength = match_strength(query_word, word)
                    if strength > 0.0:
                        found[word] = strength
            with self._lock:
                self._near[query_word] = found
        return found
