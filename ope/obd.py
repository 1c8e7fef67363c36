"""The Open Bandit Dataset check: estimate ZOZOTOWN's Bernoulli Thompson Sampling (BTS) policy
from the uniform-random logs, and compare with BTS's own on-policy click rate.

Data: the small sample bundled in obp 0.4.1 (10,000 rows per logging policy and campaign; Saito,
Aihara, Matsutani & Narita, "Open Bandit Dataset and Pipeline", NeurIPS 2021 Datasets and
Benchmarks). obp's own loader breaks on pandas 2 and later, so ``load_obd`` reads the files.

Protocol (Saito et al.; obp's ``examples/obd``): the target is BTS with ZOZOTOWN's production
prior, its action distribution π_e(item | position) computed by obp's ``BernoulliTS`` with
100,000 simulations; the truth is the mean click of the BTS logs; each run draws a bootstrap
sample of the random logs, cross-fits a reward model on it (``ope.reward_model``), runs every
estimator, and scores each by its relative error |V̂ − V| / V. The table averages the runs.

Each logged row (one impression at one of three positions) is its own decision, as in obp.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ope.batch import OpeBatch, OpeInputError
from ope.reward_model import cross_fit
from ope.suite import estimate_all

logger = logging.getLogger(__name__)

CAMPAIGNS = ("all", "men", "women")
POLICIES = ("random", "bts")
N_USER_FEATURES = 4
N_ITEM_FEATURES = 4

PUBLISHED_ALL = {
    "dm": 0.157,
    "ipw": 0.311,
    "snipw": 0.312,
    "dr": 0.292,
    "sndr": 0.302,
    "switch-dr": 0.258,
    "dros": 0.160,
}
"""Published relative errors on the small sample, campaign "all" (the issue's figures, from obp's
benchmark of the bundled sample); ours use our own reward model, so they differ in detail."""


def bundled_dir() -> Path:
    """Where obp keeps the small sample."""
    import obp

    return Path(obp.__file__).parent / "dataset" / "obd"


@dataclass(frozen=True)
class ObdLog:
    """One logging policy's rows for one campaign, as arrays.

    Attributes:
        reward: (n,) clicks. action: (n,) item ids 0..n_items-1. position: (n,) 0-based.
        pscore: (n,) logging propensity of (item, position).
        user: (n, u) one-hot user features. affinity: (n, n_items) user-item affinities.
        item: (n_items, f) item features (the numeric one, then one-hot categories).
    """

    policy: str
    campaign: str
    reward: np.ndarray
    action: np.ndarray
    position: np.ndarray
    pscore: np.ndarray
    user: np.ndarray
    affinity: np.ndarray
    item: np.ndarray

    @property
    def n_rows(self) -> int:
        return int(self.reward.size)

    @property
    def n_items(self) -> int:
        return int(self.item.shape[0])

    @property
    def len_list(self) -> int:
        return int(self.position.max()) + 1


def _require(frame: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise OpeInputError(f"{path} lacks column(s) {', '.join(missing)}")


def _one_hot(frame: pd.DataFrame) -> np.ndarray:
    return pd.get_dummies(frame.astype(str)).to_numpy(dtype=np.float64)


def load_obd(policy: str, campaign: str, *, data_dir: str | Path | None = None) -> ObdLog:
    """Read ``{policy}/{campaign}/{campaign}.csv`` and its ``item_context.csv``."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}; got {policy!r}")
    if campaign not in CAMPAIGNS:
        raise ValueError(f"campaign must be one of {', '.join(CAMPAIGNS)}; got {campaign!r}")
    folder = Path(data_dir) if data_dir is not None else bundled_dir()
    path = folder / policy / campaign / f"{campaign}.csv"
    items_path = folder / policy / campaign / "item_context.csv"
    for p in (path, items_path):
        if not p.exists():
            raise FileNotFoundError(f"Open Bandit Dataset file {p} does not exist")
    frame = pd.read_csv(path, index_col=0)
    items = pd.read_csv(items_path, index_col=0)
    user_columns = [f"user_feature_{j}" for j in range(N_USER_FEATURES)]
    _require(frame, ["item_id", "position", "click", "propensity_score", *user_columns], path)
    item_columns = [f"item_feature_{j}" for j in range(N_ITEM_FEATURES)]
    _require(items, ["item_id", *item_columns], items_path)
    n_items = int(items["item_id"].max()) + 1
    if sorted(items["item_id"]) != list(range(n_items)):
        raise OpeInputError(f"{items_path}: item_id must be 0..n_items-1, each once")
    affinity_columns = [f"user-item_affinity_{j}" for j in range(n_items)]
    _require(frame, affinity_columns, path)
    action = frame["item_id"].to_numpy(dtype=np.int64)
    if action.min() < 0 or action.max() >= n_items:
        row = int(np.flatnonzero((action < 0) | (action >= n_items))[0])
        raise OpeInputError(
            f"{path}: item_id must be in [0, {n_items}); got {action[row]} at row {row}"
        )
    click = frame["click"].to_numpy(dtype=np.float64)
    if not np.all(np.isin(click, (0.0, 1.0))):
        row = int(np.flatnonzero(~np.isin(click, (0.0, 1.0)))[0])
        raise OpeInputError(f"{path}: click must be 0 or 1; got {click[row]} at row {row}")
    positions = np.sort(frame["position"].unique())
    position = np.searchsorted(positions, frame["position"].to_numpy())
    items = items.sort_values("item_id")
    item = np.column_stack(
        [items["item_feature_0"].to_numpy(dtype=np.float64), _one_hot(items[item_columns[1:]])]
    )
    return ObdLog(
        policy=policy,
        campaign=campaign,
        reward=click,
        action=action,
        position=position.astype(np.int64),
        pscore=frame["propensity_score"].to_numpy(dtype=np.float64),
        user=_one_hot(frame[user_columns]),
        affinity=frame[affinity_columns].to_numpy(dtype=np.float64),
        item=item,
    )


