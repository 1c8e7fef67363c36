"""The log's catalog (``catalog_item``, loaded by ``loopbreak catalog load``) as the scorer's
:class:`fm_core.ItemCatalog`.

Owns the mapping: genres become a multi-hot over the sorted union of the genre names; tokens
are built as :func:`loop.sim_bridge.catalog_from_world` builds them (the title's words
lower-cased, ``genre:NAME`` per genre, ``lang:LANGUAGE``, ``country:COUNTRY``; an empty
language or country gives no token); release times become POSIX seconds.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from fm_core import ItemCatalog
from proplog.catalog import GENRE_SEPARATOR, read_catalog

logger = logging.getLogger(__name__)


def _genre_lists(frame: pd.DataFrame) -> list[list[str]]:
    return [[g for g in text.split(GENRE_SEPARATOR) if g] for text in frame["genres"]]


def item_tokens(title: str, genres: list[str], language: str, country: str) -> tuple[str, ...]:
    """One item's metadata tokens, in the order the simulated world gives them."""
    return (
        *title.lower().split(),
        *(f"genre:{name}" for name in genres),
        *((f"lang:{language}",) if language else ()),
        *((f"country:{country}",) if country else ()),
    )


def catalog_from_frame(frame: pd.DataFrame) -> ItemCatalog:
    """A :func:`proplog.catalog.read_catalog` frame as an ``ItemCatalog`` (sorted by id)."""
    frame = frame.sort_values("item_id", kind="stable")
    genre_lists = _genre_lists(frame)
    names = tuple(sorted({name for genres in genre_lists for name in genres}))
    column = {name: j for j, name in enumerate(names)}
    genres = np.zeros((len(frame), len(names)), dtype=bool)
    for i, item_genres in enumerate(genre_lists):
        genres[i, [column[name] for name in item_genres]] = True
    release = np.array([when.timestamp() for when in frame["release_time"]], dtype=np.float64)
    tokens = tuple(
        item_tokens(title, item_genres, language, country)
        for title, item_genres, language, country in zip(
            frame["title"], genre_lists, frame["language"], frame["country"], strict=True
        )
    )
    return ItemCatalog(
        item_ids=frame["item_id"].to_numpy(dtype=np.int64),
        genres=genres,
        release_time=release,
        tokens=tokens,
        genre_names=names,
    )


def catalog_from_log(engine: Engine) -> ItemCatalog | None:
    """The log's catalog, or None when no title was loaded."""
    frame = read_catalog(engine)
    if frame.empty:
        return None
    catalog = catalog_from_frame(frame)
    logger.info(
        "catalog from the log: %d items, %d genres", catalog.n_items, len(catalog.genre_names)
    )
    return catalog
