"""What several commands share: the defaults read from the config dataclasses (``default_of``),
the options more than one command takes (``--json``, the database URL, ``--alpha``, the model
kind), the log's engine, and how a command refuses bad input (exit code 2, one ``error:`` line).

Light on purpose: every command module imports it while ``loopbreak --help`` is built.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine

EXIT_BAD_INPUT = 2

MODEL_FILE = "out/model.npz"
"""The model file the demo writes, and whose catalog ``tune`` takes by default (``retrain`` takes
the log's catalog unless given ``--catalog-from``)."""

_DATABASE_HELP = {
    "--db": "database URL (default: $LOOPBREAK_DATABASE_URL or SQLite)",
    "--database": "database URL (default: the service's)",
}


class CommandInputError(ValueError):
    """An option or input the command cannot use; the message says which and why."""


def default_of(config: type, name: str) -> Any:
    """The default of the field ``name`` of the dataclass ``config`` (a factory's value for a
    field with a factory), so that a command's default follows the config's."""
    for f in dataclasses.fields(config):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise ValueError(f"{config.__name__}.{name} has no default")
    raise AttributeError(f"{config.__name__} has no field {name!r}")


def config_option(
    parser: argparse.ArgumentParser,
    flag: str,
    config: type,
    field: str | None = None,
    help: str | None = None,
) -> None:
    """The option ``flag`` with the default, and the type, of ``config``'s field ``field`` (by
    default the flag's name: ``--min-ess`` is ``min_ess``)."""
    default = default_of(config, field or flag.removeprefix("--").replace("-", "_"))
    parser.add_argument(flag, type=type(default), default=default, help=help)


def fail(message: str) -> int:
    """Say what is wrong on stderr; the exit code of bad input or options."""
    print(f"error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def add_verbose(parser: argparse.ArgumentParser) -> None:
    """``-v``: log at INFO (``configure_logging``)."""
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")


def configure_logging(verbose: bool) -> None:
    """The commands' log format, at INFO with ``-v`` and WARNING without."""
    import logging

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip


def add_json(parser: argparse.ArgumentParser, text: str = "end with one JSON line") -> None:
    parser.add_argument("--json", action="store_true", help=text)


def add_database(parser: argparse.ArgumentParser, flag: str = "--database") -> None:
    """The log's URL: ``--db`` for the service's commands, ``--database`` for the analysts'."""
    parser.add_argument(flag, help=_DATABASE_HELP[flag])


def add_alpha(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alpha", type=float, default=0.05, help="1 - interval level")


def log_engine(url: str | None) -> Engine:
    """The log's engine, its tables created: ``url``, else the service's database."""
    from api.settings import Settings
    from proplog.engine import init_db, make_engine

    settings = Settings(**({"database_url": url} if url else {}))
    made = make_engine(settings.database_url)
    init_db(made)
    return made


def parse_when(text: str | None, option: str) -> datetime | None:
    """An ISO date or time option as an aware UTC datetime (naive times are UTC); None stays
    None."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise CommandInputError(f"{option} must be an ISO date or time; got {text!r}") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