def bts_action_dist(
    campaign: str, n_items: int, len_list: int, *, n_sim: int = 100_000, seed: int = 12345
) -> np.ndarray:
    """(n_items, len_list) BTS's probability of each item at each position, from obp's
    ``BernoulliTS`` with ZOZOTOWN's production prior (it has no context, so one row serves
    every decision)."""
    from obp.policy import BernoulliTS

    policy = BernoulliTS(
        n_actions=n_items,
        len_list=len_list,
        is_zozotown_prior=True,
        campaign=campaign,
        random_state=seed,
    )
    return policy.compute_batch_action_dist(n_rounds=1, n_sim=n_sim)[0]


def design_of(log: ObdLog) -> callable:  # type: ignore[valid-type]
    """Reward-model features of (rows, items): user one-hot, item one-hot, item features,
    position one-hot, and the user's affinity to that item."""
    item_one_hot = np.eye(log.n_items)
    position_one_hot = np.eye(log.len_list)

    def design(rows: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return np.column_stack(
            [
                log.user[rows],
                item_one_hot[actions],
                log.item[actions],
                position_one_hot[log.position[rows]],
                log.affinity[rows, actions],
            ]
        )

    return design


def resample(log: ObdLog, rows: np.ndarray) -> ObdLog:
    return ObdLog(
        policy=log.policy,
        campaign=log.campaign,
        reward=log.reward[rows],
        action=log.action[rows],
        position=log.position[rows],
        pscore=log.pscore[rows],
        user=log.user[rows],
        affinity=log.affinity[rows],
        item=log.item,
    )


@dataclass(frozen=True)
class ObdRun:
    """The inputs and estimates of one run."""

    batch: OpeBatch
    estimates: dict[str, float]
    q_all: np.ndarray | None = None


def estimate_run(
    log: ObdLog,
    action_dist: np.ndarray,
    *,
    model: str = "logistic",
    n_folds: int = 3,
    seed: int = 0,
) -> ObdRun:
    """Every estimator on one (possibly resampled) random log."""
    target = action_dist[:, log.position].T  # (n, n_items): π_e(item | the row's position)
    fit = cross_fit(
        design_of(log),
        reward=log.reward,
        action=log.action,
        target=target,
        model=model,
        n_folds=n_folds,
        seed=seed,
    )
    batch = OpeBatch.from_arrays(
        reward=log.reward,
        pscore=log.pscore,
        target_pscore=action_dist[log.action, log.position],
        q_hat=fit.q_hat,
        v_hat=fit.v_hat,
    )
    return ObdRun(batch, {name: e.value for name, e in estimate_all(batch).items()})


@dataclass
class CampaignResult:
    campaign: str
    truth: float
    clicks: int
    runs: list[dict[str, float]] = field(default_factory=list)

    def relative_errors(self) -> dict[str, np.ndarray]:
        names = self.runs[0].keys() if self.runs else ()
        return {
            n: np.array([abs(r[n] - self.truth) / self.truth for r in self.runs]) for n in names
        }

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            name: {
                "mean": float(errors.mean()),
                "sd": float(errors.std(ddof=1)) if errors.size > 1 else 0.0,
            }
            for name, errors in self.relative_errors().items()
        }


def evaluate_campaign(
    campaign: str,
    *,
    n_runs: int = 10,
    model: str = "logistic",
    n_folds: int = 3,
    seed: int = 12345,
    data_dir: str | Path | None = None,
) -> CampaignResult:
    """BTS estimated from bootstrap samples of the random logs, against BTS's on-policy value."""
    if isinstance(n_runs, bool) or not isinstance(n_runs, int) or n_runs < 1:
        raise ValueError(f"n_runs must be a positive int; got {n_runs!r}")
    random_log = load_obd("random", campaign, data_dir=data_dir)
    bts_log = load_obd("bts", campaign, data_dir=data_dir)
    truth = float(bts_log.reward.mean())
    action_dist = bts_action_dist(campaign, random_log.n_items, random_log.len_list, seed=seed)
    result = CampaignResult(campaign, truth, int(random_log.reward.sum()))
    rng = np.random.default_rng(seed)
    for run in range(n_runs):
        rows = rng.integers(random_log.n_rows, size=random_log.n_rows)
        sample = resample(random_log, rows)
        result.runs.append(
            estimate_run(
                sample, action_dist, model=model, n_folds=n_folds, seed=seed + run
            ).estimates
        )
        logger.info("campaign %s run %d done", campaign, run)
    return result
