"""``loopbreak bench NAME``: the benchmarks of ``bench/``, each with its own options; it prints
the benchmark's table and, with ``--json``, its result as the last line. The only importer of
``bench/``.
"""

from __future__ import annotations

import argparse
import importlib
import json
from typing import Any

from cli.common import add_json, fail

_GENERIC = frozenset({"command", "func", "verbose", "name", "json"})
"""The options that are the command's, not the benchmark's: the rest go to its ``run``."""


def add_parser(sub: Any) -> None:
    from bench import BENCHMARKS

    bench = sub.add_parser("bench", help="benchmarks, ours beside a baseline")
    bench_sub = bench.add_subparsers(dest="name", required=True, metavar="NAME")
    for name in BENCHMARKS:
        module = importlib.import_module(f"bench.{name}")
        one = bench_sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
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
