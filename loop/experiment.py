"""A/B experiments: their arms (a model file and any exploration policy of ``explore`` each,
with a traffic share), and the assignment of users to arms.

An arm names its policy family (``explore.registry``: ``greedy``, ``epsilon_greedy``,
``random_insertion``, ``plackett_luce``) with that family's parameters, and
optionally a relative exploration ``budget`` (the family is then calibrated per request); its
decisions log the policy's name and parameters as every decision does, and its arm.

A user's arm is a pure function of (experiment name, user id): the first 8 bytes of
BLAKE2b("<experiment>\\x1f<user id>") as a big-endian integer, modulo 10,000, is the user's
bucket, and arm j owns the buckets [10,000 · Σ_{i<j} share_i, 10,000 · Σ_{i≤j} share_i). It is
the same in every process and on every replica (Python's ``hash`` is salted per process, so it
is never used), and a user stays in one arm for the whole experiment. A decision records its arm
as ``"<experiment>:<arm>"`` in ``decision.arm``, so the analysis finds an experiment's decisions
by that prefix.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field, field_validator, model_validator

from explore import Policy, make_policy
from explore.registry import FAMILIES
from fm_core import Scorer

BUCKETS = 10_000
ARM_SEPARATOR = ":"
_NAME_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"


class ArmSettings(BaseModel):
    """One arm: who serves it (a model file and an exploration policy with its parameters) and
    its traffic share. Parameters a family does not have are ignored by it."""

    name: str = Field(pattern=_NAME_PATTERN)
    share: float = Field(gt=0.0, le=1.0)
    model_path: Path
    policy: str = "epsilon_greedy"
    epsilon: float = Field(default=0.1, ge=0.0, le=1.0)
    pool: int | None = Field(default=30, ge=1)
    temperature: float = Field(default=0.05, gt=0.0)
    uniform_mix: float = Field(default=0.0, ge=0.0, le=1.0)
    positions: tuple[int, ...] | None = None
    budget: float | None = Field(default=None, gt=0.0, lt=1.0)
    floor: float = Field(default=0.0, ge=0.0, lt=1.0)

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, policy: str) -> str:
        if policy not in FAMILIES:
            raise ValueError(f"policy must be one of {', '.join(sorted(FAMILIES))}; got {policy!r}")
        return policy

    @model_validator(mode="after")
    def _policy_builds(self) -> ArmSettings:
        try:
            self.make_policy()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"arm {self.name}: policy {self.policy}: {exc}") from None
        return self

    def make_policy(self) -> Policy:
        """The arm's policy, built by ``explore.make_policy``."""
        return make_policy(
            self.policy, epsilon=self.epsilon, pool=self.pool, positions=self.positions,
            temperature=self.temperature, uniform_mix=self.uniform_mix, budget=self.budget,
            floor=self.floor,
        )  # fmt: skip


class ExperimentSettings(BaseModel):
    """A named experiment with at least two arms whose shares add up to 1. The first arm is
    the control unless another is named ``control``."""

    name: str = Field(pattern=_NAME_PATTERN)
    arms: list[ArmSettings] = Field(min_length=2)

    @field_validator("arms")
    @classmethod
    def _valid_arms(cls, arms: list[ArmSettings]) -> list[ArmSettings]:
        names = [arm.name for arm in arms]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"arm names must be unique; got {', '.join(duplicated)} twice")
        total = math.fsum(arm.share for arm in arms)
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"arm shares must add up to 1; got {total}")
        return arms

    @model_validator(mode="after")
    def _every_arm_gets_buckets(self) -> ExperimentSettings:
        bounds = bucket_bounds(self)
        pairs = zip(self.arms, bounds[:-1], bounds[1:], strict=True)
        empty = [arm.name for arm, lo, hi in pairs if hi <= lo]
        if empty:
            raise ValueError(
                f"arm share too small for {BUCKETS} buckets: {', '.join(empty)} gets none"
            )
        return self

    @property
    def control(self) -> ArmSettings:
        return next((arm for arm in self.arms if arm.name == "control"), self.arms[0])

    @property
    def shares(self) -> dict[str, float]:
        """Each arm's configured traffic share, by name (what the sample-ratio check expects)."""
        return {arm.name: arm.share for arm in self.arms}


def bucket_bounds(experiment: ExperimentSettings) -> list[int]:
    """The bucket boundaries 0 = b_0 ≤ b_1 ≤ ... ≤ b_J = 10,000 of the arms, in order."""
    cumulative, bounds = 0.0, [0]
    for arm in experiment.arms[:-1]:
        cumulative += arm.share
        bounds.append(round(cumulative * BUCKETS))
    return [*bounds, BUCKETS]


def user_bucket(experiment_name: str, user_id: str) -> int:
    """The user's bucket in [0, 10,000) for this experiment (see the module docstring)."""
    digest = hashlib.blake2b(f"{experiment_name}\x1f{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def assign_arm(experiment: ExperimentSettings, user_id: str) -> ArmSettings:
    """The arm that serves ``user_id`` in ``experiment``."""
    bucket = user_bucket(experiment.name, user_id)
    bounds = bucket_bounds(experiment)
    for arm, hi in zip(experiment.arms, bounds[1:], strict=True):
        if bucket < hi:
            return arm
    raise AssertionError("bucket bounds end at BUCKETS")  # unreachable: bucket < BUCKETS


def arm_label(experiment_name: str, arm_name: str) -> str:
    """The value a decision stores in ``decision.arm``."""
    return f"{experiment_name}{ARM_SEPARATOR}{arm_name}"


@dataclass(frozen=True)
class LiveArm:
    """An arm ready to serve: its settings, its loaded scorer and its policy."""

    settings: ArmSettings
    label: str
    scorer: Scorer
    policy: Policy


@dataclass(frozen=True)
class LiveExperiment:
    """An experiment with every arm's model loaded."""

    settings: ExperimentSettings
    arms: dict[str, LiveArm]

    def arm_for(self, user_id: str) -> LiveArm:
        return self.arms[assign_arm(self.settings, user_id).name]

    @property
    def control(self) -> LiveArm:
        return self.arms[self.settings.control.name]


def load_experiment(
    settings: ExperimentSettings, *, scorers: dict[str, Scorer] | None = None
) -> LiveExperiment:
    """Load every arm's model file (``scorers`` may give an arm's scorer already loaded)."""
    from fm_core import load_scorer_file  # torch only for an FM file

    given = scorers or {}
    arms = {}
    for arm in settings.arms:
        scorer = given.get(arm.name)
        if scorer is None:
            if not arm.model_path.exists():
                raise FileNotFoundError(
                    f"experiment {settings.name}: arm {arm.name}'s model_path {arm.model_path} "
                    "does not exist"
                )
            scorer = load_scorer_file(arm.model_path)
        arms[arm.name] = LiveArm(
            settings=arm,
            label=arm_label(settings.name, arm.name),
            scorer=scorer,
            policy=arm.make_policy(),
        )
    return LiveExperiment(settings=settings, arms=arms)
