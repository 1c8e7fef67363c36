"""Policies by name: building one from settings, and rebuilding the one a logged decision used.

A decision record logs the policy's name and the exploration parameters actually used: the
policy's ``params()``, or, for a calibrated policy, ``Slate.exploration``, which names the family
under ``"policy"``. ``policy_for_record`` turns that back into the exact policy, so that an audit
or an off-policy replay of logged decisions uses the propensities the decision was sampled with.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from explore.budget import ExplorationBudget
from explore.calibrated import CalibratedSlate
from explore.epsilon_greedy import EpsilonGreedySlate
from explore.greedy import GreedySlate
from explore.plackett_luce import PlackettLuceSlate
from explore.policy import Policy
from explore.random_insertion import TopKRandomInsertion

FAMILIES: dict[str, type] = {
    "greedy": GreedySlate,
    "epsilon_greedy": EpsilonGreedySlate,
    "random_insertion": TopKRandomInsertion,
    "plackett_luce": PlackettLuceSlate,
}


ALIASES = {"uniform": "epsilon_greedy"}  # ε-greedy with ε = 1, as the demo's first round logs it


def _family(name: str) -> type:
    name = ALIASES.get(name, name)
    if name not in FAMILIES:
        raise ValueError(f"policy must be one of {sorted(FAMILIES)}; got {name!r}")
    return FAMILIES[name]


def _build(family: type, params: dict[str, Any]) -> Policy:
    fields = {f.name for f in dataclasses.fields(family)} - {"name", "version"}
    kwargs = {key: value for key, value in params.items() if key in fields}
    if kwargs.get("positions") is not None:
        kwargs["positions"] = tuple(int(p) for p in kwargs["positions"])
    return family(**kwargs)


def make_policy(
    name: str,
    *,
    epsilon: float = 0.1,
    pool: int | None = None,
    positions: tuple[int, ...] | None = None,
    temperature: float = 0.05,
    uniform_mix: float = 0.0,
    budget: float | None = None,
    floor: float = 0.0,
) -> Policy:
    """The policy ``name`` with these parameters (each family takes the ones it has). With a
    ``budget`` (relative, e.g. 0.005) the family is calibrated per request within it and the
    propensity ``floor``; its own exploration parameter is then chosen per request."""
    params = {
        "epsilon": epsilon,
        "pool": pool,
        "positions": positions,
        "temperature": temperature,
        "uniform_mix": uniform_mix,
    }
    base = _build(_family(name), params)
    if budget is None:
        return base
    return CalibratedSlate(base=base, budget=ExplorationBudget(relative_cost=budget, floor=floor))


def policy_for_record(policy_name: str, exploration: dict[str, Any]) -> Policy:
    """The policy one logged decision was sampled with, from its policy name and its logged
    exploration parameters."""
    family = exploration.get("policy", policy_name)
    return _build(_family(str(family)), exploration)
