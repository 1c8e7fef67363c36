"""Inputs of the scorer: the item catalog, a user's event history, and a scoring request.

Times are POSIX seconds (UTC) as floats, so that fm_core never handles time zones. Item ids are
non-negative ints; the catalog maps them to rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from vocab import N_DAYPARTS, daypart_of_hour

__all__ = [
    "N_DAYPARTS",
    "History",
    "ItemCatalog",
    "ScoreRequest",
    "daypart_of",
    "query_tokens",
]

_QUERY_TOKEN = re.compile(r"[^\W_]+(?::[^\W_]+)?")


def query_tokens(query: str | None) -> list[str]:
    """The casefolded word tokens of a query ("genre:drama" style tokens stay whole): what the
    ranker's query features and the decision side's lexical retrieval both read."""
    return _QUERY_TOKEN.findall(query.casefold()) if query else []


def daypart_of(local_hour: float | None) -> int:
    """The daypart index of a local hour (``vocab.daypart_of_hour``); evening when unknown."""
    return daypart_of_hour(local_hour)


@dataclass(frozen=True)
class ItemCatalog:
    """Item metadata. ``item_ids`` are sorted and unique; arrays are aligned with them.

    Attributes:
        item_ids: (n,) int64.
        genres: (n, G) bool multi-hot.
        release_time: (n,) POSIX seconds at which the item became available.
        tokens: per item, its metadata tokens (title words, genre, language, country).
        genre_names: (G,) names.
    """

    item_ids: np.ndarray
    genres: np.ndarray
    release_time: np.ndarray
    tokens: tuple[tuple[str, ...], ...] = ()
    genre_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        ids = np.asarray(self.item_ids)
        if ids.ndim != 1 or np.any(np.diff(ids) <= 0):
            raise ValueError("item_ids must be a 1-D array of sorted, unique ids")
        if self.genres.shape[0] != ids.size or self.release_time.shape[0] != ids.size:
            raise ValueError("genres and release_time must have one row per item id")
        # Sorted and unique, so the ids are one run first..first+n-1 exactly when the last is
        # first+n-1; then an id's row is its offset from the first (no search on each request).
        dense = ids.size > 0 and int(ids[-1]) - int(ids[0]) == ids.size - 1
        object.__setattr__(self, "_first_of_run", int(ids[0]) if dense else None)

    @property
    def n_items(self) -> int:
        return int(self.item_ids.size)

    def rows(self, items: np.ndarray) -> np.ndarray:
        """Row index of each item id; raises KeyError naming the first unknown id."""
        items = np.asarray(items, dtype=np.int64)
        first: int | None = self._first_of_run  # type: ignore[attr-defined]
        if first is not None and items.size:
            rows = items - first
            if rows.min() >= 0 and rows.max() < self.n_items:
                return rows
        rows = np.searchsorted(self.item_ids, items)
        rows = np.clip(rows, 0, self.n_items - 1)
        unknown = np.flatnonzero(self.item_ids[rows] != items)
        if unknown.size:
            raise KeyError(f"unknown item id {int(items[unknown[0]])}")
        return rows

    def known(self, items: np.ndarray) -> np.ndarray:
        """Boolean mask of which item ids are in the catalog."""
        items = np.asarray(items, dtype=np.int64)
        rows = np.clip(np.searchsorted(self.item_ids, items), 0, self.n_items - 1)
        return self.item_ids[rows] == items

    def available(self, time: float) -> np.ndarray:
        """Item ids released at or before ``time``."""
        return self.item_ids[self.release_time <= time]


@dataclass(frozen=True)
class History:
    """A user's events strictly before the request time, oldest first.

    Attributes:
        item_ids: (T,) int64. times: (T,) POSIX seconds. kinds: (T,) event kinds ("play", ...).
        values: (T,) e.g. seconds watched. sources: (T,) "rec" | "search" | "direct".
    """

    item_ids: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    times: np.ndarray = field(default_factory=lambda: np.empty(0))
    kinds: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    values: np.ndarray = field(default_factory=lambda: np.empty(0))
    sources: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))

    def __len__(self) -> int:
        return int(self.item_ids.size)

    def plays(self) -> np.ndarray:
        """Item ids of the play events."""
        return self.item_ids[self.kinds == "play"] if len(self) else self.item_ids


@dataclass(frozen=True)
class ScoreRequest:
    """One request to score: who, when, where, and the history the model may see."""

    user_id: str
    time: float
    surface: str = "home"
    device: str | None = None
    country: str | None = None
    local_hour: float | None = None
    query: str | None = None
    source_item: int | None = None
    history: History = field(default_factory=History)

    @property
    def daypart(self) -> int:
        return daypart_of(self.local_hour)
