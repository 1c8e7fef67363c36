"""The ``--engine`` and ``--master`` options of the commands that run in-process or on Spark
(``ope estimate``, ``ope report``), and the Spark session they start."""

from __future__ import annotations

import argparse
from typing import Any

from cli.common import CommandInputError

ENGINES = ("in-process", "spark")


def add_engine(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="in-process",
        help="in-process (default): this process, streamed; spark: one Spark job over the "
        "Parquet dataset, each partition reduced to mergeable partials (the same numbers)",
    )
    parser.add_argument(
        "--master",
        help="Spark master URL for --engine spark: local[N], local[*], spark://HOST:PORT, yarn "
        "(default local[2]); the input must be readable at the same path by every executor",
    )


def check_engine_options(args: argparse.Namespace) -> None:
    """``--master`` only with ``--engine spark``; the URL itself is checked when Spark starts."""
    if args.master is not None and args.engine != "spark":
        raise CommandInputError("--master needs --engine spark")


def engine_session(args: argparse.Namespace) -> Any:
    """The Spark session on ``--master`` (``ope.spark_session``)."""
    from ope.spark_session import DEFAULT_MASTER, spark_session

    return spark_session(args.master or DEFAULT_MASTER)
