"""The item catalog in the log: titles loaded from a file (``loopbreak catalog load``).

Owns the ``catalog_item`` rules and writes: :func:`validate_catalog_frame` checks a whole frame
before anything is written (each error a :class:`proplog.errors.LogValidationError` naming the
column and the first bad row, ``rows[3].release_time``, rows 0-based in the frame's order),
:func:`load_catalog_rows` upserts every row in one transaction (a changed row is updated, an
unchanged one left alone, so loading the same file twice writes nothing the second time), and
:func:`read_catalog` reads the table back as a frame sorted by ``item_id``.

Columns: ``item_id`` (integer >= 0, unique in the file; digits as text too), ``title``
(non-empty), ``genres`` (``|``-separated names; may be empty), ``language``, ``country`` (may
be empty), ``release_time`` (an ISO date or time; naive times are UTC).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from proplog.errors import LogValidationError
from proplog.schema import CatalogItem

logger = logging.getLogger(__name__)

CATALOG_COLUMNS = ("item_id", "title", "genres", "language", "country", "release_time")
"""The columns a catalog file must have (others are ignored)."""
GENRE_SEPARATOR = "|"
_FIELDS = ("title", "genres", "language", "country", "release_time")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_IN_CHUNK = 1000
"""Item ids per ``IN (...)`` when reading the stored rows of a file's ids."""


@dataclass(frozen=True)
class CatalogRow:
    """One validated row: ``genres`` normalized (names stripped, ``|``-joined)."""

    item_id: int
    title: str
    genres: str
    language: str
    country: str
    release_time: datetime


@dataclass(frozen=True)
class CatalogLoad:
    """What a load did: rows in the file, of which ``new`` were inserted and ``updated``
    changed (the rest were already stored as given)."""

    loaded: int
    new: int
    updated: int


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT


def _item_id(value: Any, field: str) -> int:
    if isinstance(value, bool | np.bool_):
        raise LogValidationError(field, "an integer >= 0", value)
    integral = (
        isinstance(value, int | np.integer)
        or (isinstance(value, float | np.floating) and float(value).is_integer())
        or (isinstance(value, str) and _INTEGER.fullmatch(value.strip()) is not None)  # CSV
    )
    if integral:
        number = int(value)
    else:
        raise LogValidationError(field, "an integer >= 0", _plain(value))
    if number < 0:
        raise LogValidationError(field, "an integer >= 0", number)
    return number


def _text(value: Any, field: str, *, required: bool = False) -> str:
    if _is_missing(value):
        value = ""
    if not isinstance(value, str):
        raise LogValidationError(field, "text", _plain(value))
    value = value.strip()
    if required and not value:
        raise LogValidationError(field, "non-empty text", value)
    return value


def _genres(value: Any, field: str) -> str:
    names = (name.strip() for name in _text(value, field).split(GENRE_SEPARATOR))
    return GENRE_SEPARATOR.join(name for name in names if name)


def _release_time(value: Any, field: str) -> datetime:
    expected = "an ISO date or time (naive times are UTC)"
    if isinstance(value, pd.Timestamp) and value is not pd.NaT:
        when = value.to_pydatetime()
    elif isinstance(value, datetime):
        when = value
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            raise LogValidationError(field, expected, value) from None
    else:
        raise LogValidationError(field, expected, _plain(value))
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _plain(value: Any) -> Any:
    """numpy scalars as Python values, so that an error message reads naturally."""
    return value.item() if isinstance(value, np.generic) else value


def validate_catalog_frame(frame: pd.DataFrame) -> list[CatalogRow]:
    """Every row of ``frame`` checked and normalized; raises on the first bad one."""
    missing = [name for name in CATALOG_COLUMNS if name not in frame.columns]
    if missing:
        raise LogValidationError(
            f"column {missing[0]}",
            "present (required: " + ", ".join(CATALOG_COLUMNS) + ")",
            [str(name) for name in frame.columns],
        )
    rows: list[CatalogRow] = []
    seen: dict[int, int] = {}
    values = zip(*(frame[name].tolist() for name in CATALOG_COLUMNS), strict=True)
    for i, (item, title, genres, language, country, released) in enumerate(values):
        item_id = _item_id(item, f"rows[{i}].item_id")
        if item_id in seen:
            raise LogValidationError(
                f"rows[{i}].item_id", f"unique in the file (also in rows[{seen[item_id]}])", item_id
            )
        seen[item_id] = i
        rows.append(
            CatalogRow(
                item_id=item_id,
                title=_text(title, f"rows[{i}].title", required=True),
                genres=_genres(genres, f"rows[{i}].genres"),
                language=_text(language, f"rows[{i}].language"),
                country=_text(country, f"rows[{i}].country"),
                release_time=_release_time(released, f"rows[{i}].release_time"),
            )
        )
    return rows


def _stored(session: Session, ids: list[int]) -> dict[int, CatalogItem]:
    stored: dict[int, CatalogItem] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        query = select(CatalogItem).where(col(CatalogItem.item_id).in_(chunk))
        stored.update((item.item_id, item) for item in session.exec(query))
    return stored


def _changed(item: CatalogItem, row: CatalogRow) -> bool:
    return any(getattr(item, name) != getattr(row, name) for name in _FIELDS)


def load_catalog_rows(session: Session, frame: pd.DataFrame) -> CatalogLoad:
    """Validate all of ``frame``, then insert its new titles and update its changed ones in one
    transaction (committed here; nothing is written when a row is bad)."""
    rows = validate_catalog_frame(frame)
    now = datetime.now(UTC)
    new = updated = 0
    try:
        stored = _stored(session, [row.item_id for row in rows])
        for row in rows:
            item = stored.get(row.item_id)
            if item is None:
                session.add(CatalogItem(**_values(row), created_at=now))
                new += 1
            elif _changed(item, row):
                for name in _FIELDS:
                    setattr(item, name, getattr(row, name))
                session.add(item)
                updated += 1
        session.commit()
    except Exception:
        session.rollback()
        raise
    logger.info("catalog: %d titles (%d new, %d updated)", len(rows), new, updated)
    return CatalogLoad(loaded=len(rows), new=new, updated=updated)


def _values(row: CatalogRow) -> dict[str, Any]:
    return {"item_id": row.item_id, **{name: getattr(row, name) for name in _FIELDS}}


def read_catalog(engine: Engine) -> pd.DataFrame:
    """The stored catalog, one row per item sorted by ``item_id``, with ``created_at``."""
    names = ("item_id", *_FIELDS, "created_at")
    with Session(engine) as session:
        items: Iterable[CatalogItem] = session.exec(
            select(CatalogItem).order_by(col(CatalogItem.item_id))
        )
        records = [{name: getattr(item, name) for name in names} for item in items]
    frame = pd.DataFrame.from_records(records, columns=list(names))
    return frame.astype({"item_id": "int64"})
