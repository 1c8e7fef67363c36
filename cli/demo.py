"""``loopbreak demo``: the loop on the simulated world and SQLite, one table row a round.

The options' defaults are ``DemoConfig``'s and ``WorldConfig``'s; the loop is ``loop.demo``.
Afterwards it makes an API key (scopes decide, events) in the demo's log and writes its token to
``<out>/api_key`` (mode 0600), so that ``loopbreak serve`` on that log can be called at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.common import config_option, default_of
from loop.demo_config import DemoConfig
from loop.model_kinds import MODEL_KINDS
from sim.config import WorldConfig

if TYPE_CHECKING:
    from loop.demo import RoundResult

logger = logging.getLogger(__name__)

DEMO_KEY_SCOPES = ("decide", "events")


def add_parser(sub: Any) -> None:
    demo = sub.add_parser("demo", help="run the loop on the simulated world and SQLite")
    demo.add_argument("--out", default="out", help="output directory (default: ./out)")
    config_option(demo, "--rounds", DemoConfig, help="rounds, the first one uniform")
    config_option(demo, "--decisions", DemoConfig, "decisions_per_round", "decisions per round")
    config_option(demo, "--k", DemoConfig, help="slate size")
    config_option(demo, "--epsilon", DemoConfig, help="exploration rate")
    config_option(demo, "--seed", DemoConfig)
    config_option(demo, "--items", WorldConfig, "n_items", "catalog size of the world")
    config_option(demo, "--users", WorldConfig, "n_users", "users in the world")
    demo.add_argument(
        "--model",
        choices=MODEL_KINDS,
        default=default_of(DemoConfig, "model"),
        help="scorer retrained every round: the baseline, or the foundation model with its "
        "ranker (default: %(default)s)",
    )
    config_option(
        demo,
        "--holdout-share",
        DemoConfig,
        help="share of the previous round the model does not train on, for the off-policy "
        "estimate made before serving (default: %(default)s)",
    )
    demo.set_defaults(func=run)


def _fmt(value: float | None, width: int = 8) -> str:
    return f"{value:>{width}.4f}" if value is not None else f"{'-':>{width}}"


def _row(r: RoundResult) -> str:
    ci = f"[{r.primary_lo:7.3f}, {r.primary_hi:7.3f}]" if r.primary_lo is not None else "-"
    verdict = "-" if r.reliable is None else ("reliable" if r.reliable else "NOT reliable")
    return (
        f"{r.round:>5}  {r.policy:<34} {_fmt(r.true_reward)} {_fmt(r.primary)} {ci:>19} "
        f"{verdict:>12} {_fmt(r.ips)} {_fmt(r.snips)} {_fmt(r.unsupported)} "
        f"{_fmt(r.oracle_reward)} {_fmt(r.coverage)}"
    )


def _write_api_key(out: Path) -> Path:
    """A new key with :data:`DEMO_KEY_SCOPES` in ``out/demo.db``; its token in ``out/api_key``,
    readable by its owner only (a token left by an earlier run is replaced: its log is gone)."""
    from proplog.api_keys import create_key
    from proplog.engine import make_engine

    engine = make_engine(f"sqlite:///{out / 'demo.db'}")
    try:
        record, token = create_key(engine, "demo", DEMO_KEY_SCOPES)
    finally:
        engine.dispose()
    path = out / "api_key"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    logger.info("API key %s (scopes %s): token in %s", record.key_id, ",".join(record.scopes), path)
    return path


def run(args: argparse.Namespace) -> int:
    from loop.demo import demo_json, run_demo

    config = DemoConfig(
        rounds=args.rounds,
        decisions_per_round=args.decisions,
        k=args.k,
        epsilon=args.epsilon,
        seed=args.seed,
        model=args.model,
        holdout_share=args.holdout_share,
        world=WorldConfig(seed=args.seed, n_items=args.items, n_users=args.users),
    )
    header = (
        f"{'round':>5}  {'policy':<34} {'true':>8} {'primary':>8} {'95% interval':>19} "
        f"{'verdict':>12} {'ips':>8} {'snips':>8} {'unsupp':>8} {'oracle':>8} {'coverage':>8}"
    )
    print("loopbreak demo: the loop on the simulated world (reward = expected plays per slate)")
    print(header)
    print("-" * len(header))
    results = run_demo(args.out, config, on_round=lambda r: print(_row(r), flush=True))
    out = Path(args.out)
    (out / "demo.json").write_text(json.dumps(demo_json(results, config), indent=2))
    print(f"\nwrote {out / 'demo.json'}, {out / 'demo.db'} and {out / 'model.npz'}")
    key = _write_api_key(out)
    print(f"wrote {key}: the token of an API key (scopes {', '.join(DEMO_KEY_SCOPES)}), mode 0600")
    print(
        f"serve it:  loopbreak serve --db sqlite:///{out / 'demo.db'} --model {out / 'model.npz'}\n"
        f'call it:   curl -H "Authorization: Bearer $(cat {key})" -H "Content-Type: '
        'application/json" -d \'{"user_id": "u1", "surface": "home", "k": 5}\' '
        "localhost:8000/v1/decisions"
    )
    return 0
