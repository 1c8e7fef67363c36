"""``loopbreak retrain``: the retraining job, a new model version learned from a window of the
log (``loop.retrain``), safe to schedule.

Exit codes: 0 done (or already done: the version is registered for this window); 2 bad input or
options; 3 another run holds the job's lock on this log; 4 nothing to learn (no decisions, or
no plays, in the window's training part).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from cli.common import (
    CommandInputError,
    add_database,
    fail,
    log_engine,
    parse_when,
)
from loop.model_kinds import MODEL_KINDS

EXIT_LOCKED = 3
EXIT_NOTHING_TO_LEARN = 4
JOB = "retrain"


def add_parser(sub: Any) -> None:
    from loop.retrain import DEFAULT_HOLDOUT_SHARE
    from proplog.training_table import NEGATIVE_MODES, TrainingTableConfig

    defaults = TrainingTableConfig()
    retrain = sub.add_parser("retrain", help="learn a new model version from the logs")
    add_database(retrain, "--db")
    retrain.add_argument("--out", required=True, help="where to write the new model (.npz)")
    retrain.add_argument(
        "--catalog-from",
        default=None,
        help="model whose item catalog to use (default: the log's, from loopbreak catalog load)",
    )
    retrain.add_argument("--version", help="version name (default: <model>-<UTC time>)")
    retrain.add_argument(
        "--model",
        choices=MODEL_KINDS,
        default="baseline",
        help="what to fit: the baseline, or the foundation model with its ranker",
    )
    retrain.add_argument("--since", help="first decision time (ISO) of the window")
    retrain.add_argument("--until", help="end time (ISO, excluded) of the window")
    retrain.add_argument(
        "--holdout-share", type=float, default=DEFAULT_HOLDOUT_SHARE,
        help="the latest share of the window's decisions kept out of training (the cut)",
    )  # fmt: skip
    retrain.add_argument(
        "--alpha", type=float, default=defaults.search_weight, help="weight of search plays"
    )
    retrain.add_argument(
        "--clip", type=float, default=defaults.clip_max, help="largest inverse propensity"
    )
    retrain.add_argument(
        "--negatives", choices=NEGATIVE_MODES, default=defaults.negatives,
        help="which unplayed slate positions are negatives",
    )  # fmt: skip
    retrain.add_argument(
        "--warm-start", metavar="VERSION",
        help="an FM version to start from (item table grown to the catalog; embeddings aligned)",
    )  # fmt: skip
    retrain.set_defaults(func=run)


NO_CATALOG = "no catalog: load one with loopbreak catalog load FILE or give --catalog-from"


def _log_catalog(log: Any) -> Any:
    """The log's catalog (``loopbreak catalog load``), for a run without ``--catalog-from``."""
    from loop.catalog import catalog_from_log

    catalog = catalog_from_log(log)
    if catalog is None:
        raise CommandInputError(NO_CATALOG)
    return catalog


def _catalog(path: str) -> Any:
    from fm_core import load_scorer_file

    if not Path(path).exists():
        raise CommandInputError(
            f"--catalog-from {path} does not exist; give the model file whose catalog to use"
        )
    return load_scorer_file(path).catalog


def run(args: argparse.Namespace) -> int:
    from loop.retrain import NothingToLearnError, retrain
    from proplog.job_lock import JobLockedError, job_lock
    from proplog.training_table import TrainingTableConfig

    for name in ("loop.retrain", "fm_core"):  # progress by default; -v adds the rest
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        table = TrainingTableConfig(
            search_weight=args.alpha, clip_max=args.clip, negatives=args.negatives
        )
        since, until = parse_when(args.since, "--since"), parse_when(args.until, "--until")
        catalog = None if args.catalog_from is None else _catalog(args.catalog_from)
        log = log_engine(args.db)
        catalog = _log_catalog(log) if catalog is None else catalog
        with job_lock(log, JOB):
            result = retrain(
                engine=log, catalog=catalog, out=Path(args.out), version=args.version,
                since=since, until=until, holdout_share=args.holdout_share, model=args.model,
                table=table, warm_start=args.warm_start,
            )  # fmt: skip
    except JobLockedError as exc:
        print(f"error: {exc}; not started")
        return EXIT_LOCKED
    except NothingToLearnError as exc:
        print(f"error: {exc}")
        return EXIT_NOTHING_TO_LEARN
    except (CommandInputError, ValueError, FileNotFoundError) as exc:
        return fail(str(exc))
    done = "registered" if result.created else "already registered for this window"
    print(
        f"model {result.version} ({done}): {result.decisions} decisions, {result.impressions} "
        f"impressions, {result.plays} plays -> {result.path}"
    )
    return 0
