"""Off-policy evaluation: estimators with intervals and diagnostics over per-row arrays.

``ope`` does not import torch: scorers hand it arrays.
"""

from ope.batch import OpeBatch, OpeInputError
from ope.estimators import IPS, SNIPS, Estimate, Estimator, estimate_all

__all__ = ["IPS", "SNIPS", "Estimate", "Estimator", "OpeBatch", "OpeInputError", "estimate_all"]
