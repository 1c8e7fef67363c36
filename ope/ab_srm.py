"""The sample-ratio-mismatch guard of an A/B test: are the users per arm what the configured
shares say they should be?

Users, not decisions, are the unit of assignment (``loop.experiment`` hashes the user), so the
counts compared are distinct users per arm. Pearson's chi-square goodness-of-fit test
(``scipy.stats.chisquare``) against the expected counts N · share_j, J − 1 degrees of freedom.
A p-value below ``alpha`` flags the experiment: its assignment or logging is broken, and its
difference in means is not to be trusted (Fabijan et al., "Diagnosing Sample Ratio Mismatch in
Online Controlled Experiments", KDD 2019). The default ``alpha`` of 0.001 is strict because the
check runs at every analysis of every experiment.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEFAULT_SRM_ALPHA = 0.001


@dataclass(frozen=True)
class SrmCheck:
    """The chi-square statistic, its p-value, and whether it flags the experiment."""

    observed: dict[str, int]
    expected: dict[str, float]
    shares: dict[str, float]
    chi2: float
    df: int
    pvalue: float
    alpha: float
    flagged: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sentence(self) -> str:
        seen = ", ".join(f"{arm} {n}" for arm, n in self.observed.items())
        want = ", ".join(f"{arm} {share:g}" for arm, share in self.shares.items())
        verdict = "SAMPLE RATIO MISMATCH" if self.flagged else "no sample ratio mismatch"
        return (
            f"{verdict}: users {seen} against shares {want}; chi2 {self.chi2:.3f} "
            f"(df {self.df}), p {self.pvalue:.3g} (flag below {self.alpha:g})"
        )


def check_shares(shares: Mapping[str, float]) -> dict[str, float]:
    """The configured shares, checked: at least two arms, each in (0, 1], adding up to 1."""
    if len(shares) < 2:
        raise ValueError(f"shares must name at least 2 arms; got {len(shares)}")
    checked = {}
    for arm, share in shares.items():
        value = float(share)
        if not (math.isfinite(value) and 0.0 < value <= 1.0):
            raise ValueError(f"share of arm {arm!r} must be in (0, 1]; got {share}")
        checked[str(arm)] = value
    total = math.fsum(checked.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"shares must add up to 1; got {total:g}")
    return checked


def srm_check(
    users_per_arm: Mapping[str, int],
    shares: Mapping[str, float],
    *,
    alpha: float = DEFAULT_SRM_ALPHA,
) -> SrmCheck:
    """Chi-square of the users seen per arm against the configured ``shares``. An arm seen in
    the log but not configured is an error; a configured arm nobody reached counts 0."""
    from scipy import stats

    if not 0.0 < alpha < 1.0:
        raise ValueError(f"srm alpha must be in (0, 1); got {alpha}")
    configured = check_shares(shares)
    unknown = sorted(set(users_per_arm) - set(configured))
    if unknown:
        raise ValueError(
            f"arm(s) {', '.join(unknown)} in the log are not among the configured shares "
            f"({', '.join(configured)})"
        )
    observed = {arm: int(users_per_arm.get(arm, 0)) for arm in configured}
    if any(n < 0 for n in observed.values()):
        raise ValueError(f"users per arm must be >= 0; got {observed}")
    total = sum(observed.values())
    if total == 0:
        raise ValueError("the SRM check needs at least one user; got none")
    expected = {arm: total * share for arm, share in configured.items()}
    result = stats.chisquare(
        np.array(list(observed.values()), dtype=np.float64),
        np.array(list(expected.values()), dtype=np.float64),
    )
    pvalue = float(result.pvalue)
    return SrmCheck(
        observed=observed,
        expected=expected,
        shares=configured,
        chi2=float(result.statistic),
        df=len(configured) - 1,
        pvalue=pvalue,
        alpha=alpha,
        flagged=pvalue < alpha,
    )
