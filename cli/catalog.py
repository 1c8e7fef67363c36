"""``loopbreak catalog load FILE``: the item catalog (titles, genres, language, country,
release time) into the log's ``catalog_item`` table (:mod:`proplog.catalog`), from which
``retrain`` (without ``--catalog-from``) and a cold-started ``serve`` take their catalog.

The file is CSV (every column read as text; empty cells are empty) or Parquet, by suffix.
Exit codes: 0 loaded; 2 bad input (unknown suffix, unreadable file, or a bad row: the message
names the column and the first bad row, and nothing is written).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.common import CommandInputError, add_database, add_json, fail, log_engine

if TYPE_CHECKING:
    import pandas as pd

SUFFIXES = (".csv", ".parquet")


def read_catalog_file(path: Path) -> pd.DataFrame:
    """The file as a frame: CSV as text (no NA guessing: a country ``NA`` stays ``NA``), or
    Parquet as stored."""
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise CommandInputError(
            f"{path}: a catalog file must end in {' or '.join(SUFFIXES)}; got {suffix or 'none'}"
        )
    if not path.is_file():
        raise CommandInputError(f"{path} does not exist")
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        return pd.read_parquet(path)
    except Exception as exc:  # pandas and pyarrow raise many kinds; the reason is in the text
        raise CommandInputError(f"{path} could not be read as {suffix[1:]}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import IntegrityError
    from sqlmodel import Session

    from proplog.catalog import load_catalog_rows
    from proplog.errors import LogValidationError

    path = Path(args.file)
    try:
        frame = read_catalog_file(path)
        engine = log_engine(args.database)
        try:
            with Session(engine) as session:
                done = load_catalog_rows(session, frame)
        finally:
            engine.dispose()
    except LogValidationError as exc:
        return fail(f"{path}: {exc}; nothing loaded")
    except IntegrityError:  # a concurrent load inserted one of the same new ids first
        return fail(f"{path}: another load wrote these titles meanwhile; nothing loaded, rerun")
    except CommandInputError as exc:
        return fail(str(exc))
    print(f"loaded {done.loaded} titles ({done.new} new, {done.updated} updated)")
    if args.json:
        print(json.dumps({"file": str(path), "loaded": done.loaded, "new": done.new,
                          "updated": done.updated}))  # fmt: skip
    return 0


def add_parser(sub: Any) -> None:
    group = sub.add_parser("catalog", help="the item catalog in the log: load titles from a file")
    commands = group.add_subparsers(dest="catalog_command", required=True, metavar="ACTION")
    load = commands.add_parser(
        "load", help="load (insert or update) titles from a CSV or Parquet file"
    )
    load.add_argument("file", help="CSV or Parquet: item_id, title, genres (a|b), language, "
                      "country, release_time (ISO)")  # fmt: skip
    add_database(load)
    add_json(load)
    load.set_defaults(func=run)
