"""Repeated A/B experiments for the error rates of the guards, on logs served through the real
decision service in the simulated world.

A user's arm is a hash of (experiment name, user) (``loop.experiment``), so the experiments
that could have been run on one served log are the same log under other experiment names:

- **SRM**: the users of a served log assigned under ``runs`` names with the configured shares
  (the false-alarm rate of the check, which should be near its α) or with other served shares
  such as 55/45 against a 50/50 plan (its detection rate).
- **Peeking**: an A/A log (both arms the same model and policy, so the assignment changes
  nothing a member sees) re-randomized under ``runs`` names and analysed at the end of every day:
  how often the fixed-horizon interval excludes 0 at the last look, at any look (what peeking
  does to it), and how often the confidence sequence ever does (what it should keep under α);
  and CUPED's interval against the unadjusted one at the last look.

The runs share one log, so they are not independent: their rates are randomization rates of
that population (Fisher's sharp null), and their binomial intervals are optimistic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from loop.experiment import ExperimentSettings, assign_arm
from ope.ab import difference, summarize_arm
from ope.ab_cuped import cuped
from ope.ab_sequential import confidence_sequence
from ope.ab_srm import srm_check


@dataclass(frozen=True)
class Rate:
    """k events in n runs, with a Clopper-Pearson 95% interval."""

    events: int
    runs: int
    rate: float
    lo: float
    hi: float

    @classmethod
    def of(cls, events: int, runs: int) -> Rate:
        from scipy import stats

        ci = stats.binomtest(events, runs).proportion_ci(0.95, method="exact")
        return cls(events, runs, events / runs, float(ci.low), float(ci.high))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.rate:.3f} ({self.events}/{self.runs}, 95% [{self.lo:.3f}, {self.hi:.3f}])"


def _settings(name: str, shares: dict[str, float]) -> ExperimentSettings:
    return ExperimentSettings(
        name=name,
        arms=[{"name": arm, "share": share, "model_path": "-"} for arm, share in shares.items()],
    )


def assignments(users: np.ndarray, name: str, shares: dict[str, float]) -> np.ndarray:
    """Each user's arm in experiment ``name`` with ``shares``, by the service's hash."""
    settings = _settings(name, shares)
    return np.array([assign_arm(settings, str(u)).name for u in users])


def srm_rate(
    users: np.ndarray, *, planned: dict[str, float], served: dict[str, float], runs: int,
    alpha: float, prefix: str = "srm",
) -> Rate:  # fmt: skip
    """How often the SRM check flags ``runs`` experiments whose ``users`` were assigned with
    the ``served`` shares and are checked against the ``planned`` ones."""
    flagged = 0
    for run in range(runs):
        arms = assignments(users, f"{prefix}-{run}", served)
        counts = dict(zip(*np.unique(arms, return_counts=True), strict=True))
        flagged += srm_check(counts, planned, alpha=alpha).flagged
    return Rate.of(flagged, runs)


@dataclass(frozen=True)
class PeekingResult:
    """Null experiments analysed daily: rejections of the fixed-horizon interval at the last
    look and at any look, of the confidence sequence at any look; CUPED against unadjusted."""

    looks: int
    fixed_last: Rate
    fixed_any: Rate
    sequential_any: Rate
    cuped_last: Rate
    cuped_width_ratio: float
    cuped_width_ratio_range: tuple[float, float]
    sequential_width_ratio: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def null_peeking(
    rows: pd.DataFrame, covariates: pd.DataFrame, *, look_ends: list[Any], runs: int,
    tau2: float, alpha: float = 0.05, prefix: str = "aa",
) -> PeekingResult:  # fmt: skip
    """``rows``: an A/A log's decisions (user_id, created_at, reward); a look at each time of
    ``look_ends`` (decisions before it); ``covariates``: pre-period ones for CUPED."""
    users = rows["user_id"].unique()
    reward = rows["reward"].to_numpy(np.float64)
    user = rows["user_id"].to_numpy()
    ends = [np.datetime64(pd.Timestamp(t).tz_convert("UTC").tz_localize(None)) for t in look_ends]
    naive = pd.to_datetime(rows["created_at"], utc=True).dt.tz_localize(None).to_numpy()
    fixed_last = fixed_any = seq_any = cuped_last = 0
    cuped_ratios, seq_ratios = [], []
    for run in range(runs):
        arm_of = dict(zip(users, assignments(users, f"{prefix}-{run}", {"a": 0.5, "b": 0.5}),
                          strict=True))  # fmt: skip
        arm = np.array([arm_of[u] for u in user])
        earlier: list[tuple[float, float]] = []
        rejected_any = sequential_rejected = False
        for end in ends:
            seen = naive < end
            treat, control = seen & (arm == "b"), seen & (arm == "a")
            if treat.sum() < 2 or control.sum() < 2:
                continue
            fixed = difference(
                summarize_arm("b", reward[treat], user[treat]),
                summarize_arm("a", reward[control], user[control]),
                alpha=alpha,
            )
            seq = confidence_sequence(fixed.value, fixed.se**2, tau2=tau2, alpha=alpha,
                                      earlier=earlier)  # fmt: skip
            earlier.append((seq.lo, seq.hi))
            rejected_any |= not fixed.contains(0.0)
            sequential_rejected |= seq.rejects_null
        fixed_last += not fixed.contains(0.0)
        fixed_any += rejected_any
        seq_any += sequential_rejected
        seq_ratios.append((seq.hi - seq.lo) / (fixed.hi - fixed.lo))
        frame = pd.DataFrame({"arm": arm, "user_id": user, "reward": reward})
        adjusted = cuped(frame, covariates, control="a", alpha=alpha).differences["b"]
        cuped_last += not adjusted.contains(0.0)
        cuped_ratios.append((adjusted.hi - adjusted.lo) / (fixed.hi - fixed.lo))
    return PeekingResult(
        looks=len(ends), fixed_last=Rate.of(fixed_last, runs), fixed_any=Rate.of(fixed_any, runs),
        sequential_any=Rate.of(seq_any, runs), cuped_last=Rate.of(cuped_last, runs),
        cuped_width_ratio=float(np.mean(cuped_ratios)),
        cuped_width_ratio_range=(float(np.min(cuped_ratios)), float(np.max(cuped_ratios))),
        sequential_width_ratio=float(np.mean(seq_ratios)),
    )  # fmt: skip
