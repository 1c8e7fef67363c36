"""``loopbreak retrain``: a new model version learned from the log (``loop.retrain``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.common import MODEL_FILE, add_database, log_engine
from loop.model_kinds import MODEL_KINDS


def add_parser(sub: Any) -> None:
    retrain = sub.add_parser("retrain", help="learn a new model version from the logs")
    add_database(retrain, "--db")
    retrain.add_argument("--out", required=True, help="where to write the new model (.npz)")
    retrain.add_argument(
        "--catalog-from", default=MODEL_FILE, help="model whose item catalog to use"
    )
    retrain.add_argument("--version", help="version name (default: <model>-<UTC time>)")
    retrain.add_argument(
        "--model",
        choices=MODEL_KINDS,
        default="baseline",
        help="what to fit: the baseline, or the foundation model with its ranker",
    )
    retrain.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fm_core import load_scorer_file
    from loop.retrain import retrain

    log = log_engine(args.db)
    # The catalog travels with the model: take it from the model being replaced.
    catalog = load_scorer_file(args.catalog_from).catalog
    result = retrain(
        engine=log,
        catalog=catalog,
        out=Path(args.out),
        version=args.version,
        model=args.model,
    )
    print(
        f"model {result.version}: {result.decisions} decisions, {result.impressions} "
        f"impressions, {result.plays} plays -> {result.path}"
    )
    return 0
