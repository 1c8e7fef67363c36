"""The percentile bootstrap that refits the reward model inside every replicate.

The plain bootstrap of DM and the doubly robust estimators (``ope.moments``' Poisson bootstrap)
resamples decisions with their q̂ and v̂ held fixed, so it ignores that the reward model was itself
fitted on those decisions: its interval is too narrow wherever the model matters (DM above all).
Here each replicate b

1. draws the D decisions with replacement (seeded by ``(seed, b)``), each with all its rows
   (every slot of a slate);
2. refits the cross-fitted reward model (``ope.reward_model.cross_fit``) on the replicate, with
   the copies of one decision kept in one fold, so no decision's q̂ has seen itself;
3. recomputes q̂ and v̂ and re-estimates every estimator.

The interval is the (α/2, 1 − α/2) percentile of the replicates' estimates; the point estimate
and the diagnostics are those of the model fitted on all decisions. It costs ``n_bootstrap`` ×
``n_folds`` model fits and needs every decision and its features at once: unlike the other
intervals it cannot stream chunk by chunk over logs larger than memory (a model refit needs the
whole replicate), so it is an in-memory API rather than an option of ``loopbreak ope estimate``,
whose input contract carries no features.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from ope.batch import OpeBatch, OpeInputError
from ope.estimators import N_BOOTSTRAP, Estimate, Estimator
from ope.intervals import check_alpha
from ope.model_based import DM, DR, SNDR, DRos, SwitchDR
from ope.reward_model import Classifier, Design, cross_fit
from ope.suite import DROS_LAMBDA, SWITCH_TAU

logger = logging.getLogger(__name__)

INTERVAL = "bootstrap-refit"


def model_estimators(
    *, dros_lambda: float = DROS_LAMBDA, switch_tau: float = SWITCH_TAU
) -> list[Estimator]:
    """The estimators whose value depends on the reward model: dm, dr, sndr, dros, switch-dr."""
    return [DM(), DR(), SNDR(), DRos(lambda_=dros_lambda), SwitchDR(tau=switch_tau)]


@dataclass(frozen=True)
class RewardModelInputs:
    """What refitting the reward model needs, one entry per row of the batch.

    Attributes:
        design: features of (rows, actions), rows indexing the batch's rows.
        action: (n,) the logged action (candidate) index of each row.
        target: (n, n_actions) the target's probabilities at each row's context (and slot).
        model, n_folds: the reward model and its folds (``ope.reward_model.cross_fit``).
    """

    design: Design
    action: np.ndarray
    target: np.ndarray
    model: str | Callable[[], Classifier] = "logistic"
    n_folds: int = 3


def _check_inputs(batch: OpeBatch, action: np.ndarray, target: np.ndarray) -> None:
    n = batch.n_rows
    if action.shape != (n,):
        raise OpeInputError(f"action must have {n} rows like reward; got shape {action.shape}")
    if target.ndim != 2 or target.shape[0] != n:
        raise OpeInputError(f"target must be (n_rows={n}, n_actions); got shape {target.shape}")
    if action.min() < 0 or action.max() >= target.shape[1]:
        raise OpeInputError(f"action must be in [0, {target.shape[1]}); got {action.max()}")
    at_logged = target[np.arange(n), action]
    differs = np.abs(at_logged - batch.target_pscore) > 1e-9
    if differs.any():
        row = int(np.flatnonzero(differs)[0])
        raise OpeInputError(
            f"target at the logged action must equal target_pscore; got {at_logged[row]} and "
            f"{batch.target_pscore[row]} at row {row}"
        )


class DecisionRows:
    """The rows of each decision, to resample whole decisions (every slot of a slate)."""

    def __init__(self, decision: np.ndarray) -> None:
        self.order = np.argsort(decision, kind="stable")
        self.counts = np.bincount(decision)
        self.starts = np.concatenate(([0], np.cumsum(self.counts)[:-1]))

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(rows, the replicate's decision of each row) for D decisions drawn with
        replacement; two copies of a decision are two decisions of the replicate."""
        n_decisions = self.counts.size
        draws = rng.integers(n_decisions, size=n_decisions)
        count = self.counts[draws]
        first = np.repeat(self.starts[draws], count)
        within = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        return self.order[first + within], np.repeat(np.arange(n_decisions), count)


