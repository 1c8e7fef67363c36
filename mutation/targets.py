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
    ``pytest_args`` narrows its tests further."""

    name: str
    source: str
    tests: tuple[str, ...]
    pytest_args: tuple[str, ...] = ()


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
    ),
    Target(
        "sim/world.py",
        "sim/world.py",
        ("tests/sim/test_sim.py", "tests/sim/test_world_truth.py"),
    ),
)
