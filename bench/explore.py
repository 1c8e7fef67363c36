"""``loopbreak bench explore``: decide latency beside Vowpal Wabbit, sampled frequencies, and
calibrated exploration against the simulator's ground truth.

1. Latency: each policy decides a slate of K = 20 out of n = 1,000 candidates, with every
   propensity, on P(play)-like scores; beside it, Vowpal Wabbit's ``cb_explore_adf --squarecb``
   predicts on the same 1,000 candidates (one multi-line example per request: the text is built
   and parsed outside the timed call, which times ``predict`` alone; parse + predict is reported
   too). VW returns one action's PMF, not a slate: the comparison favours VW. The ratio is
   ours / VW at the median.
2. Frequencies (see :mod:`bench.explore_frequencies`): chi-square p and the largest |z| of the
   sampled (position, item) counts against the propensities, per policy, on 8 candidates, K = 3.
3. Calibration (see :mod:`bench.explore_calibration`): per budget and calibrated policy, the
   planned cost, the true cost on the world's ground truth, and the mean parameter used.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from bench.explore_calibration import calibrated_policies, calibration_report
from bench.explore_frequencies import frequency_check
from bench.timing import sample_microseconds, summary
from explore import (
    EpsilonGreedySlate,
    ExplorationBudget,
    GreedySlate,
    PlackettLuceSlate,
    Policy,
    TopKRandomInsertion,
)

NUMPY_POLICIES = (
    "greedy",
    "epsilon_greedy",
    "random_insertion",
    "plackett_luce",
    "plackett_luce_uniform_mix",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=1000, help="candidates per request")
    parser.add_argument("--k", type=int, default=20, help="slate size")
    parser.add_argument("--pool", type=int, default=100, help="exploration pool (top M)")
    parser.add_argument("--repeats", type=int, default=2000, help="timed decisions per policy")
    parser.add_argument(
        "--decisions", type=int, default=100_000, help="sampled decisions per frequency check"
    )
    parser.add_argument(
        "--budgets", default="0.005,0.02", help="comma-separated relative exploration budgets"
    )
    parser.add_argument("--floor", type=float, default=0.0, help="propensity floor")
    parser.add_argument("--requests", type=int, default=200, help="simulated requests")
    parser.add_argument("--draws", type=int, default=50, help="sampled slates per request")
    parser.add_argument("--n-items", type=int, default=1000, help="simulated catalog size")
    parser.add_argument("--seed", type=int, default=0)


def policies(pool: int, budget: ExplorationBudget) -> dict[str, Policy]:
    return {
        "greedy": GreedySlate(),
        "epsilon_greedy": EpsilonGreedySlate(epsilon=0.1, pool=pool),
        "random_insertion": TopKRandomInsertion(epsilon=0.1, pool=pool),
        "plackett_luce": PlackettLuceSlate(temperature=0.02, pool=pool),
        "plackett_luce_uniform_mix": PlackettLuceSlate(
            temperature=0.02, pool=pool, uniform_mix=0.05
        ),
        **calibrated_policies(budget, pool),
    }


def _vw_latency(scores: np.ndarray, *, repeats: int, seed: int) -> dict[str, float]:
    """Median and p99 of VW ``cb_explore_adf --squarecb`` predict over the candidates, after a
    short online warm-up on random costs."""
    import vowpalwabbit

    rng = np.random.default_rng(seed)
    lines = ["shared |c surface=home device=tv"] + [
        f"|a id={j} score:{s:.9g}" for j, s in enumerate(scores)
    ]
    with_parse: list[float] = []
    predict_only: list[float] = []
    ws = vowpalwabbit.Workspace("--cb_explore_adf --squarecb --quiet")
    try:
        for _ in range(50):
            chosen = int(rng.integers(len(scores)))
            labelled = list(lines)
            labelled[chosen + 1] = (
                f"0:{-float(rng.random()):.6f}:{1 / len(scores):.9g} " + (labelled[chosen + 1])
            )
            ws.learn(labelled)
        for j in range(repeats + 20):
            start = _now()
            examples = ws.parse(lines)
            parsed = _now()
            ws.predict(examples)
            done = _now()
            ws.finish_example(examples)
            if j >= 20:
                with_parse.append(done - start)
                predict_only.append(done - parsed)
    finally:
        ws.finish()
    predict = summary(np.asarray(predict_only))
    parse = summary(np.asarray(with_parse))
    return {
        "decide_us_p50": predict["p50_us"],
        "decide_us_p99": predict["p99_us"],
        "parse_and_predict_us_p50": parse["p50_us"],
        "parse_and_predict_us_p99": parse["p99_us"],
    }


def _now() -> float:
    return time.perf_counter_ns() / 1000.0


def run(
    *,
    n: int = 1000,
    k: int = 20,
    pool: int = 100,
    repeats: int = 2000,
    decisions: int = 100_000,
    budgets: str = "0.005,0.02",
    floor: float = 0.0,
    requests: int = 200,
    draws: int = 50,
    n_items: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    budget_values = tuple(float(b) for b in budgets.split(",") if b.strip())
    budget = ExplorationBudget(relative_cost=budget_values[0], floor=floor)
    rng = np.random.default_rng(seed)
    scores = rng.beta(1.0, 8.0, size=n)  # P(play)-like: most candidates unlikely, a few likely
    timed = policies(pool, budget)
    out: dict[str, Any] = {"n": n, "k": k, "pool": pool, "repeats": repeats, "policies": {}}
    for name, policy in timed.items():
        decide_rng = np.random.default_rng(seed + 1)
        times = summary(
            sample_microseconds(
                lambda p=policy, g=decide_rng: p.decide(scores, k, g), repeats=repeats
            )
        )
        check = frequency_check(policy, decisions=decisions, seed=seed + 2)
        out["policies"][name] = {
            "decide_us_p50": times["p50_us"],
            "decide_us_p99": times["p99_us"],
            "chi2_p": check["chi2_p"],
            "max_abs_z": check["max_abs_z"],
            "frequency_check": check,
        }
    out["vw"] = _vw_latency(scores, repeats=min(repeats, 500), seed=seed)
    for entry in out["policies"].values():
        entry["ratio_to_vw_p50"] = entry["decide_us_p50"] / out["vw"]["decide_us_p50"]
    out["calibration"] = calibration_report(
        budgets=budget_values,
        floor=floor,
        k=k,
        pool=pool,
        requests=requests,
        draws=draws,
        n_items=n_items,
        seed=seed,
    )
    return out


def table(result: dict[str, Any]) -> str:
    rows = [
        f"decide K={result['k']} of n={result['n']} (pool {result['pool']}), "
        f"{result['repeats']} repeats; chi-square on 8 candidates, K=3",
        f"{'policy':<30}{'p50 µs':>9}{'p99 µs':>9}{'/ VW':>8}{'chi2 p':>9}{'max|z|':>8}",
    ]
    for name, r in result["policies"].items():
        rows.append(
            f"{name:<30}{r['decide_us_p50']:>9.1f}{r['decide_us_p99']:>9.1f}"
            f"{r['ratio_to_vw_p50']:>8.3f}{r['chi2_p']:>9.3f}{r['max_abs_z']:>8.2f}"
        )
    vw = result["vw"]
    rows.append(
        f"{'vw cb_explore_adf predict':<30}{vw['decide_us_p50']:>9.1f}{vw['decide_us_p99']:>9.1f}"
    )
    rows.append(
        f"{'vw parse + predict':<30}{vw['parse_and_predict_us_p50']:>9.1f}"
        f"{vw['parse_and_predict_us_p99']:>9.1f}"
    )
    rows.append("")
    rows.append("calibrated exploration on the simulated world (relative cost vs greedy)")
    rows.append(
        f"{'policy':<30}{'budget':>8}{'planned':>9}{'true':>9}{'sampled':>9}"
        f"{'parameter':>22}{'pool':>7}{'greedy':>8}"
    )
    for r in result["calibration"]:
        exact = "-" if r["true_cost_exact"] is None else f"{r['true_cost_exact']:.4f}"
        parameter = f"{r['parameter']} {r['mean_parameter']:.4g}"
        rows.append(
            f"{r['policy']:<30}{r['budget']:>8.4f}{r['planned_cost']:>9.4f}{exact:>9}"
            f"{r['true_cost_sampled']:>9.4f}{parameter:>22}{r['mean_pool']:>7.0f}"
            f"{r['greedy_share']:>8.2f}"
        )
    return "\n".join(rows)
