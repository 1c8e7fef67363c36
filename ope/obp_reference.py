"""obp's estimators as the reference for ours: the obp 0.4.1 counterpart of each of our standard
estimators, keyed by our name and built with the same parameters. The benchmark (``bench ope``)
and the tests that check our values against obp's to 1e-9 take them from here. obp is imported
only when they are asked for."""

from __future__ import annotations

from typing import Any

from ope.suite import DROS_LAMBDA, SWITCH_TAU


def obp_counterparts(
    *, dros_lambda: float = DROS_LAMBDA, switch_tau: float = SWITCH_TAU
) -> dict[str, Any]:
    """Our estimator name → obp's estimator (obp calls DRos ``dr-os``)."""
    from obp.ope import (
        DirectMethod,
        DoublyRobust,
        DoublyRobustWithShrinkage,
        InverseProbabilityWeighting,
        SelfNormalizedDoublyRobust,
        SelfNormalizedInverseProbabilityWeighting,
        SwitchDoublyRobust,
    )

    return {
        "ipw": InverseProbabilityWeighting(),
        "snipw": SelfNormalizedInverseProbabilityWeighting(),
        "dm": DirectMethod(),
        "dr": DoublyRobust(),
        "sndr": SelfNormalizedDoublyRobust(),
        "dros": DoublyRobustWithShrinkage(lambda_=dros_lambda),
        "switch-dr": SwitchDoublyRobust(tau=switch_tau),
    }
