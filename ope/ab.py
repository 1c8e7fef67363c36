"""The A/B analysis: per arm the mean reward per decision, and each treatment's difference in
means from the control with a Welch interval, clustered by user.

Input: one row per decision with its ``arm``, ``user_id`` and ``reward`` (plays per decision,
or another reward read from the log). A user is assigned to one arm for the whole experiment
(``loop.experiment``) and usually makes several decisions, so decisions of one user are not
independent. Two intervals are given for Δ = ȳ_T − ȳ_C:

- **welch** (decisions independent): se² = s_T²/n_T + s_C²/n_C, Welch–Satterthwaite degrees of
  freedom (Welch 1947).
- **clustered** (users independent, the default): each arm's mean has the cluster-robust
  variance Var(ȳ) = G/(G − 1) · Σ_g (Σ_{i∈g} (y_i − ȳ))² / n², with G users and n decisions
  (Liang & Zeger 1986, with the usual small-sample factor); se² adds the two arms', and the
  degrees of freedom are Welch–Satterthwaite's with G − 1 per arm.

The OPE prediction made beforehand is attached by the caller (``attach_prediction``), so the
offline lift and the online difference can be compared over time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

INTERVAL_KINDS = ("clustered", "welch")


@dataclass(frozen=True)
class ArmSummary:
    """One arm's decisions, users, mean reward, and the variance of that mean both ways."""

    arm: str
    decisions: int
    users: int
    mean: float
    sd: float
    var_mean_welch: float
    var_mean_clustered: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_arm(arm: str, reward: np.ndarray, user: np.ndarray) -> ArmSummary:
    """The arm's summary; ``reward`` and ``user`` have one entry per decision."""
    n = reward.size
    if n < 2:
        raise ValueError(f"arm {arm} needs at least 2 decisions; got {n}")
    mean = float(reward.mean())
    sd = float(reward.std(ddof=1))
    codes, users = pd.factorize(user)
    g = users.size
    residual_sums = np.bincount(codes, weights=reward - mean, minlength=g)
    clustered = g / (g - 1) * float(residual_sums @ residual_sums) / n**2 if g > 1 else math.inf
    return ArmSummary(
        arm=arm,
        decisions=n,
        users=g,
        mean=mean,
        sd=sd,
        var_mean_welch=sd**2 / n,
        var_mean_clustered=clustered,
    )


@dataclass(frozen=True)
class Difference:
    """ȳ_treatment − ȳ_control with its (1 − α) interval of kind ``interval``."""

    treatment: str
    control: str
    value: float
    lo: float
    hi: float
    se: float
    df: float
    interval: str

    def contains(self, value: float) -> bool:
        return self.lo <= value <= self.hi

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def difference(
    treatment: ArmSummary, control: ArmSummary, *, alpha: float = 0.05, interval: str = "clustered"
) -> Difference:
    """The difference in means with a Welch interval (``interval``: clustered or welch)."""
    from scipy import stats

    if interval not in INTERVAL_KINDS:
        raise ValueError(f"interval must be one of {', '.join(INTERVAL_KINDS)}; got {interval!r}")
    if interval == "clustered":
        a, b = treatment.var_mean_clustered, control.var_mean_clustered
        dof_t, dof_c = treatment.users - 1, control.users - 1
    else:
        a, b = treatment.var_mean_welch, control.var_mean_welch
        dof_t, dof_c = treatment.decisions - 1, control.decisions - 1
    se = math.sqrt(a + b)
    denominator = (a**2 / dof_t if dof_t else math.inf) + (b**2 / dof_c if dof_c else math.inf)
    df = (a + b) ** 2 / denominator if denominator > 0 else math.inf
    value = treatment.mean - control.mean
    if not math.isfinite(se) or not df > 0:
        lo, hi = -math.inf, math.inf
    else:
        q = float(stats.t.ppf(1.0 - alpha / 2.0, df)) if math.isfinite(df) else 1.959963984540054
        lo, hi = value - q * se, value + q * se
    return Difference(
        treatment=treatment.arm,
        control=control.arm,
        value=value,
        lo=lo,
        hi=hi,
        se=se,
        df=df,
        interval=interval,
    )


@dataclass(frozen=True)
class AbResult:
    """Every arm's summary and every treatment's difference from the control, both ways."""

    arms: dict[str, ArmSummary]
    differences: dict[str, dict[str, Difference]]
    control: str
    alpha: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "control": self.control,
            "alpha": self.alpha,
            "arms": {name: arm.as_dict() for name, arm in self.arms.items()},
            "differences": {
                arm: {kind: d.as_dict() for kind, d in by_kind.items()}
                for arm, by_kind in self.differences.items()
            },
        }


def analyze(frame: pd.DataFrame, *, control: str, alpha: float = 0.05) -> AbResult:
    """The analysis of per-decision rows with columns ``arm``, ``user_id`` and ``reward``."""
    missing = [c for c in ("arm", "user_id", "reward") if c not in frame.columns]
    if missing:
        raise ValueError(f"the A/B rows lack column(s) {', '.join(missing)}")
    reward = frame["reward"].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(reward)):
        row = int(np.flatnonzero(~np.isfinite(reward))[0])
        raise ValueError(f"reward must be finite; got {reward[row]} at row {row}")
    arms = {
        str(name): summarize_arm(
            str(name), rows["reward"].to_numpy(np.float64), rows["user_id"].to_numpy()
        )
        for name, rows in frame.groupby("arm", sort=True)
    }
    if control not in arms:
        raise ValueError(f"control arm {control!r} has no decisions; arms: {', '.join(arms)}")
    differences = {
        name: {
            kind: difference(arm, arms[control], alpha=alpha, interval=kind)
            for kind in INTERVAL_KINDS
        }
        for name, arm in arms.items()
        if name != control
    }
    return AbResult(arms=arms, differences=differences, control=control, alpha=alpha)


def agreement(online: Difference, offline: dict[str, Any]) -> dict[str, Any]:
    """How the OPE lift predicted beforehand (``offline``: value, lo, hi) compares with the
    online difference: the error, and whether each point lies in the other's interval."""
    value, lo, hi = offline.get("value"), offline.get("lo"), offline.get("hi")
    if value is None:
        return {}
    return {
        "online_minus_offline": online.value - value,
        "offline_in_online_interval": online.contains(value),
        "online_in_offline_interval": (
            lo is not None and hi is not None and lo <= online.value <= hi
        ),
        "same_sign": (online.value > 0) == (value > 0),
    }
