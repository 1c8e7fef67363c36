"""``loopbreak bench NAME``: the benchmarks of ``bench/``, each with its own options; it prints
the benchmark's table and, with ``--json``, its result as the last line. The only importer of
``bench/``.

``python -m cli.bench NAME [options]`` runs one benchmark the same way without building the
rest of the command line, whose commands import the service and store stacks (SQLAlchemy,
pydantic, FastAPI) for their help. A compute benchmark then needs only its own libraries: ``fm``
runs on a machine that has torch, numpy, pandas, scipy and tqdm and nothing of loopbreak's
install, such as a bare GPU image (``make bench-gpu``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from typing import Any

from cli.common import add_json, add_verbose, configure_logging, fail

_GENERIC = frozenset({"command", "func", "verbose", "name", "json"})
"""The options that are the command's, not the benchmark's: the rest go to its ``run``."""


def add_parser(sub: Any) -> None:
    from bench import BENCHMARKS

    bench = sub.add_parser("bench", help="benchmarks, ours beside a baseline")
    bench_sub = bench.add_subparsers(dest="name", required=True, metavar="NAME")
    for name in BENCHMARKS:
        _add_benchmark(bench_sub, name)


def _add_benchmark(sub: Any, name: str) -> None:
    module = importlib.import_module(f"bench.{name}")
    one = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
    add_json(one)
    add_arguments = getattr(module, "add_arguments", None)
    if add_arguments is not None:  # the benchmark's own options, passed to its run()
        add_arguments(one)
    one.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"bench.{args.name}")
    options = {k: v for k, v in vars(args).items() if k not in _GENERIC}
    try:
        result = module.run(**options)
    except ValueError as exc:  # a bad option the benchmark refuses (its message names it)
        return fail(str(exc))
    print(module.table(result))
    if args.json:
        print(json.dumps(result))
    return 0


def standalone(argv: Sequence[str] | None = None) -> int:
    """``python -m cli.bench NAME [options]``: one benchmark, importing only its own module."""
    from bench import BENCHMARKS

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m cli.bench",
        description="One loopbreak benchmark, as `loopbreak bench NAME`, without the rest of the "
        "command line and its libraries.",
    )
    add_verbose(parser)
    sub = parser.add_subparsers(dest="name", required=True, metavar="NAME")
    # Only the named benchmark's module is imported; the others are listed by name.
    named = next((a for a in argv if not a.startswith("-")), None)
    for name in BENCHMARKS:
        if name == named:
            _add_benchmark(sub, name)
        else:
            sub.add_parser(name)
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(standalone())
