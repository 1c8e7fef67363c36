"""Off-policy evaluation: estimators with intervals and diagnostics over per-row arrays, in
memory or streamed chunk by chunk over logs larger than memory.

``ope`` does not import torch: scorers hand it arrays.
"""

from ope.adaptive_ips import AdaptiveIPS
from ope.batch import BEHAVIORS, OpeBatch, OpeInputError
from ope.cascade_dr import CascadeDR
from ope.estimators import IPS, SNIPS, Bounds, ClippedIPS, Estimate, Estimator, Partial
from ope.gate import GateThresholds
from ope.gate import gate as gate_decision
from ope.intervals import INTERVALS
from ope.model_based import DM, DR, SNDR, DRos, SwitchDR
from ope.paired import paired_lift
from ope.pseudo_inverse import PseudoInverse
from ope.report import build_report
from ope.slate import SlateIndependentIPS, SlateRewardInteractionIPS, SlateStandardIPS
from ope.streaming import read_batches, stream_estimates
from ope.suite import DROS_LAMBDA, SWITCH_TAU, estimate_all, estimators
from ope.support import support_diagnostics

__all__ = [
    "BEHAVIORS",
    "DM",
    "DR",
    "DROS_LAMBDA",
    "INTERVALS",
    "IPS",
    "SNDR",
    "SNIPS",
    "SWITCH_TAU",
    "AdaptiveIPS",
    "Bounds",
    "CascadeDR",
    "ClippedIPS",
    "DRos",
    "Estimate",
    "Estimator",
    "GateThresholds",
    "OpeBatch",
    "OpeInputError",
    "Partial",
    "PseudoInverse",
    "SlateIndependentIPS",
    "SlateRewardInteractionIPS",
    "SlateStandardIPS",
    "SwitchDR",
    "build_report",
    "estimate_all",
    "estimators",
    "gate_decision",
    "paired_lift",
    "read_batches",
    "stream_estimates",
    "support_diagnostics",
]
