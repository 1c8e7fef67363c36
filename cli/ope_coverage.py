"""``loopbreak ope coverage``: interval coverage of every estimator on the simulated world.

The runs come from ``loop.coverage_world`` (uniform logging in a fixed world whose target value
is exact), the tally from ``ope.coverage``. The world's sizes default to ``CoverageWorldConfig``'s.
The command prints the table and, with ``--json``, one JSON line
``{"reps": ..., "coverage": {EST: {METHOD: share}}, "width": {...}, ...}`` last.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from cli.common import add_alpha, add_json, config_option, fail
from loop.coverage_config import CoverageWorldConfig

if TYPE_CHECKING:
    from ope.coverage import CoverageResult

logger = logging.getLogger(__name__)


def add_parser(ope_sub: Any) -> None:
    """``ope coverage`` and its options."""
    parser = ope_sub.add_parser(
        "coverage",
        help="coverage of every estimator's intervals over repeated runs in the simulated world",
    )
    parser.add_argument("--reps", type=int, default=200, help="repetitions (default 200)")
    config_option(
        parser,
        "--decisions",
        CoverageWorldConfig,
        help="logged decisions per repetition (default %(default)s)",
    )
    config_option(
        parser,
        "--candidates",
        CoverageWorldConfig,
        help="candidates per decision (default %(default)s)",
    )
    config_option(parser, "--k", CoverageWorldConfig, help="slate size (default %(default)s)")
    add_alpha(parser)
    parser.add_argument(
        "--bootstrap", type=int, default=200, help="bootstrap replicates per repetition"
    )
    parser.add_argument(
        "--refit-bootstrap",
        type=int,
        default=0,
        metavar="B",
        help="also the bootstrap that refits the reward model, B replicates per repetition, for "
        "DM and the doubly robust family (slow: B x 3 model fits per repetition; default off)",
    )
    config_option(parser, "--seed", CoverageWorldConfig, help="world seed; runs use 0..reps-1")
    add_json(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``loopbreak ope coverage``: the heading, the table and (``--json``) its JSON line."""
    from ope.coverage import coverage_table

    try:
        result = run_coverage(args)
    except ValueError as exc:  # a bad option: --reps, --k, --alpha, ...
        return fail(str(exc))
    print(coverage_heading(result))
    print(coverage_table(result))
    if args.json:
        print(json.dumps(result.as_json()))
    return 0


def run_coverage(args: argparse.Namespace) -> CoverageResult:
    """The coverage result of the parsed options; its ``config`` records the world's sizes."""
    from loop.coverage_world import CoverageWorld  # numpy, pandas: only when the command runs
    from ope import estimators
    from ope.coverage import measure_coverage

    if args.reps < 2:
        raise ValueError(f"--reps must be >= 2; got {args.reps}")
    config = CoverageWorldConfig(
        seed=args.seed, decisions=args.decisions, candidates=args.candidates, k=args.k
    )
    start = time.perf_counter()
    world = CoverageWorld(config)
    if args.refit_bootstrap < 0 or args.refit_bootstrap == 1:
        raise ValueError(f"--refit-bootstrap must be 0 (off) or >= 2; got {args.refit_bootstrap}")
    result = measure_coverage(
        world.runs(args.reps), estimators(), alpha=args.alpha, n_bootstrap=args.bootstrap,
        refit_bootstrap=args.refit_bootstrap,
    )  # fmt: skip
    result.config = config.as_dict() | {"seconds": round(time.perf_counter() - start, 1)}
    logger.info("coverage over %d runs in %.1f s", args.reps, result.config["seconds"])
    return result


def coverage_heading(result: CoverageResult) -> str:
    """One line naming the experiment behind the table."""
    c = result.config
    return (
        f"simulated world: {c['decisions']} decisions per run, uniform logging of {c['k']} of "
        f"{c['candidates']} candidates, target epsilon-greedy (eps={c['target_epsilon']}) over "
        f"noisy world scores; {c['seconds']} s"
    )
