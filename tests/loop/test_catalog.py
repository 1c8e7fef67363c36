"""``loop.catalog.catalog_from_log``: the loaded rows as the scorer's ``ItemCatalog`` (sorted
ids, multi-hot over the sorted genre names, tokens as the simulated world builds them, POSIX
release times), None for an empty log; and a world's catalog round-trips through a file's rows."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from catalog_files import small_frame, world_frame
from sqlalchemy import Engine
from sqlmodel import Session

from loop.catalog import catalog_from_log
from loop.sim_bridge import catalog_from_world
from proplog.catalog import load_catalog_rows
from sim import World, WorldConfig


def test_no_titles_no_catalog(engine: Engine) -> None:
    assert catalog_from_log(engine) is None


def test_the_loaded_rows_as_an_item_catalog(engine: Engine) -> None:
    with Session(engine) as session:
        load_catalog_rows(session, small_frame())
    catalog = catalog_from_log(engine)
    assert catalog is not None
    assert catalog.item_ids.tolist() == [10, 20, 30] and catalog.item_ids.dtype == np.int64
    assert catalog.genre_names == ("comedy", "drama", "thriller")
    assert catalog.genres.tolist() == [
        [True, False, False],  # 10: comedy
        [False, False, False],  # 20: no genre
        [False, True, True],  # 30: drama|thriller
    ]
    assert catalog.tokens == (
        ("moon", "harbour", "genre:comedy", "lang:fr", "country:FR"),
        ("quiet", "lang:de", "country:NA"),
        ("the", "long", "night", "genre:drama", "genre:thriller", "lang:en", "country:US"),
    )
    expected = [
        datetime(2019, 6, 1, tzinfo=UTC).timestamp(),
        datetime(2021, 3, 4, 10, tzinfo=UTC).timestamp(),
        datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp(),
    ]
    assert catalog.release_time.tolist() == expected


def test_a_world_catalog_through_the_log(engine: Engine) -> None:
    world = World(WorldConfig(seed=7, n_items=40, n_users=10))
    with Session(engine) as session:
        load_catalog_rows(session, world_frame(world))
    loaded = catalog_from_log(engine)
    expected = catalog_from_world(world)
    assert loaded is not None
    np.testing.assert_array_equal(loaded.item_ids, expected.item_ids)
    assert loaded.tokens == expected.tokens
    np.testing.assert_allclose(loaded.release_time, expected.release_time, atol=1e-5, rtol=0)
    used = [expected.genre_names.index(name) for name in loaded.genre_names]
    np.testing.assert_array_equal(loaded.genres, expected.genres[:, used])
    unused = [j for j, name in enumerate(expected.genre_names) if name not in loaded.genre_names]
    assert not expected.genres[:, unused].any()  # only genres no item has are left out
