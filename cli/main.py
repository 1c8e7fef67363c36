"""The ``loopbreak`` command: the top-level parser built from the command groups (one module each:
demo, study, serve, keys, retrain, export, ope, ab, models, catalog, tune, bench), logging, and the
dispatch to the chosen command.

A command module imports its heavy libraries only when its command runs, so that
``loopbreak --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cli import (
    ab,
    bench,
    catalog,
    demo,
    export,
    keys,
    models,
    ope,
    retrain,
    serve,
    study,
    tune,
)
from cli.common import add_verbose, configure_logging

GROUPS = (demo, study, serve, keys, retrain, export, ope, ab, models, catalog, tune, bench)
"""The command groups, in the order ``loopbreak --help`` lists them; each has ``add_parser``."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loopbreak",
        description="Exploration, propensity logging and off-policy evaluation around a "
        "recommender.",
    )
    add_verbose(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
