"""The ``loopbreak`` command: serving, the demo, retraining, OPE and benchmarks."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger("loopbreak")


def _fmt(value: float | None, width: int = 8) -> str:
    return f"{value:>{width}.4f}" if value is not None else f"{'-':>{width}}"


def _cmd_demo(args: argparse.Namespace) -> int:
    from api.demo import DemoConfig, demo_json, run_demo
    from sim import WorldConfig

    config = DemoConfig(
        rounds=args.rounds,
        decisions_per_round=args.decisions,
        k=args.k,
        epsilon=args.epsilon,
        seed=args.seed,
        world=WorldConfig(seed=args.seed),
    )
    header = (
        f"{'round':>5} {'policy':<28} {'true':>8} {'ips':>8} {'ips 95% CI':>19} "
        f"{'snips':>8} {'oracle':>8} {'coverage':>8}"
    )
    print("loopbreak demo: the loop on the simulated world (reward = expected plays per slate)")
    print(header)
    print("-" * len(header))

    def show(r: object) -> None:
        ci = (
            f"[{r.ips_lo:7.3f}, {r.ips_hi:7.3f}]"  # type: ignore[attr-defined]
            if r.ips_lo is not None  # type: ignore[attr-defined]
            else f"{'-':>19}"
        )
        print(
            f"{r.round:>5} {r.policy:<28} {_fmt(r.true_reward)} {_fmt(r.ips)} {ci:>19} "  # type: ignore[attr-defined]
            f"{_fmt(r.snips)} {_fmt(r.oracle_reward)} {_fmt(r.coverage)}",  # type: ignore[attr-defined]
            flush=True,
        )

    results = run_demo(args.out, config, on_round=show)
    out = Path(args.out)
    (out / "demo.json").write_text(json.dumps(demo_json(results, config), indent=2))
    print(f"\nwrote {out / 'demo.json'}, {out / 'demo.db'} and {out / 'model.npz'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loopbreak",
        description="Exploration, propensity logging and off-policy evaluation around a "
        "recommender.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the loop on the simulated world and SQLite")
    demo.add_argument("--out", default="out", help="output directory (default: ./out)")
    demo.add_argument("--rounds", type=int, default=5)
    demo.add_argument("--decisions", type=int, default=1500, help="decisions per round")
    demo.add_argument("--k", type=int, default=10, help="slate size")
    demo.add_argument("--epsilon", type=float, default=0.1)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
