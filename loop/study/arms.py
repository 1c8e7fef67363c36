"""How each arm of the loop study serves and retrains: its exploration policy (None for the
oracle, which serves the world's true best slate) and its training table's weights."""

from __future__ import annotations

from dataclasses import dataclass

from explore import GreedySlate, Policy, make_policy
from loop.study.config import ORACLE_ARM, StudyConfig, check_arm_name
from proplog.training_table import TrainingTableConfig

PRODUCT_FAMILY = "epsilon_greedy"
"""The exploration family of the built-in ``explore`` and ``loopbreak`` arms: the service's
default policy (``api.settings.Settings.policy``), calibrated within the study's budget."""


@dataclass(frozen=True)
class Arm:
    """One arm: its name, its serving policy (None: the oracle) and its training table."""

    name: str
    policy: Policy | None
    table: TrainingTableConfig | None

    @property
    def is_oracle(self) -> bool:
        return self.policy is None


def _table(*, ips: bool, search_weight: float) -> TrainingTableConfig:
    """Inverse-propensity weights (clipped and self-normalized, the product's defaults) or
    none (a clip of 1 makes every weight 1), and search plays at ``search_weight``."""
    if ips:
        return TrainingTableConfig(search_weight=search_weight, direct_weight=0.0)
    return TrainingTableConfig(
        clip_max=1.0, self_normalize=False, search_weight=search_weight, direct_weight=0.0
    )


def make_arm(name: str, config: StudyConfig) -> Arm:
    """The arm ``name`` (see ``loop.study.config.BUILT_IN_ARMS``) at ``config``'s budget, pool
    and α."""
    check_arm_name(name)
    alpha = config.search_weight
    if name == ORACLE_ARM:
        return Arm(name=name, policy=None, table=None)
    if name == "greedy":
        return Arm(name=name, policy=GreedySlate(), table=_table(ips=False, search_weight=0.0))
    if name == "search":
        return Arm(name=name, policy=GreedySlate(), table=_table(ips=False, search_weight=alpha))
    if name == "explore_unweighted":
        policy = make_policy(PRODUCT_FAMILY, pool=config.pool, budget=config.budget)
        return Arm(name=name, policy=policy, table=_table(ips=False, search_weight=0.0))
    kind, _, family = name.partition(":")
    policy = make_policy(family or PRODUCT_FAMILY, pool=config.pool, budget=config.budget)
    return Arm(
        name=name,
        policy=policy,
        table=_table(ips=True, search_weight=alpha if kind == "loopbreak" else 0.0),
    )