def estimate_with_refit(
    batch: OpeBatch,
    *,
    design: Design,
    action: np.ndarray,
    target: np.ndarray,
    model: str | Callable[[], Classifier] = "logistic",
    n_folds: int = 3,
    n_bootstrap: int = N_BOOTSTRAP,
    alpha: float = 0.05,
    seed: int = 0,
    chosen: Sequence[Estimator] | None = None,
) -> dict[str, Estimate]:
    """Estimates with the refit percentile bootstrap interval (``interval="bootstrap-refit"``).

    Args:
        batch: one row per decision, or per decision and slot for slates: reward (binary),
            pscore, target_pscore; its q_hat and v_hat, if any, are replaced by the
            cross-fitted model's. Decisions are resampled whole, and the rows of one decision
            share a fold.
        design, action, target, model, n_folds: see ``RewardModelInputs``.
        n_bootstrap: replicates, each refitting the model ``n_folds`` times.
        seed: seeds the folds and the replicates; the same seed gives the same answer.
        chosen: the estimators (default ``model_estimators()``).
    """
    alpha = check_alpha(alpha)
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 2:
        raise ValueError(f"n_bootstrap must be an int >= 2; got {n_bootstrap!r}")
    action = np.asarray(action, dtype=np.int64)
    target = np.asarray(target, dtype=np.float64)
    _check_inputs(batch, action, target)
    chosen = list(chosen) if chosen is not None else model_estimators()

    def fitted(rows: np.ndarray, decision: np.ndarray, fit_seed: int) -> OpeBatch:
        fit = cross_fit(
            lambda r, a: design(rows[r], a),
            reward=batch.reward[rows],
            action=action[rows],
            target=target[rows],
            model=model,
            n_folds=n_folds,
            seed=fit_seed,
            groups=batch.decision[rows],  # copies of a decision share its fold
        )
        return OpeBatch.from_arrays(
            reward=batch.reward[rows],
            pscore=batch.pscore[rows],
            target_pscore=batch.target_pscore[rows],
            decision_id=decision,
            slot=batch.slot[rows],
            q_hat=fit.q_hat,
            v_hat=fit.v_hat,
        )

    full = fitted(np.arange(batch.n_rows), batch.decision, seed)
    point = {e.name: e.estimate(full) for e in chosen}
    decisions = DecisionRows(batch.decision)
    replicates = np.full((n_bootstrap, len(chosen)), np.nan)
    for b in tqdm(range(n_bootstrap), desc="bootstrap refit", leave=False, disable=None):
        rows, decision = decisions.draw(np.random.default_rng([seed, b]))
        if np.unique(batch.decision[rows]).size < n_folds:
            continue  # too few distinct decisions to cross-fit; the replicate is dropped
        resampled = fitted(rows, decision, seed + 1 + b)
        replicates[b] = [e.finish(e.partial(resampled)).value for e in chosen]
    out: dict[str, Estimate] = {}
    for j, e in enumerate(chosen):
        values = replicates[:, j][np.isfinite(replicates[:, j])]
        if values.size < 2:
            lo, hi = -np.inf, np.inf
        else:
            lo, hi = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
        p = point[e.name]
        out[e.name] = Estimate(
            name=e.name,
            value=p.value,
            lo=float(lo),
            hi=float(hi),
            n_decisions=p.n_decisions,
            diagnostics=p.diagnostics | {"refit_replicates": float(values.size)},
            interval=INTERVAL,
        )
    logger.info("refit bootstrap: %d replicates over %d decisions", n_bootstrap, full.n_decisions)
    return out
