"""Parquet datasets of OPE rows for the Spark engine's tests: slates of 1 to 3 positions with
every column of the input contract (each slate estimator runs) and a surface per decision,
written as day partitions with small row groups, so that Spark splits files, and decisions,
between its partitions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SLATE_ONLY = (
    "decision_id",
    "slot",
    "pscore_cascade",
    "target_pscore_cascade",
    "pscore_slate",
    "target_pscore_slate",
    "target_pscore_item",
    "v_hat_cascade",
)


def slate_rows(n_decisions: int, seed: int, *, prefix: str = "d") -> pd.DataFrame:
    """Rows of ``n_decisions`` logged slates: rewards in {0, 1}, propensities whose prefixes and
    whole-slate probabilities agree, a reward model in [0, 1], a ``surface`` segment."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 4, size=n_decisions)
    decision = np.repeat(np.arange(n_decisions), sizes)
    n = int(decision.size)
    pscore = rng.uniform(0.1, 1.0, n)
    target = rng.uniform(0.0, 1.0, n)
    target[rng.random(n) < 0.05] = 0.0
    by_decision = pd.Series(pscore).groupby(decision)
    cascade = by_decision.cumprod().to_numpy()
    target_cascade = pd.Series(target).groupby(decision).cumprod().to_numpy()
    return pd.DataFrame(
        {
            "decision_id": [f"{prefix}{seed}-{j:06d}" for j in decision],
            "slot": np.concatenate([np.arange(k) for k in sizes]),
            "reward": (rng.random(n) < 0.3).astype(np.float64),
            "pscore": pscore,
            "target_pscore": target,
            "q_hat": rng.uniform(0.0, 1.0, n),
            "v_hat": rng.uniform(0.0, 1.0, n),
            "pscore_cascade": cascade,
            "target_pscore_cascade": target_cascade,
            "pscore_slate": pd.Series(cascade).groupby(decision).transform("last").to_numpy(),
            "target_pscore_slate": pd.Series(target_cascade)
            .groupby(decision)
            .transform("last")
            .to_numpy(),
            "target_pscore_item": np.minimum(1.5 * target, 1.0),
            "v_hat_cascade": rng.uniform(0.0, 1.0, n),
            "surface": rng.choice(["home", "search", "title"], n_decisions)[decision],
        }
    )


def write_days(
    root: Path,
    days: int = 3,
    n_decisions: int = 1500,
    *,
    keyed: bool = True,
    row_group_rows: int = 400,
) -> list[pd.DataFrame]:
    """Day partitions ``root/day=2026-01-0D/part-0.parquet``; the frames written, in order.
    ``keyed=False`` drops ``decision_id`` and the slate columns (one decision per row)."""
    frames = []
    for day in range(days):
        frame = slate_rows(n_decisions, seed=day)
        if not keyed:
            frame = frame.drop(columns=list(SLATE_ONLY))
        folder = root / f"day=2026-01-{day + 1:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(folder / "part-0.parquet", row_group_size=row_group_rows, index=False)
        frames.append(frame)
    return frames
