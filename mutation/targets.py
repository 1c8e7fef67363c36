"""What `make mutation` mutates, and which tests each module answers to.

Each target is one library module and its own test files: a mutant of the module is run only
against those (mutmut further narrows that to the tests that reach the mutated function). The
paths are the import layout of the prepared copy (``mutation/run.py``), where the propensity log
sits in ``proplog/`` rather than ``logging/``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """One module to mutate: ``name`` labels the table row, ``source`` is its path in the copy,
    ``pytest_args`` narrows its tests further, and ``functions`` (mutmut's mutant-name globs,
    ``x_name`` for a function and ``xǁClassǁname`` for a method) limits the run to those
    functions of the module; empty: all of it."""

    name: str
    source: str
    tests: tuple[str, ...]
    pytest_args: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()

    @property
    def patterns(self) -> tuple[str, ...]:
        """The mutant names ``mutmut run`` is given (none: every mutant of the module)."""
        module = self.source.removesuffix(".py").replace("/", ".")
        return tuple(f"{module}.{function}__mutmut_*" for function in self.functions)


WORLD_TRUTH = (
    "examination",
    "_reconsumption",
    "play_probability",
    "intent_distribution",
    "completion_probability",
    "_expected_value_of_play",
    "item_rewards",
    "_anchored_play",
    "expected_reward",
    "policy_value",
    "oracle_slate",
)
"""The methods of ``sim.world.World`` that make its ground truth."""

TARGETS: tuple[Target, ...] = (
    Target(
        "ope/intervals.py",
        "ope/intervals.py",
        ("tests/ope/test_ope_coverage.py", "tests/ope/test_intervals_exact.py"),
    ),
    Target(
        "ope/estimators.py",
        "ope/estimators.py",
        (
            "tests/ope/test_ope_estimators.py",
            "tests/ope/test_ope.py",
            "tests/ope/test_estimators_exact.py",
        ),
    ),
    Target(
        "ope/slate.py",
        "ope/slate.py",
        ("tests/ope/test_ope_slate.py", "tests/ope/test_slate_exact.py"),
    ),
    Target(
        "ope/pseudo_inverse.py",
        "ope/pseudo_inverse.py",
        ("tests/ope/test_ope_pseudo_inverse.py", "tests/ope/test_pseudo_inverse_exact.py"),
    ),
    Target(
        "explore/epsilon_greedy.py",
        "explore/epsilon_greedy.py",
        ("tests/explore/test_explore_policies.py", "tests/explore/test_policy_exact.py"),
    ),
    Target(
        "explore/greedy.py",
        "explore/greedy.py",
        ("tests/explore/test_explore_policies.py", "tests/explore/test_policy_exact.py"),
    ),
    Target(
        "explore/random_insertion.py",
        "explore/random_insertion.py",
        ("tests/explore/test_explore_policies.py", "tests/explore/test_policy_exact.py"),
    ),
    Target(
        "explore/plackett_luce.py",
        "explore/plackett_luce.py",
        ("tests/explore/test_explore_policies.py", "tests/explore/test_policy_exact.py"),
    ),
    Target(
        "explore/policy.py",
        "explore/policy.py",
        ("tests/explore/test_explore_policies.py", "tests/explore/test_policy_exact.py"),
    ),
    Target(
        "explore/budget.py",
        "explore/budget.py",
        ("tests/explore/test_explore_budget.py", "tests/explore/test_budget_exact.py"),
    ),
    Target(
        "logging/validation.py",
        "proplog/validation.py",
        (
            "tests/proplog/test_store_bad_input.py",
            "tests/proplog/test_store_input_rules.py",
            "tests/proplog/test_validation_exact.py",
        ),
        # The rules run before any write, the same on both backends: SQLite only, so that no
        # mutant waits for a PostgreSQL server to start.
        ("-k", "not postgres"),
    ),
    Target(
        "logging/training_table.py",
        "proplog/training_table.py",
        ("tests/proplog/test_training_table.py", "tests/proplog/test_training_table_exact.py"),
        ("-k", "not postgres"),  # the table is built from frames: the back end does not matter
    ),
    Target(
        "sim/world.py (ground truth)",
        "sim/world.py",
        ("tests/sim/test_sim.py", "tests/sim/test_world_truth.py"),
        # Not the Monte-Carlo agreement checks (marked slow): under mutmut's trampolines they take
        # minutes per mutant, and the exact-value tests pin the same formulas.
        ("-m", "not slow"),
        # The ground truth: examination, play, intent and completion probabilities, r(x, i),
        # V(x, s), a policy's value and the oracle. Not the behaviour model itself (affinity,
        # request sampling, respond, record), whose numbers the truth takes as given.
        functions=(
            "x_examination_probabilities",
            "x__sigmoid",
            *(f"xǁWorldǁ{name}" for name in WORLD_TRUTH),
        ),
    ),
)
