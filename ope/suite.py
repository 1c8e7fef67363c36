"""Run every estimator the input's columns allow."""

from __future__ import annotations

from ope.adaptive_ips import AdaptiveIPS
from ope.batch import OpeBatch
from ope.cascade_dr import CascadeDR
from ope.estimators import IPS, N_BOOTSTRAP, SNIPS, Bounds, ClippedIPS, Estimate, Estimator
from ope.model_based import DM, DR, SNDR, DRos, SwitchDR
from ope.slate import slate_estimators
from ope.streaming import stream_estimates

DROS_LAMBDA = 1.0
"""Default DRos shrinkage: obp's default (0) is DM, so we use 1, the value obp's examples use."""

SWITCH_TAU = 1.0
"""Default Switch-DR threshold: obp 0.4.1's ``SwitchDoublyRobust`` default."""


def estimators(
    *,
    dros_lambda: float = DROS_LAMBDA,
    switch_tau: float = SWITCH_TAU,
    clip: float | None = None,
) -> list[Estimator]:
    """Every estimator, in report order: ipw, snipw [, clipped-ipw], dm, dr, sndr, dros,
    switch-dr, the slate ones sips, iips, rips, pi (``ope.slate``), then cascade-dr
    (``ope.cascade_dr``) and aips (``ope.adaptive_ips``). ``clipped-ipw`` only when ``clip`` is
    given; each runs only where the input's columns allow."""
    out: list[Estimator] = [IPS(), SNIPS()]
    if clip is not None:
        out.append(ClippedIPS(lambda_=clip))
    out += [DM(), DR(), SNDR(), DRos(lambda_=dros_lambda), SwitchDR(tau=switch_tau)]
    return out + slate_estimators() + [CascadeDR(), AdaptiveIPS()]


def estimate_all(
    batch: OpeBatch,
    *,
    alpha: float = 0.05,
    dros_lambda: float = DROS_LAMBDA,
    switch_tau: float = SWITCH_TAU,
    clip: float | None = None,
    interval: str = "normal",
    bounds: Bounds | None = None,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = 0,
) -> dict[str, Estimate]:
    """Every estimator the batch's columns allow, by name, with intervals of kind ``interval``
    (``ope.intervals``). Over a log larger than memory, ``ope.streaming.stream_estimates``
    gives the same numbers chunk by chunk.

    IPS and SNIPS always (and clipped IPS when ``clip`` is given); DM when the batch has
    ``v_hat``; DR, SNDR, DRos and Switch-DR when it has both ``q_hat`` and ``v_hat``; the slate
    estimators when it has their propensity columns (cascade-dr also ``q_hat`` and
    ``v_hat_cascade``; aips the cascade and slate pairs, or a ``behavior`` column).
    Hyperparameters are checked (a number in [0, inf]) even when their estimator is skipped.
    """
    chosen = estimators(dros_lambda=dros_lambda, switch_tau=switch_tau, clip=clip)
    return stream_estimates(
        [batch], chosen, alpha=alpha, interval=interval, bounds=bounds,
        n_bootstrap=n_bootstrap, seed=seed,
    )  # fmt: skip
