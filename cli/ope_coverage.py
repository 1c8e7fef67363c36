"""``loopbreak ope coverage``: interval coverage of every estimator on the simulated world.

The runs come from ``loop.coverage_world`` (uniform logging in a fixed world whose target value
is exact), the tally from ``ope.coverage``. ``cli.main`` prints the table and, with ``--json``,
one JSON line ``{"reps": ..., "coverage": {EST: {METHOD: share}}, "width": {...}, ...}`` last.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import TYPE_CHECKING

from loop.coverage_config import CoverageWorldConfig

if TYPE_CHECKING:
    from ope.coverage import CoverageResult

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``ope coverage`` options."""
    defaults = CoverageWorldConfig()
    parser.add_argument("--reps", type=int, default=200, help="repetitions (default 200)")
    parser.add_argument(
        "--decisions",
        type=int,
        default=defaults.decisions,
        help="logged decisions per repetition (default %(default)s)",
    )
    parser.add_argument(
        "--candidates",
        type=int,
        default=defaults.candidates,
        help="candidates per decision (default %(default)s)",
    )
    parser.add_argument(
        "--k", type=int, default=defaults.k, help="slate size (default %(default)s)"
    )
    parser.add_argument("--alpha", type=float, default=0.05, help="1 - interval level")
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
    parser.add_argument("--seed", type=int, default=0, help="world seed; runs use 0..reps-1")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")


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
