"""The log's catalog (``proplog.catalog``) on both back ends: a load stores every row, a reload
of the same file writes nothing, a changed row is updated (its ``created_at`` kept), and a bad
file (missing column, duplicate id, bad release time, empty title, negative id) is refused with
the column and the first bad row named, nothing written."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pandas as pd
import pytest
from catalog_files import small_frame
from sqlalchemy import Engine
from sqlmodel import Session

from proplog.catalog import CatalogLoad, load_catalog_rows, read_catalog
from proplog.errors import LogValidationError


def _load(engine: Engine, frame: pd.DataFrame) -> CatalogLoad:
    with Session(engine) as session:
        return load_catalog_rows(session, frame)


def test_load_then_reload(engine: Engine) -> None:
    assert _load(engine, small_frame()) == CatalogLoad(loaded=3, new=3, updated=0)
    stored = read_catalog(engine)
    assert stored["item_id"].tolist() == [10, 20, 30]
    first = stored.set_index("item_id")
    assert first.loc[30, "genres"] == "drama|thriller" and first.loc[20, "genres"] == ""
    assert first.loc[20, "country"] == "NA"
    assert first.loc[20, "release_time"] == datetime(2021, 3, 4, 10, tzinfo=UTC)
    assert first.loc[10, "release_time"] == datetime(2019, 6, 1, tzinfo=UTC)  # naive is UTC

    assert _load(engine, small_frame()) == CatalogLoad(loaded=3, new=0, updated=0)

    changed = small_frame()
    changed.loc[changed["item_id"] == 10, "title"] = "Moon Harbour (Director's Cut)"
    extra = pd.DataFrame([{"item_id": 40, "title": "New", "genres": "comedy", "language": "en",
                           "country": "GB", "release_time": "2022-01-01"}])  # fmt: skip
    assert _load(engine, pd.concat([changed, extra])) == CatalogLoad(loaded=4, new=1, updated=1)
    again = read_catalog(engine).set_index("item_id")
    assert again.loc[10, "title"] == "Moon Harbour (Director's Cut)"
    assert again.loc[10, "created_at"] == first.loc[10, "created_at"]
    assert len(again) == 4


BAD_FILES = [
    ("missing column", lambda f: f.drop(columns=["language"]), "column language", None),
    ("duplicate id", lambda f: f.assign(item_id=[30, 10, 30]), "rows[2].item_id", "unique"),
    (
        "bad release_time",
        lambda f: f.assign(release_time=["2020-01-01", "soon", "2020-13-01"]),
        "rows[1].release_time",
        "ISO",
    ),
    ("empty title", lambda f: f.assign(title=["A", "B", "  "]), "rows[2].title", "non-empty"),
    ("negative id", lambda f: f.assign(item_id=[1, -2, 3]), "rows[1].item_id", ">= 0"),
    ("text id", lambda f: f.assign(item_id=["1", "x", "3"]), "rows[1].item_id", "integer"),
]


@pytest.mark.parametrize(
    ("change", "field", "expected"), [case[1:] for case in BAD_FILES], ids=[c[0] for c in BAD_FILES]
)
def test_a_bad_file_names_column_and_row_and_writes_nothing(
    engine: Engine,
    change: Callable[[pd.DataFrame], pd.DataFrame],
    field: str,
    expected: str | None,
) -> None:
    _load(engine, small_frame())
    before = read_catalog(engine)
    bad = change(small_frame().assign(language="xx"))  # good rows changed too: none written
    with pytest.raises(LogValidationError) as raised:
        _load(engine, bad)
    assert raised.value.field == field
    assert str(raised.value).startswith(field)
    if expected is not None:
        assert expected in raised.value.expected
    pd.testing.assert_frame_equal(read_catalog(engine), before)  # nothing written


def test_an_empty_log_reads_an_empty_frame(engine: Engine) -> None:
    frame = read_catalog(engine)
    assert frame.empty and "release_time" in frame.columns
