"""Slate estimators over one row per (decision, slot), each an IPS with its own propensity:

- ``SlateStandardIPS`` ("sips"): the whole slate's weight π_e(s) / π_0(s) on every slot's reward.
  Unbiased for any reward, with the largest variance (Swaminathan et al. 2017's "standard" IPS).
- ``SlateIndependentIPS`` ("iips"): each row's item-position marginal weight. Unbiased when the
  reward at a slot depends only on the item there (Li et al. 2018). It is ``IPS`` on the marginal
  ``pscore`` / ``target_pscore`` columns, named for slates.
- ``SlateRewardInteractionIPS`` ("rips"): the weight of the slate's prefix up to the row's slot,
  unbiased under a cascade (a slot's reward depends on the items above it; McInerney et al.
  2020).

The names and numbers are obp 0.4.1's ``SlateStandardIPS``, ``SlateIndependentIPS`` and
``SlateRewardInteractionIPS`` (tests/ope/test_ope_slate.py checks them to 1e-9). explore logs all
three propensities for every slate: ``propensity`` (marginal), ``prefix_propensity``, and the
slate probability. The pseudo-inverse estimator ("pi", Swaminathan et al. 2017) is in
``ope.pseudo_inverse``: in closed form for uniform logging without replacement, and in general
for small candidate sets given the logging policy's pairwise marginals.
"""

from __future__ import annotations

import numpy as np

from ope.batch import OpeBatch
from ope.estimators import IPS, Bounds, Estimator, weighted_reward_range
from ope.pseudo_inverse import PseudoInverse


class _PropensityColumnIPS(Estimator):
    """IPS whose weights come from the pair of columns named in ``requires`` (logging, target),
    rather than from the marginal ``pscore`` / ``target_pscore``; diagnostics are over them."""

    def _weight(self, batch: OpeBatch) -> np.ndarray:
        logging_column, target_column = self.requires
        logged, target = getattr(batch, logging_column), getattr(batch, target_column)
        if logged is None or target is None:  # estimate() checks first; this guards direct calls
            raise ValueError(f"the batch has no {logging_column} / {target_column}")
        return target / logged

    def _round_terms(self, batch: OpeBatch) -> np.ndarray:
        return self._weight(batch) * batch.reward

    def _min_pscore(self, batch: OpeBatch) -> float:
        return float(np.min(getattr(batch, self.requires[0])))

    def _term_range(self, bounds: Bounds, weight_max: float) -> tuple[float, float] | None:
        return weighted_reward_range(bounds, weight_max)


class SlateStandardIPS(_PropensityColumnIPS):
    """V̂ = (1/N) Σ_i [π_e(s_i) / π_0(s_i)] Σ_k r_ik, from ``pscore_slate`` and
    ``target_pscore_slate``."""

    name = "sips"
    requires = ("pscore_slate", "target_pscore_slate")


class SlateIndependentIPS(IPS):
    """V̂ = (1/N) Σ_i Σ_k [π_e(a_ik at k) / π_0(a_ik at k)] r_ik: IPS on item-position
    marginals."""

    name = "iips"

    def supports(self, batch: OpeBatch) -> bool:
        """Only for slates: on one slot it would repeat ``ipw``."""
        return batch.n_slots > 1


class SlateRewardInteractionIPS(_PropensityColumnIPS):
    """V̂ = (1/N) Σ_i Σ_k [π_e(s_i,1..k) / π_0(s_i,1..k)] r_ik, from ``pscore_cascade`` and
    ``target_pscore_cascade``."""

    name = "rips"
    requires = ("pscore_cascade", "target_pscore_cascade")


def slate_estimators() -> list[Estimator]:
    """The slate estimators, in report order."""
    return [
        SlateStandardIPS(),
        SlateIndependentIPS(),
        SlateRewardInteractionIPS(),
        PseudoInverse(),
    ]
