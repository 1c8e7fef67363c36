"""Catalog files for ``loopbreak catalog load``'s tests: a small hand-made frame, and a
simulated world's catalog written as the columns a catalog file has."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from sim import GENRES, World
from sim.clock import EPOCH


def small_frame() -> pd.DataFrame:
    """Three titles with every column filled the way a file might (an empty genre list, an
    offset release time, a naive one)."""
    return pd.DataFrame(
        {
            "item_id": [30, 10, 20],
            "title": ["The Long Night", "Moon Harbour", "Quiet"],
            "genres": ["drama|thriller", "comedy", ""],
            "language": ["en", "fr", "de"],
            "country": ["US", "FR", "NA"],
            "release_time": ["2020-01-02T03:04:05Z", "2019-06-01", "2021-03-04T12:00:00+02:00"],
        }
    )


def world_frame(world: World) -> pd.DataFrame:
    """The world's catalog as a catalog file: titles from its title words, genre names, language
    and country from its tokens, release day as an ISO time."""
    catalog = world.catalog
    rows = []
    for i in range(catalog.n_items):
        tokens = catalog.tokens(i)
        words = [t for t in tokens if ":" not in t]
        rows.append(
            {
                "item_id": i,
                "title": " ".join(words),
                "genres": "|".join(GENRES[g] for g in np.flatnonzero(catalog.genres[i])),
                "language": next(t for t in tokens if t.startswith("lang:")).removeprefix("lang:"),
                "country": next(t for t in tokens if t.startswith("country:")).split(":", 1)[1],
                "release_time": datetime.fromtimestamp(
                    EPOCH.timestamp() + float(catalog.release_day[i]) * 86400.0, UTC
                ).isoformat(),
            }
        )
    return pd.DataFrame(rows)
