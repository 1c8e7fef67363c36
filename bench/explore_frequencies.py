"""Sampled frequencies against logged propensities, for ``loopbreak bench explore``.

One policy decides ``decisions`` times on fixed small scores; for each position the counts of the
candidates shown there are compared with the marginals by a chi-square test, and every
(position, item) cell gets a z-score. The policy-level p is the smallest per-position p times the
number of positions (Bonferroni), capped at 1. Where a policy logs exact marginals they are the
expected frequencies (and each logged value must equal ``marginals``); where it logs NaN
(Plackett-Luce), the expected frequencies are its exact subset dynamic program.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from explore import Policy

SMALL_SCORES = np.array([0.12, 0.55, 0.31, 0.9, 0.05, 0.47, 0.72, 0.2])
SMALL_K = 3


def frequency_check(
    policy: Policy,
    *,
    decisions: int,
    seed: int,
    scores: np.ndarray = SMALL_SCORES,
    k: int = SMALL_K,
) -> dict[str, Any]:
    """{"chi2_p", "max_abs_z", "decisions", "logged_marginals"} for ``policy`` on ``scores``."""
    from scipy.stats import chisquare

    rng = np.random.default_rng(seed)
    marginals = policy.marginals(scores, k)
    counts = np.zeros_like(marginals)
    positions = np.arange(k)
    logged_mismatch = 0
    exact = True
    for _ in range(decisions):
        slate = policy.decide(scores, k, rng)
        counts[positions, slate.indices] += 1
        if slate.marginals_exact:
            logged_mismatch += int(
                np.any(slate.propensity != marginals[positions, slate.indices])
                and not np.allclose(
                    slate.propensity, marginals[positions, slate.indices], rtol=1e-12, atol=0
                )
            )
        else:
            exact = False
    expected = decisions * marginals
    support = marginals > 0
    p_values = [
        float(chisquare(counts[j, support[j]], expected[j, support[j]]).pvalue)
        for j in range(k)
        if support[j].sum() > 1
    ]
    variance = (expected * (1.0 - marginals))[support]
    z = (counts - expected)[support] / np.sqrt(np.maximum(variance, 1e-12))
    return {
        "chi2_p": min(1.0, k * min(p_values)) if p_values else 1.0,
        "max_abs_z": float(np.max(np.abs(z))) if z.size else 0.0,
        "decisions": decisions,
        "shown_outside_support": int(counts[~support].sum()),
        "logged_marginals": "exact" if exact else "NaN (not closed form)",
        "logged_marginal_mismatches": logged_mismatch,
    }
