"""Exploration policies: scores in, slates with exact propensities out.

``explore`` does not import torch: a scorer hands it arrays.
"""

from explore.epsilon_greedy import EpsilonGreedySlate
from explore.policy import Policy, greedy_order
from explore.seeding import rng_for_decision
from explore.slate import Slate

__all__ = ["EpsilonGreedySlate", "Policy", "Slate", "greedy_order", "rng_for_decision"]
