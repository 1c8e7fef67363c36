"""CUPED: the A/B difference in means adjusted by each member's pre-period behaviour, which
narrows the interval without moving its centre in expectation (Deng, Xu, Kohavi & Walker,
"Improving the Sensitivity of Online Controlled Experiments by Utilizing Pre-Experiment Data",
WSDM 2013).

The metric is a ratio (rewards per decision, users randomized), so each arm's mean ȳ = ΣS_u / ΣN_u
is linearized per user (the delta method, Deng et al. 2013 §3.4): L_u = (S_u − ȳ N_u) / N̄, with
S_u and N_u the user's rewards and decisions and N̄ the arm's decisions per user. Its variance
Σ L_u² / (G (G − 1)) is the clustered variance of ``ope.ab``. The pre-period covariates X_u
(by default the member's plays and decisions before the experiment; 0 for a member new to the
log) enter by least squares, one θ pooled over the arms from within-arm centred values:

    θ = (Σ_arms X̃ᵀX̃)⁻¹ Σ_arms X̃ᵀL,   ȳ_a^cv = ȳ_a − θ·(X̄_a − X̄),   Var = Σ R_u² / (G (G − 1))

with X̃ = X − X̄_a within arm a, X̄ the pooled user mean and R_u = L_u − θ·X̃_u. The difference
of two adjusted means has the clustered interval's Welch–Satterthwaite degrees of freedom. The
covariates are measured before the experiment, so treatment cannot move them and the adjusted
difference stays unbiased; the share of variance removed is reported per arm.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from ope.ab import ArmSummary, Difference, difference


@dataclass(frozen=True)
class CupedArm:
    """One arm's adjusted mean, its variance, and the variance before adjustment."""

    arm: str
    users: int
    mean: float
    adjusted_mean: float
    var_mean: float
    adjusted_var_mean: float

    @property
    def variance_removed(self) -> float:
        return 1.0 - self.adjusted_var_mean / self.var_mean if self.var_mean > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"variance_removed": self.variance_removed}


@dataclass(frozen=True)
class CupedResult:
    """θ, the covariates it weighs, each arm adjusted, each treatment's adjusted difference."""

    covariates: list[str]
    theta: list[float]
    arms: dict[str, CupedArm]
    differences: dict[str, Difference]

    def as_dict(self) -> dict[str, Any]:
        return {
            "covariates": self.covariates,
            "theta": self.theta,
            "arms": {name: arm.as_dict() for name, arm in self.arms.items()},
            "differences": {name: d.as_dict() for name, d in self.differences.items()},
        }


def _user_table(frame: pd.DataFrame, covariates: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    users = frame.groupby(["arm", "user_id"], sort=True)["reward"].agg(["sum", "size"])
    users = users.reset_index().rename(columns={"sum": "s", "size": "n"})
    joined = users.merge(covariates[["user_id", *names]], on="user_id", how="left")
    joined[names] = joined[names].fillna(0.0).astype(np.float64)
    return joined


def cuped(
    frame: pd.DataFrame,
    covariates: pd.DataFrame,
    *,
    control: str,
    alpha: float = 0.05,
    names: list[str] | None = None,
) -> CupedResult:
    """The CUPED analysis of per-decision rows (``arm``, ``user_id``, ``reward``) with one row
    per user of pre-period ``covariates`` (``user_id`` and the columns ``names``; default all
    but ``user_id``). A user absent from ``covariates`` has every covariate 0."""
    if "user_id" not in covariates.columns:
        raise ValueError("the covariates lack column user_id")
    names = names if names is not None else [c for c in covariates.columns if c != "user_id"]
    if not names:
        raise ValueError("CUPED needs at least one covariate column besides user_id")
    if covariates["user_id"].duplicated().any():
        user = covariates.loc[covariates["user_id"].duplicated(), "user_id"].iloc[0]
        raise ValueError(f"the covariates must have one row per user; user {user!r} repeats")
    values = covariates[names].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("covariates must be finite")
    users = _user_table(frame, covariates, names)
    pooled_x = users[names].to_numpy().mean(axis=0)
    per_arm: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    xtx = np.zeros((len(names), len(names)))
    xtl = np.zeros(len(names))
    for arm, rows in users.groupby("arm", sort=True):
        s, n = rows["s"].to_numpy(np.float64), rows["n"].to_numpy(np.float64)
        mean = float(s.sum() / n.sum())
        linear = (s - mean * n) / n.mean()
        x = rows[names].to_numpy()
        centred = x - x.mean(axis=0)
        xtx += centred.T @ centred
        xtl += centred.T @ linear
        per_arm[str(arm)] = (linear, centred, mean)
    theta = np.linalg.lstsq(xtx, xtl, rcond=None)[0]
    arms: dict[str, CupedArm] = {}
    summaries: dict[str, ArmSummary] = {}
    for arm, rows in users.groupby("arm", sort=True):
        name = str(arm)
        linear, centred, mean = per_arm[name]
        g = linear.size
        if g < 2:
            raise ValueError(f"arm {name} needs at least 2 users for CUPED; got {g}")
        residual = linear - centred @ theta
        x_mean = rows[names].to_numpy().mean(axis=0)
        adjusted = mean - float(theta @ (x_mean - pooled_x))
        arms[name] = CupedArm(
            arm=name,
            users=g,
            mean=mean,
            adjusted_mean=adjusted,
            var_mean=float(linear @ linear) / (g * (g - 1)),
            adjusted_var_mean=float(residual @ residual) / (g * (g - 1)),
        )
        n_decisions = int(rows["n"].sum())
        summaries[name] = ArmSummary(
            arm=name, decisions=n_decisions, users=g, mean=adjusted, sd=float("nan"),
            var_mean_welch=float("nan"), var_mean_clustered=arms[name].adjusted_var_mean,
        )  # fmt: skip
    if control not in arms:
        raise ValueError(f"control arm {control!r} has no decisions; arms: {', '.join(arms)}")
    differences = {
        name: dataclasses.replace(
            difference(summary, summaries[control], alpha=alpha, interval="clustered"),
            interval="cuped",
        )
        for name, summary in summaries.items()
        if name != control
    }
    return CupedResult(
        covariates=list(names), theta=[float(t) for t in theta], arms=arms, differences=differences
    )
