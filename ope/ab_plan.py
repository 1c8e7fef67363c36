"""Planning an A/B test before it starts: the minimum detectable effect (MDE) for a number of
users, or the users needed for an MDE, and the confidence sequence's mixture τ² for that size.

The metric is rewards per decision with users randomized, so its per-user noise is the standard
deviation σ of the linearized per-user value L_u = (S_u − ȳ N_u) / N̄ (``ope.ab_cuped``),
measured on a pre-period window of the log as long as the planned test. With G users split by
shares p_T and p_C, Var(Δ̂) = σ² (1/(G p_T) + 1/(G p_C)), and a two-sided level-α test of a
true difference δ has power 1 − β when

    δ = (z_{1−α/2} + z_{1−β}) · sqrt(Var(Δ̂))      (the MDE for G users), so
    G = (z_{1−α/2} + z_{1−β})² σ² (1/p_T + 1/p_C) / δ²   (the users for an MDE δ).

(Normal approximation; Kohavi, Tang & Xu, "Trustworthy Online Controlled Experiments", 2020,
ch. 17.) ``baseline_noise`` measures σ from pre-period rows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from ope.ab_sequential import tau2_for_horizon


@dataclass(frozen=True)
class BaselineNoise:
    """The pre-period's mean reward per decision, its per-user σ, users and decisions."""

    mean: float
    sigma: float
    users: int
    decisions: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def baseline_noise(frame: pd.DataFrame) -> BaselineNoise:
    """σ of the linearized per-user value from per-decision rows (``user_id``, ``reward``)."""
    missing = [c for c in ("user_id", "reward") if c not in frame.columns]
    if missing:
        raise ValueError(f"the pre-period rows lack column(s) {', '.join(missing)}")
    users = frame.groupby("user_id")["reward"].agg(["sum", "size"])
    if len(users) < 2:
        raise ValueError(f"the pre-period needs at least 2 users; got {len(users)}")
    s, n = users["sum"].to_numpy(np.float64), users["size"].to_numpy(np.float64)
    mean = float(s.sum() / n.sum())
    linear = (s - mean * n) / n.mean()
    return BaselineNoise(
        mean=mean,
        sigma=float(linear.std(ddof=1)),
        users=len(users),
        decisions=int(n.sum()),
    )


@dataclass(frozen=True)
class Plan:
    """The plan of a two-arm comparison: either given users (→ MDE) or given MDE (→ users)."""

    sigma: float
    treatment_share: float
    control_share: float
    alpha: float
    power: float
    users: int
    mde: float
    variance_at_horizon: float
    tau2: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _z(alpha: float, power: float) -> float:
    from scipy import stats

    return float(stats.norm.ppf(1.0 - alpha / 2.0) + stats.norm.ppf(power))


def _check(sigma: float, treatment_share: float, control_share: float, alpha: float,
           power: float) -> None:  # fmt: skip
    if not (math.isfinite(sigma) and sigma > 0.0):
        raise ValueError(f"sigma (per-user noise) must be a positive number; got {sigma}")
    for name, share in (("treatment_share", treatment_share), ("control_share", control_share)):
        if not 0.0 < share < 1.0:
            raise ValueError(f"{name} must be in (0, 1); got {share}")
    if treatment_share + control_share > 1.0 + 1e-9:
        raise ValueError(
            f"treatment_share + control_share must be <= 1; got {treatment_share + control_share}"
        )
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1); got {power}")


def plan(
    *,
    sigma: float,
    treatment_share: float,
    control_share: float,
    alpha: float = 0.05,
    power: float = 0.8,
    users: int | None = None,
    mde: float | None = None,
) -> Plan:
    """Give exactly one of ``users`` (all arms together) and ``mde`` (absolute, in rewards per
    decision); the other is computed. τ² is set for the variance at that size."""
    _check(sigma, treatment_share, control_share, alpha, power)
    if (users is None) == (mde is None):
        raise ValueError("give exactly one of users and mde")
    factor = 1.0 / treatment_share + 1.0 / control_share
    z = _z(alpha, power)
    if users is not None:
        if users < 2:
            raise ValueError(f"users must be >= 2; got {users}")
        total = int(users)
        effect = z * sigma * math.sqrt(factor / total)
    else:
        assert mde is not None
        if not (math.isfinite(mde) and mde > 0.0):
            raise ValueError(f"mde must be a positive number; got {mde}")
        total = math.ceil((z * sigma / mde) ** 2 * factor)
        effect = float(mde)
    variance = sigma**2 * factor / total
    return Plan(
        sigma=sigma, treatment_share=treatment_share, control_share=control_share, alpha=alpha,
        power=power, users=total, mde=effect, variance_at_horizon=variance,
        tau2=tau2_for_horizon(variance, alpha=alpha),
    )  # fmt: skip
