"""Catalog files for ``loopbreak catalog load``'s tests: a small hand-made frame, and a
simulated world's catalog written as the columns a catalog file has."""

from __future__ import annotations

import pandas as pd

from loop.sim_bridge import catalog_file_frame
from sim import World


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
    """The world's catalog as a catalog file (``loop.sim_bridge.catalog_file_frame``)."""
    return catalog_file_frame(world)
