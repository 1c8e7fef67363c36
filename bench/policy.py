"""``loopbreak bench policy``: the cost of exploration with exact propensities.

Times ``EpsilonGreedySlate.decide`` (K of n candidates, with every propensity) against the plain
greedy top K that a recommender without exploration would run (argpartition then sort), on the
same scores in one process, and reports both and their ratio.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.timing import sample_microseconds, summary
from explore import EpsilonGreedySlate


def run(*, n: int = 1000, k: int = 20, repeats: int = 2000, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    scores = rng.random(n)
    policy = EpsilonGreedySlate(epsilon=0.1, pool=3 * k)

    def greedy_top_k() -> np.ndarray:
        top = np.argpartition(-scores, k - 1)[:k]
        return top[np.argsort(-scores[top], kind="stable")]

    ours = summary(sample_microseconds(lambda: policy.decide(scores, k, rng), repeats=repeats))
    baseline = summary(sample_microseconds(greedy_top_k, repeats=repeats))
    return {
        "n": n,
        "k": k,
        "repeats": repeats,
        "epsilon_greedy": ours,
        "greedy_top_k": baseline,
        "ratio_p50": ours["p50_us"] / baseline["p50_us"],
    }


def table(result: dict[str, Any]) -> str:
    rows = [
        f"decide K={result['k']} of n={result['n']}, {result['repeats']} repeats",
        f"{'':<28}{'p50 µs':>10}{'p99 µs':>10}",
    ]
    for name in ("epsilon_greedy", "greedy_top_k"):
        r = result[name]
        rows.append(f"{name:<28}{r['p50_us']:>10.1f}{r['p99_us']:>10.1f}")
    rows.append(f"ratio (epsilon_greedy / greedy_top_k, p50): {result['ratio_p50']:.2f}")
    return "\n".join(rows)
