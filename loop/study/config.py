"""The size of a loop study and its arms (``StudyConfig``), kept free of heavy imports so that
``loopbreak study --help`` shows the defaults without loading the store or the scorers."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from sim.config import WorldConfig

BUILT_IN_ARMS: tuple[str, ...] = (
    "greedy",
    "search",
    "explore",
    "loopbreak",
    "oracle",
    "explore_unweighted",
)
"""``greedy``: the top K of the model's scores, retrained on recommendation plays only,
unweighted. ``search``: greedy serving, search-found plays in training at weight α.
``explore``: calibrated exploration within the budget, inverse-propensity-weighted training.
``loopbreak``: exploration, IPS weights and search plays together (the product's default).
``oracle``: the world's true best slate, the reference for regret and homogenization.
``explore_unweighted``: the ``explore`` arm's exploration with unweighted training, which
separates what exploring does from what the inverse-propensity weights do (not a default arm).
Any exploration family of ``explore.make_policy`` is an arm too: ``explore:<family>`` (IPS
weights) or ``loopbreak:<family>`` (IPS weights and search plays)."""

DEFAULT_ARMS: tuple[str, ...] = BUILT_IN_ARMS[:5]
REFERENCE_ARM = "greedy"
"""The arm every other arm's paired difference is taken from."""
ORACLE_ARM = "oracle"

GATE_MARGINS: tuple[float, ...] = (0.0, 0.02, 0.05)
"""Margins (expected plays per decision) at which the study runs the gate before each round and
measures it against the candidate's true lift over production."""

DEFAULT_SEARCH_WEIGHT = 0.25
"""α for the arms that train on search plays: the product's default
(``proplog.training_table.TrainingTableConfig.search_weight``, written here so that the command
line's help does not import the log; a test keeps the two equal). ``loopbreak tune search-weight``
picks larger values on uniformly logged data (4 at 600 decisions); the README reports the study
at α = 4 as well."""


@dataclass(frozen=True, kw_only=True)
class StudyConfig:
    """A closed-loop study: ``seeds`` worlds, each run by every arm for ``rounds`` rounds of
    ``decisions`` requests. Every arm of one seed sees the same world, members, requests and
    response randomness (common random numbers), so that differences are paired."""

    seeds: int = 20
    first_seed: int = 0
    rounds: int = 6
    decisions: int = 300
    k: int = 10
    days_per_round: float = 3.0
    budget: float = 0.005
    pool: int = 50
    search_weight: float = DEFAULT_SEARCH_WEIGHT
    holdout_share: float = 0.3
    arms: tuple[str, ...] = DEFAULT_ARMS
    workers: int = 2
    world: WorldConfig = field(default_factory=WorldConfig)

    def __post_init__(self) -> None:
        for name in ("seeds", "decisions", "k", "pool", "workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
        if not isinstance(self.rounds, int) or self.rounds < 2:
            raise ValueError(
                f"rounds must be an integer >= 2 (a warm-up and one retrained round); "
                f"got {self.rounds!r}"
            )
        if not self.days_per_round > 0:
            raise ValueError(f"days_per_round must be > 0; got {self.days_per_round}")
        if not 0.0 < self.budget < 1.0:
            raise ValueError(f"budget must be in (0, 1), a share of plays; got {self.budget}")
        if not self.search_weight >= 0.0:
            raise ValueError(f"search_weight must be >= 0; got {self.search_weight}")
        if not 0.0 < self.holdout_share < 1.0:
            raise ValueError(f"holdout_share must be in (0, 1); got {self.holdout_share}")
        if len(set(self.arms)) != len(self.arms) or not self.arms:
            raise ValueError(f"arms must be distinct and not empty; got {self.arms}")
        for arm in self.arms:
            check_arm_name(arm)

    def world_for(self, seed: int) -> WorldConfig:
        """The world of one seed: the configured world with that seed."""
        return replace(self.world, seed=seed)

    @property
    def arms_run(self) -> tuple[str, ...]:
        """The arms as asked, plus the oracle when it was left out: homogenization and
        popularity lift are measured against it."""
        return self.arms if ORACLE_ARM in self.arms else (*self.arms, ORACLE_ARM)

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))


def check_arm_name(arm: str) -> str:
    """``arm`` if it names a built-in arm or ``explore:<family>``/``loopbreak:<family>``."""
    if arm in BUILT_IN_ARMS:
        return arm
    kind, _, family = arm.partition(":")
    if kind in ("explore", "loopbreak") and family:
        return arm
    raise ValueError(
        f"arms: {arm!r} is not an arm; use one of {', '.join(BUILT_IN_ARMS)}, or "
        "explore:<family> / loopbreak:<family> with an exploration family of explore "
        "(epsilon_greedy, random_insertion, plackett_luce)"
    )
