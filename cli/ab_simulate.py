"""``loopbreak ab simulate``: the A/B workflow on the simulated world against its truth: a
sequence of experiments (gate, plan, serve through the decision service, analyse daily), the
agreement tracker on them, the SRM check on a correct and a 55/45 experiment with its rates over
repeated assignments, and the error rates under daily peeking over repeated A/A experiments."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from cli.common import add_json, fail


def add_simulate(commands: Any) -> None:
    sim = commands.add_parser("simulate", help="the A/B workflow on the simulated world")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--experiments", type=int, default=12, help="experiments in the sequence")
    sim.add_argument("--decisions", type=int, default=900, help="decisions per experiment")
    sim.add_argument("--days", type=int, default=7, help="days per experiment (one look a day)")
    sim.add_argument("--users", type=int, default=300, help="members of the sequence's world")
    sim.add_argument("--srm-users", type=int, default=3000, help="members of the guards' world")
    sim.add_argument("--srm-decisions", type=int, default=6000, help="decisions per guard test")
    sim.add_argument("--runs", type=int, default=1000, help="repeated assignments per rate")
    sim.add_argument("--skip-guards", action="store_true", help="only the sequence")
    sim.add_argument("--skip-sequence", action="store_true", help="only the guards")
    sim.add_argument("--out", default="out/ab_simulate", help="folder (its logs are replaced)")
    add_json(sim)
    sim.set_defaults(func=run_simulate)


def _fresh_engine(path: Path) -> Any:
    from proplog.engine import init_db, make_engine

    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{path}")
    init_db(engine)
    return engine


def _width(lo: float | None, hi: float | None) -> float:
    return float("nan") if lo is None or hi is None else hi - lo


def _sequence(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    import pandas as pd

    from loop.ab_sim import AbSimulationConfig, run_sequence
    from ope.ab_agreement import agreement_summary
    from ope.ab_agreement_report import render_agreement_html, summary_lines
    from proplog.ab_records import latest_ab_analyses

    config = AbSimulationConfig(seed=args.seed, n_users=args.users, experiments=args.experiments,
                                decisions=args.decisions, days=args.days)  # fmt: skip
    engine = _fresh_engine(out / "sequence.db")
    started = time.perf_counter()
    experiments = run_sequence(engine, config, out)
    seconds = time.perf_counter() - started
    frame = pd.DataFrame([e.row() for e in experiments])
    summary = agreement_summary(latest_ab_analyses(engine))
    (out / "agreement.html").write_text(
        render_agreement_html(latest_ab_analyses(engine), summary), encoding="utf-8"
    )
    engine.dispose()
    truth = frame["truth"]
    covered = {
        "fixed": float(((frame["observed_lo"] <= truth) & (truth <= frame["observed_hi"])).mean()),
        "sequential": float(
            ((frame["sequential_lo"] <= truth) & (truth <= frame["sequential_hi"])).mean()
        ),
        "cuped": float(((frame["cuped_lo"] <= truth) & (truth <= frame["cuped_hi"])).mean()),
        "predicted": float(
            ((frame["predicted_lo"] <= truth) & (truth <= frame["predicted_hi"])).mean()
        ),
    }
    ratio = (frame["cuped_hi"] - frame["cuped_lo"]) / (frame["observed_hi"] - frame["observed_lo"])
    print(f"{'experiment':<12}{'policy':<18}{'truth':>8}{'gate':>11}{'predicted [interval]':>28}"
          f"{'A/B [interval]':>28}{'CUPED width':>12}{'SRM p':>8}")  # fmt: skip
    for row in frame.itertuples():
        predicted = "none"
        if row.predicted is not None and not pd.isna(row.predicted):
            predicted = f"{row.predicted:+.3f} [{row.predicted_lo:+.3f}, {row.predicted_hi:+.3f}]"
        observed = f"{row.observed:+.3f} [{row.observed_lo:+.3f}, {row.observed_hi:+.3f}]"
        width = _width(row.cuped_lo, row.cuped_hi) / _width(row.observed_lo, row.observed_hi)
        print(f"{row.experiment:<12}{row.policy:<18}{row.truth:>+8.3f}{row.gate:>11}"
              f"{predicted:>28}{observed:>28}{width:>12.3f}{row.srm_pvalue:>8.3f}")  # fmt: skip
    for line in summary_lines(summary):
        print(line)
    print(
        "truth inside: A/B fixed-horizon "
        f"{covered['fixed']:.0%}, always-valid {covered['sequential']:.0%}, CUPED "
        f"{covered['cuped']:.0%}, gate's prediction {covered['predicted']:.0%}"
    )
    print(
        f"CUPED interval width / unadjusted: mean {ratio.mean():.3f} (narrower by "
        f"{1 - ratio.mean():.1%}), range [{ratio.min():.3f}, {ratio.max():.3f}]"
    )
    print(f"sequence: {len(frame)} experiments in {seconds:.0f} s")
    return {
        "config": {k: v for k, v in vars(config).items()},
        "experiments": json.loads(frame.to_json(orient="records")),
        "agreement": summary.as_dict(),
        "truth_covered": covered,
        "cuped_width_ratio": {
            "mean": float(ratio.mean()),
            "min": float(ratio.min()),
            "max": float(ratio.max()),
        },
        "seconds": seconds,
        "looks": [e.looks for e in experiments],
    }


def _guards(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from loop.ab_sim_guards import GuardConfig, peeking, srm_served

    config = GuardConfig(seed=args.seed, n_users=args.srm_users, decisions=args.srm_decisions,
                         runs=args.runs)  # fmt: skip
    started = time.perf_counter()
    served = srm_served(_fresh_engine(out / "srm.db"), config, out)
    print(f"SRM, served through the decision service ({served.users} members):")
    print(f"  correct 50/50: {served.correct.sentence()}")
    print(f"  served {config.broken_shares[0]:g}/{config.broken_shares[1]:g}: "
          f"{served.broken.sentence()}")  # fmt: skip
    print(f"  over {config.runs} assignments: false alarms {served.false_alarms} at alpha "
          f"{config.srm_alpha:g}; 55/45 detected {served.detections}")  # fmt: skip
    print(f"  false alarms at alpha 0.05: {served.false_alarms_at_05}")
    result, tau2 = peeking(_fresh_engine(out / "aa.db"), config)
    print(f"A/A under daily peeking ({result.looks} looks, {config.runs} assignments, "
          f"tau2 {tau2:.3g}, alpha {config.alpha:g}):")  # fmt: skip
    print(f"  fixed-horizon interval excludes 0 at the last look {result.fixed_last}")
    print(f"  fixed-horizon interval excludes 0 at any look      {result.fixed_any}")
    print(f"  confidence sequence excludes 0 at any look         {result.sequential_any}")
    print(f"  CUPED interval excludes 0 at the last look         {result.cuped_last}")
    print(f"  width at the last look / fixed: CUPED {result.cuped_width_ratio:.3f}, "
          f"confidence sequence {result.sequential_width_ratio:.3f}")  # fmt: skip
    seconds = time.perf_counter() - started
    print(f"guards in {seconds:.0f} s")
    return {"srm": served.as_dict(), "peeking": result.as_dict(), "tau2": tau2,
            "seconds": seconds}  # fmt: skip


def run_simulate(args: argparse.Namespace) -> int:
    for name in ("experiments", "decisions", "days", "users", "srm_users", "srm_decisions",
                 "runs"):  # fmt: skip
        if getattr(args, name) < 1:
            return fail(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {}
    if not args.skip_sequence:
        document["sequence"] = _sequence(args, out)
    if not args.skip_guards:
        document["guards"] = _guards(args, out)
    from ope.report import finite_or_none

    document = finite_or_none(document)
    (out / "simulate.json").write_text(json.dumps(document, indent=2, allow_nan=False))
    print(f"wrote {out / 'simulate.json'}" + ("" if args.skip_sequence else
          f" and {out / 'agreement.html'}"))  # fmt: skip
    if args.json:
        print(json.dumps(document, allow_nan=False))
    return 0
