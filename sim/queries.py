"""Queries as members type them on the search surface: from the words of the title they want,
whole, partial or misspelled.

- ``exact``: every title word, in the title's order;
- ``partial``: a non-empty share of the title's words, the last one often cut short as people
  stop typing once suggestions appear (at least ``MIN_PREFIX`` letters kept);
- ``misspelled``: every title word, one of them with one typing error (a letter dropped,
  doubled, swapped with its neighbour or replaced by one near it on the keyboard).

The world draws the kind with ``WorldConfig.query_kinds`` shares; the kind travels with the
request so that benchmarks report each kind's results. Everything is drawn from the generator
it is given, so the world stays deterministic for its seed.
"""

from __future__ import annotations

import numpy as np

QUERY_KINDS: tuple[str, ...] = ("exact", "partial", "misspelled")
MIN_PREFIX = 3
_NEAR_KEYS: dict[str, str] = {
    "a": "qsz", "b": "vgn", "c": "xdv", "d": "sfe", "e": "wrd", "f": "dgr", "g": "fht",
    "h": "gjy", "i": "uok", "j": "hku", "k": "jli", "l": "kop", "m": "njk", "n": "bmh",
    "o": "ipl", "p": "ol", "q": "wa", "r": "etf", "s": "adw", "t": "ryg", "u": "yij",
    "v": "cbf", "w": "qes", "x": "zcs", "y": "tuh", "z": "xas",
}  # fmt: skip


def typo(word: str, rng: np.random.Generator) -> str:
    """``word`` with one typing error; always differs from ``word`` (words of 2+ letters)."""
    if len(word) < 2:
        raise ValueError(f"word must have at least 2 letters to misspell; got {word!r}")
    for _ in range(16):
        kind = int(rng.integers(4))
        at = int(rng.integers(len(word)))
        if kind == 0:  # a letter dropped
            out = word[:at] + word[at + 1 :]
        elif kind == 1:  # a letter doubled
            out = word[:at] + word[at] + word[at:]
        elif kind == 2 and at < len(word) - 1:  # neighbours swapped
            out = word[:at] + word[at + 1] + word[at] + word[at + 2 :]
        else:  # a key near the right one
            near = _NEAR_KEYS.get(word[at], "e")
            out = word[:at] + near[int(rng.integers(len(near)))] + word[at + 1 :]
        if out != word and out:
            return out
    return word[:-1]


def make_query(words: list[str], kind: str, rng: np.random.Generator) -> str:
    """A query of ``kind`` (one of QUERY_KINDS) for a title of ``words`` (in title order)."""
    if kind not in QUERY_KINDS:
        raise ValueError(f"kind must be one of {QUERY_KINDS}; got {kind!r}")
    if not words:
        raise ValueError("words must hold at least one title word")
    if kind == "exact":
        return " ".join(words)
    if kind == "misspelled":
        out = list(words)
        wrong = int(rng.integers(len(out)))
        out[wrong] = typo(out[wrong], rng)
        return " ".join(out)
    n_words = int(rng.integers(1, len(words) + 1))
    picked = [words[j] for j in np.sort(rng.choice(len(words), size=n_words, replace=False))]
    last = picked[-1]
    if len(last) > MIN_PREFIX and (n_words == len(words) or rng.random() < 0.5):
        picked[-1] = last[: int(rng.integers(MIN_PREFIX, len(last)))]
    return " ".join(picked)
