"""The offline-online agreement across experiments: the gate's predicted lift against the A/B
lift, each with its interval, summarized as the share of experiments whose intervals overlap,
the bias of the predictions (mean of predicted − A/B, with a Student-t interval over
experiments), their mean absolute error, and how often they had the A/B result's sign.

Input: one row per experiment and treatment arm (``proplog.ab_records``'s latest analysis of
each), with columns ``predicted``, ``predicted_lo``, ``predicted_hi``, ``observed``,
``observed_lo`` and ``observed_hi``; a row without a prediction is counted but not compared,
and so is one whose sample-ratio check flagged it (``srm_flagged``): its A/B lift is not to be
trusted, so it is not evidence about the gate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

COLUMNS = ("predicted", "predicted_lo", "predicted_hi", "observed", "observed_lo", "observed_hi")


@dataclass(frozen=True)
class Agreement:
    """The summary over the experiments with a prediction."""

    experiments: int
    with_prediction: int
    srm_flagged: int
    overlap_share: float
    bias: float
    bias_lo: float
    bias_hi: float
    mean_abs_error: float
    same_sign_share: float
    observed_in_predicted_share: float
    predicted_in_observed_share: float
    alpha: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def overlaps(frame: pd.DataFrame) -> pd.Series:
    """Per row, whether the predicted and observed intervals share a point."""
    return (frame["predicted_lo"] <= frame["observed_hi"]) & (
        frame["observed_lo"] <= frame["predicted_hi"]
    )


def agreement_summary(frame: pd.DataFrame, *, alpha: float = 0.05) -> Agreement:
    """The agreement of the rows that have both a prediction and an A/B result."""
    from scipy import stats

    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"the agreement rows lack column(s) {', '.join(missing)}")
    if frame.empty:
        raise ValueError("no stored A/B analysis to summarize; run `loopbreak ab analyze` first")
    flagged = (
        frame["srm_flagged"].fillna(False).astype(bool)
        if "srm_flagged" in frame.columns
        else pd.Series(False, index=frame.index)
    )
    rows = frame[~flagged].dropna(subset=list(COLUMNS))
    n = len(rows)
    if n == 0:
        nan = math.nan
        return Agreement(
            len(frame), 0, int(flagged.sum()), nan, nan, nan, nan, nan, nan, nan, nan, alpha
        )
    error = (rows["predicted"] - rows["observed"]).to_numpy(np.float64)
    bias = float(error.mean())
    if n > 1:
        half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * float(error.std(ddof=1)) / math.sqrt(n)
    else:
        half = math.inf
    return Agreement(
        experiments=len(frame),
        with_prediction=n,
        srm_flagged=int(flagged.sum()),
        overlap_share=float(overlaps(rows).mean()),
        bias=bias,
        bias_lo=bias - half,
        bias_hi=bias + half,
        mean_abs_error=float(np.abs(error).mean()),
        same_sign_share=float((np.sign(rows["predicted"]) == np.sign(rows["observed"])).mean()),
        observed_in_predicted_share=float(
            rows["observed"].between(rows["predicted_lo"], rows["predicted_hi"]).mean()
        ),
        predicted_in_observed_share=float(
            rows["predicted"].between(rows["observed_lo"], rows["observed_hi"]).mean()
        ),
        alpha=alpha,
    )
