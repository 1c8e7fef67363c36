"""Interval coverage: the tally counts what it should, and on the simulated world every
(estimator, interval) cell is present with the unbiased estimators near their nominal rate;
``loopbreak ope coverage`` ends with its JSON line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cli.main import main
from loop.coverage_world import CoverageWorld, CoverageWorldConfig
from ope import IPS, SNIPS, OpeBatch, estimators
from ope.coverage import LoggedRun, coverage_table, measure_coverage
from ope.intervals import INTERVALS


def bandit_run(seed: int, truth: float) -> LoggedRun:
    """On-policy rows (weights 1): IPS is the sample mean of Bernoulli(0.3) rewards."""
    reward = (np.random.default_rng(seed).random(400) < 0.3).astype(float)
    batch = OpeBatch.from_arrays(
        reward=reward, pscore=np.full(400, 0.5), target_pscore=np.full(400, 0.5)
    )
    return LoggedRun(batch=batch, truth=truth)


def test_the_tally_counts_covering_intervals_and_the_bias() -> None:
    right = measure_coverage((bandit_run(s, 0.3) for s in range(40)), [IPS(), SNIPS()])
    wrong = measure_coverage((bandit_run(s, 0.5) for s in range(40)), [IPS()], intervals=["t"])
    assert right.coverage["ipw"]["normal"] >= 0.85
    assert wrong.coverage == {"ipw": {"t": 0.0}}
    assert wrong.bias["ipw"] == pytest.approx(right.bias["ipw"] - 0.2, abs=1e-12)
    assert right.fallback == {"snipw": {"bernstein": "t"}}  # self-normalized: no Bernstein bound
    assert right.width["ipw"]["bernstein"] > right.width["ipw"]["normal"]


@pytest.fixture(scope="module")
def world_coverage() -> object:
    config = CoverageWorldConfig(seed=1, pool_requests=200, decisions=200, candidates=6, k=3)
    return measure_coverage(CoverageWorld(config).runs(30), estimators(), n_bootstrap=40)


def test_every_estimator_and_interval_has_a_coverage_cell(world_coverage: object) -> None:
    result = world_coverage
    names = {"ipw", "snipw", "dm", "dr", "sndr", "dros", "switch-dr", "sips", "iips", "rips", "pi",
             "aips"}  # fmt: skip
    assert set(result.coverage) == names  # type: ignore[attr-defined]
    for name, row in result.coverage.items():  # type: ignore[attr-defined]
        assert set(row) == set(INTERVALS), name
        # a share of the 30 runs: a whole number of them covered
        assert all(abs(share * 30 - round(share * 30)) < 1e-9 for share in row.values()), name
        assert all(np.isfinite(w) and w > 0 for w in result.width[name].values()), name  # type: ignore[attr-defined]
    assert result.reps == 30  # type: ignore[attr-defined]


def test_unbiased_estimators_cover_the_simulated_truth(world_coverage: object) -> None:
    result = world_coverage
    assert result.coverage["ipw"]["normal"] >= 0.8  # type: ignore[attr-defined]
    assert result.coverage["dr"]["normal"] >= 0.8  # type: ignore[attr-defined]
    assert result.coverage["ipw"]["bernstein"] == 1.0  # type: ignore[attr-defined]
    assert "ipw" in coverage_table(result)  # type: ignore[arg-type]


def test_refit_bootstrap_adds_a_cell_for_the_reward_model_estimators() -> None:
    config = CoverageWorldConfig(seed=2, pool_requests=100, decisions=120, candidates=5, k=2)
    runs = CoverageWorld(config).runs(3)
    result = measure_coverage(runs, estimators(), intervals=["normal"], refit_bootstrap=5)
    refit = {n for n, row in result.coverage.items() if "bootstrap-refit" in row}
    assert refit == {"dm", "dr", "sndr", "dros", "switch-dr"}
    assert result.width["dm"]["bootstrap-refit"] > 0
    assert "bootstrap-refit" in coverage_table(result)


def test_ope_coverage_command_ends_with_its_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["ope", "coverage", "--reps", "3", "--decisions", "40", "--bootstrap", "20", "--json"]
    assert main(argv) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    document = json.loads(last)
    assert document["reps"] == 3
    assert set(document["coverage"]["pi"]) == set(INTERVALS)
    assert set(document["width"]) == set(document["coverage"])


def test_ope_coverage_refuses_too_few_reps(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ope", "coverage", "--reps", "1"]) == 2
    assert "--reps must be >= 2" in capsys.readouterr().err
