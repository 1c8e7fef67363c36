"""The cascade doubly robust slate estimator ("cascade-dr") of Kiyohara, Saito, Matsuhiro,
Narita, Shimizu & Yamamoto, "Doubly Robust Off-Policy Evaluation for Ranking Policies under the
Cascade Behavior Model", WSDM 2022 (§3.1).

Under the cascade assumption the reward at slot k depends on the items at slots 1..k only. With
prefix weights w_{1:k} = π_e(s_1..s_k) / π_0(s_1..s_k) (``target_pscore_cascade`` /
``pscore_cascade``; w_{1:0} = 1) the per-row term is

    w_{1:k} (r_k − q̂_k) + w_{1:k−1} ĉ_k,

summed over a decision's slots and averaged over decisions, where

- q̂_k (``q_hat``): the reward model at the logged item and position;
- ĉ_k (``v_hat_cascade``): the same model averaged over the target's conditional choice at slot k
  given the logged items above it, Σ_a π_e(a at k | x, s_1..s_{k−1}) q̂(x, a, k)
  (``ope.replay.prefix_conditionals`` gives that choice exactly; ``cascade_model_value`` turns it
  and q̂ into the column).

Unbiased under the cascade assumption for any fixed q̂: E_0[w_{1:k} q̂_k] and E_0[w_{1:k−1} ĉ_k]
are both the target's expected q̂ at slot k, so the model enters only as a control variate. With
q̂ = ĉ = 0 it is reward-interaction IPS (``rips``); a q̂ close to the cascade's expected reward
lowers the variance.

**How it relates to the paper.** The paper's estimator has exactly this form with a Q-function
Q̂_k(x, s_1..s_k) in place of q̂_k, fitted from the logs (obp's ``SlateCascadeDoublyRobust`` takes
Q̂ for every candidate at every slot and the target's conditional action distribution). Here the
input contract carries only the model at the logged item (``q_hat``) and its target average
(``v_hat_cascade``), so whatever reward model the rows bring is the Q-function: in this project a
per-position model q̂(x, a, k). Unbiasedness does not depend on that choice; only the variance
does.

Every decision's slots must be 0..K_i − 1 (w_{1:k−1} is read from the row at slot k − 1); a
decision with a gap or a repeated slot is refused naming its first row (counted in the batch,
as ``pi``'s errors are).
"""

from __future__ import annotations

import numpy as np

from ope.batch import OpeBatch, OpeInputError
from ope.estimators import Bounds, Estimator

_SHOWN_SLOTS = 8  # slots listed in an error message


def _column(batch: OpeBatch, name: str) -> np.ndarray:
    values = getattr(batch, name)
    if values is None:  # estimate() checks first; this guards direct calls
        raise ValueError(f"the batch has no {name}")
    return values


def previous_slot_rows(batch: OpeBatch) -> np.ndarray:
    """(n,) for each row, the row of the same decision at the slot above (−1 at slot 0).

    Raises:
        OpeInputError: naming the first row of the first decision whose slots are not
            0, 1, ..., K − 1 (a gap or a repeat).
    """
    n_dec, n_slots = batch.n_decisions, batch.n_slots
    rows = np.arange(batch.n_rows)
    cell = batch.decision.astype(np.int64) * n_slots + batch.slot
    occupied = np.bincount(cell, minlength=n_dec * n_slots).reshape(n_dec, n_slots)
    top = np.zeros(n_dec, dtype=np.int64)
    np.maximum.at(top, batch.decision, batch.slot)
    count = np.bincount(batch.decision, minlength=n_dec)
    bad = (occupied.max(axis=1) > 1) | (top + 1 != count)
    if bad.any():
        first = np.full(n_dec, batch.n_rows)
        np.minimum.at(first, batch.decision, rows)
        row = int(first[bad].min())
        slots = np.sort(batch.slot[batch.decision == batch.decision[row]])
        shown = ", ".join(str(s) for s in slots[:_SHOWN_SLOTS])
        more = ", ..." if slots.size > _SHOWN_SLOTS else ""
        raise OpeInputError(
            "slot must run 0, 1, ..., K-1 without gaps or repeats within each decision for "
            f"cascade-dr; got slots {shown}{more} for the decision at row {row}"
        )
    row_of = np.full(n_dec * n_slots, -1, dtype=np.int64)
    row_of[cell] = rows
    return np.where(batch.slot > 0, row_of[np.maximum(cell - 1, 0)], -1)


def cascade_model_value(
    conditionals: list[tuple[np.ndarray, np.ndarray]], q_hat: np.ndarray
) -> np.ndarray:
    """(K,) the ``v_hat_cascade`` of one logged slate: ĉ_k = Σ_a π_e(a at k | prefix) q̂(a, k).

    Args:
        conditionals: ``ope.replay.prefix_conditionals`` of the logged slate (an empty pair
            where the logged prefix has target probability 0: ĉ_k = 0 there).
        q_hat: (K, n) the reward model at every position and candidate.
    """
    q_hat = np.asarray(q_hat, dtype=np.float64)
    return np.array(
        [
            float(probability @ q_hat[position, candidates])
            for position, (candidates, probability) in enumerate(conditionals)
        ]
    )


class CascadeDR(Estimator):
    """V̂ = (1/N) Σ_i Σ_k [w_{1:k} (r_ik − q̂_ik) + w_{1:k−1} ĉ_ik] (see the module docstring).

    Needs ``q_hat``, ``v_hat_cascade``, ``pscore_cascade`` and ``target_pscore_cascade``. The
    diagnostics describe the prefix weights, as ``rips``'s do.
    """

    name = "cascade-dr"
    requires = ("q_hat", "v_hat_cascade", "pscore_cascade", "target_pscore_cascade")

    def _weight(self, batch: OpeBatch) -> np.ndarray:
        return _column(batch, "target_pscore_cascade") / _column(batch, "pscore_cascade")

    def _round_terms(self, batch: OpeBatch) -> np.ndarray:
        above = previous_slot_rows(batch)
        weight = self._weight(batch)
        weight_above = np.where(above >= 0, weight[np.maximum(above, 0)], 1.0)
        residual = batch.reward - _column(batch, "q_hat")
        return weight * residual + weight_above * _column(batch, "v_hat_cascade")

    def _min_pscore(self, batch: OpeBatch) -> float:
        return float(np.min(_column(batch, "pscore_cascade")))

    def _term_range(self, bounds: Bounds, weight_max: float) -> tuple[float, float] | None:
        """w (r − q̂) + w' ĉ with r, q̂, ĉ in the reward bounds, w in [0, W] and w' in
        [0, max(W, 1)] (w' is 1 at the first slot)."""
        spread = bounds.reward_max - bounds.reward_min
        above = max(weight_max, 1.0)
        return (
            -weight_max * spread + above * min(bounds.reward_min, 0.0),
            weight_max * spread + above * max(bounds.reward_max, 0.0),
        )
