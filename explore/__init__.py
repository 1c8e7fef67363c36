"""Exploration policies: scores in, slates with exact propensities out.

Policies (all behind ``Policy``): ``GreedySlate``, ``EpsilonGreedySlate``, ``PlackettLuceSlate``,
``TopKRandomInsertion``, ``VowpalWabbitSlate`` (VW ``cb_explore_adf``), and ``CalibratedSlate``,
which picks each request's exploration within an ``ExplorationBudget``. ``audit_decision``
replays a logged decision from its id and compares.
``explore`` does not import torch: a scorer hands it arrays.
"""

from explore.audit import AuditResult, Mismatch, audit_decision
from explore.budget import Calibration, ExplorationBudget, calibrate, expected_plays
from explore.calibrated import CalibratedSlate
from explore.epsilon_greedy import EpsilonGreedySlate
from explore.greedy import GreedySlate
from explore.plackett_luce import PlackettLuceSlate
from explore.policy import Policy, greedy_order, top_order
from explore.random_insertion import TopKRandomInsertion
from explore.registry import make_policy, policy_for_record
from explore.seeding import rng_for_decision
from explore.slate import Slate
from explore.vw_format import ActionFeatures, RequestContext
from explore.vw_policy import VowpalWabbitSlate

__all__ = [
    "ActionFeatures",
    "AuditResult",
    "CalibratedSlate",
    "Calibration",
    "EpsilonGreedySlate",
    "ExplorationBudget",
    "GreedySlate",
    "Mismatch",
    "PlackettLuceSlate",
    "Policy",
    "RequestContext",
    "Slate",
    "TopKRandomInsertion",
    "VowpalWabbitSlate",
    "audit_decision",
    "calibrate",
    "expected_plays",
    "greedy_order",
    "make_policy",
    "policy_for_record",
    "rng_for_decision",
    "top_order",
]
