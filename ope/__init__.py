"""Off-policy evaluation: estimators with intervals and diagnostics over per-row arrays.

``ope`` does not import torch: scorers hand it arrays.
"""

from ope.batch import OpeBatch, OpeInputError
from ope.estimators import IPS, SNIPS, ClippedIPS, Estimate, Estimator
from ope.model_based import DM, DR, SNDR, DRos, SwitchDR
from ope.suite import DROS_LAMBDA, SWITCH_TAU, estimate_all, estimators

__all__ = [
    "DM",
    "DR",
    "DROS_LAMBDA",
    "IPS",
    "SNDR",
    "SNIPS",
    "SWITCH_TAU",
    "ClippedIPS",
    "DRos",
    "Estimate",
    "Estimator",
    "OpeBatch",
    "OpeInputError",
    "SwitchDR",
    "estimate_all",
    "estimators",
]
