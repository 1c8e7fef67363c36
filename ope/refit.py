"""The percentile bootstrap that refits the reward model inside every replicate.

The plain bootstrap of DM and the doubly robust estimators (``ope.moments``' Poisson bootstrap)
resamples decisions with their q̂ and v̂ held fixed, so it ignores that the reward model was itself
fitted on those decisions: its interval is too narrow wherever the model matters (DM above all).
Here each replicate b

1. draws n decisions with replacement (seeded by ``(seed, b)``);
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


def _with_model(
    batch: OpeBatch, rows: np.ndarray, q_hat: np.ndarray, v_hat: np.ndarray
) -> OpeBatch:
    """The batch's ``rows`` (a bootstrap draw, or all of them) with a fitted reward model."""
    return OpeBatch.from_arrays(
        reward=batch.reward[rows],
        pscore=batch.pscore[rows],
        target_pscore=batch.target_pscore[rows],
        q_hat=q_hat,
        v_hat=v_hat,
    )


def _check_inputs(batch: OpeBatch, action: np.ndarray, target: np.ndarray) -> None:
    n = batch.n_rows
    if not batch.one_row_per_decision or batch.n_slots != 1:
        raise OpeInputError("the refit bootstrap takes one row per decision (no slates)")
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
        batch: one row per decision: reward (binary), pscore, target_pscore; its q_hat and
            v_hat, if any, are replaced by the cross-fitted model's.
        design: features of (rows, actions), rows indexing ``batch``'s rows.
        action: (n,) the logged action index of each row.
        target: (n, n_actions) the target policy's probabilities at each row's context.
        model, n_folds: the reward model and its folds (``ope.reward_model.cross_fit``).
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
    n = batch.n_rows

    def fitted(rows: np.ndarray | None, fit_seed: int) -> OpeBatch:
        picked = np.arange(n) if rows is None else rows
        fit = cross_fit(
            lambda r, a: design(picked[r], a),
            reward=batch.reward[picked],
            action=action[picked],
            target=target[picked],
            model=model,
            n_folds=n_folds,
            seed=fit_seed,
            groups=None if rows is None else rows,
        )
        return _with_model(batch, picked, fit.q_hat, fit.v_hat)

    full = fitted(None, seed)
    point = {e.name: e.estimate(full) for e in chosen}
    replicates = np.full((n_bootstrap, len(chosen)), np.nan)
    for b in tqdm(range(n_bootstrap), desc="bootstrap refit", leave=False, disable=None):
        rows = np.random.default_rng([seed, b]).integers(n, size=n)
        if np.unique(rows).size < n_folds:
            continue  # too few distinct decisions to cross-fit; the replicate is dropped
        resampled = fitted(rows, seed + 1 + b)
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
    logger.info("refit bootstrap: %d replicates over %d decisions", n_bootstrap, n)
    return out
