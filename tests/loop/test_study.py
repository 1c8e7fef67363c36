"""The loop study: its measures against hand-computed values, paired arms meeting identical
requests and responses, determinism for a seed, the calibrated policy's replay, and the command
with its refusals."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from sqlmodel import Session

from cli.main import main
from explore import CalibratedSlate, EpsilonGreedySlate, ExplorationBudget
from loop.replay import as_served
from loop.service import DecisionService
from loop.study.arms import make_arm
from loop.study.config import StudyConfig
from loop.study.metrics import gini, mean_interval, mean_pairwise_jaccard
from loop.study.run import _ArmLoop, _RoundTally, run_arm, run_study
from loop.study.summary import summarize
from loop.windows import read_window
from ope.replay import replay_slate
from sim import World, WorldConfig

TINY = StudyConfig(
    seeds=2,
    rounds=3,
    decisions=40,
    k=5,
    pool=20,
    workers=1,
    arms=("greedy", "search", "loopbreak"),
    world=WorldConfig(n_items=60, n_users=40),
)


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ([3, 3, 3, 3], 0.0),
        ([0, 0, 0, 10], 0.75),  # (n - 1) / n: one item has all the exposure
        ([1, 2, 3, 4], 0.25),  # Σ|xi - xj| over ordered pairs 20, / (2 n² mean) = 20 / 80
        ([4, 1, 3, 2], 0.25),  # the order does not matter
        ([0, 0], 0.0),  # no exposure at all
    ],
)
def test_gini_against_hand_computed_values(counts: list[float], expected: float) -> None:
    assert gini(np.array(counts)) == pytest.approx(expected, abs=1e-12)


def test_gini_equals_the_mean_absolute_difference_formula() -> None:
    x = np.random.default_rng(3).poisson(2.0, size=57).astype(float)
    by_pairs = np.abs(x[:, None] - x[None, :]).sum() / (2 * x.size**2 * x.mean())
    assert gini(x) == pytest.approx(by_pairs, abs=1e-12)


def test_jaccard_homogenization_against_hand_computed_pairs() -> None:
    consumed = np.zeros((4, 3), dtype=bool)
    consumed[0, [0, 1]] = True  # A = {0, 1}
    consumed[1, [1, 2]] = True  # B = {1, 2}
    consumed[3, [0, 1]] = True  # D = {0, 1}; member 2 consumed nothing and is left out
    # (A, B) 1/3, (A, D) 1, (B, D) 1/3
    assert mean_pairwise_jaccard(consumed) == pytest.approx(5 / 9, abs=1e-12)
    assert math.isnan(mean_pairwise_jaccard(consumed[:1]))


def test_mean_interval_is_the_student_t_interval() -> None:
    mean, lo, hi = mean_interval(np.array([1.0, 2.0, 3.0, math.nan]))
    assert mean == 2.0
    assert hi - mean == pytest.approx(4.302652729911275 / math.sqrt(3), abs=1e-9)
    assert mean - lo == pytest.approx(hi - mean)


def test_paired_arms_meet_the_same_requests_and_the_same_responses() -> None:
    loops = [_ArmLoop(TINY, 7, make_arm(arm, TINY)) for arm in ("greedy", "loopbreak", "oracle")]
    for r in range(TINY.rounds):
        requests = [[(q.user, q.t, q.device, q.local_hour) for q in lp.requests(r)] for lp in loops]
        assert requests[0] == requests[1] == requests[2]
    # greedy and search serve the same untrained model greedily in round 0: the same slates,
    # so (common random numbers) the same plays and the same measures to the last digit.
    greedy, search = run_arm(TINY, 7, "greedy"), run_arm(TINY, 7, "search")
    assert greedy.rounds[0] == search.rounds[0]


def test_the_study_is_deterministic_for_a_seed() -> None:
    first = dataclasses.asdict(run_arm(TINY, 3, "loopbreak"))
    assert first == dataclasses.asdict(run_arm(TINY, 3, "loopbreak"))
    assert first != dataclasses.asdict(run_arm(TINY, 4, "loopbreak"))


def test_regret_is_against_the_oracle_and_the_oracle_has_none() -> None:
    study = summarize(TINY, run_study(TINY))
    for run in study["runs"]:
        for r in run["rounds"]:
            assert r["regret"] == pytest.approx(r["oracle_reward"] - r["true_reward"], abs=1e-12)
            assert r["regret"] >= -1e-12
            if run["arm"] == "oracle":
                assert r["regret"] == 0.0 and r["homogenization"] == 0.0
                assert r["popularity_lift"] == 0.0
    assert set(study["paired"]["last_round"]) == {"search", "loopbreak", "oracle"}
    greedy_runs = {run["seed"]: run for run in study["runs"] if run["arm"] == "greedy"}
    diffs = [
        run["cumulative"]["regret"] - greedy_runs[run["seed"]]["cumulative"]["regret"]
        for run in study["runs"]
        if run["arm"] == "loopbreak"
    ]
    assert study["paired"]["cumulative"]["loopbreak"]["regret"]["mean"] == pytest.approx(
        float(np.mean(diffs))
    )
    assert study["cumulative"]["greedy"]["exploration_cost"]["mean"] == 0.0
    # the estimates made before each round: IPS and SNIPS, the model-based ones, the slate ones
    estimators = study["ope"]["loopbreak"]["estimators"]
    assert {"ipw", "snipw", "dm", "dr", "sndr", "sips", "rips"} <= set(estimators)
    assert estimators["dr"]["n"] == TINY.seeds * (TINY.rounds - 1)


def test_a_calibrated_policy_replays_as_the_policy_it_served_with() -> None:
    budget = ExplorationBudget(relative_cost=0.05)
    policy = CalibratedSlate(base=EpsilonGreedySlate(pool=8), budget=budget)
    scores = np.random.default_rng(1).uniform(0.05, 0.6, size=20)
    slate = policy.decide(scores, 4, np.random.default_rng(2)).indices
    with pytest.raises(ValueError, match="depend on the slate length"):
        replay_slate(policy, scores, slate)
    replayed = replay_slate(as_served(policy, scores, 4), scores, slate)
    assert replayed.slate == pytest.approx(policy.slate_probability(scores, slate), abs=1e-15)
    np.testing.assert_allclose(replayed.marginals, policy.marginals(scores, 4), atol=1e-15)


def test_the_command_writes_its_json_and_page(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["study", "--seeds", "2", "--rounds", "2", "--decisions", "30", "--k", "5",
            "--items", "60", "--users", "40", "--arms", "greedy,loopbreak", "--workers", "1",
            "--out", str(tmp_path), "--json"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "paired difference from greedy" in out
    last = json.loads(out.strip().splitlines()[-1])
    assert last["config"]["arms_run"] == ["greedy", "loopbreak", "oracle"]
    assert set(last["paired"]["cumulative"]) == {"loopbreak", "oracle"}
    stored = json.loads((tmp_path / "study.json").read_text())
    assert len(stored["runs"]) == 2 * 3
    page = (tmp_path / "study.html").read_text()
    assert page.count("data:image/png;base64,") == len(stored["metrics"])


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--arms", "greedy,bandit", "arms: 'bandit' is not an arm"),
        ("--arms", "greedy,greedy", "arms must be distinct"),
        ("--rounds", "1", "rounds must be an integer >= 2"),
        ("--budget", "0", r"budget must be in \(0, 1\)"),
        ("--seeds", "0", "seeds must be an integer >= 1"),
        ("--holdout-share", "1.5", r"holdout_share must be in \(0, 1\)"),
    ],
)
def test_bad_options_are_refused_by_name(
    option: str, value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["study", option, value, "--out", str(tmp_path / "s")]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "s").exists()


def test_the_study_trains_search_plays_at_the_products_default_weight() -> None:
    from proplog.training_table import TrainingTableConfig

    assert StudyConfig().search_weight == TrainingTableConfig().search_weight
    assert make_arm("loopbreak", TINY).table.search_weight == TINY.search_weight
    assert make_arm("explore", TINY).table.search_weight == 0.0


def test_the_diagnostic_arm_explores_like_explore_and_trains_unweighted() -> None:
    explore, unweighted = make_arm("explore", TINY), make_arm("explore_unweighted", TINY)
    assert unweighted.policy == explore.policy
    assert explore.table.clip_max > 1.0 and unweighted.table.clip_max == 1.0
    assert "explore_unweighted" not in StudyConfig().arms


@pytest.mark.parametrize("arm", ["explore:plackett_luce", "loopbreak:random_insertion"])
def test_any_exploration_family_is_an_arm(arm: str) -> None:
    run = run_arm(dataclasses.replace(TINY, rounds=2), 1, arm)
    assert len(run.rounds) == 2 and run.rounds[1]["true_reward"] > 0.0
    ope = run.rounds[1]["ope"]
    assert ope is not None
    if arm.endswith("plackett_luce"):
        # no closed-form marginals over a large pool: the round says why instead of estimating
        assert ope["estimates"] == {} and ope["skipped"]
    else:
        # random insertion's prefixes depend on K, so no cascade estimators; the item-position
        # ones and the primary estimate run, beside the truth on the same decisions
        assert "primary" in ope["estimates"] and "rips" not in ope["estimates"]
        assert ope["truth"] > 0.0


def test_a_decisions_values_are_the_worlds_truth() -> None:
    loop = _ArmLoop(TINY, 5, make_arm("greedy", TINY))
    assert loop.engine is not None and loop.arm.policy is not None
    request = loop.requests(0)[0]
    before = World(TINY.world_for(5))  # the world's state when the request arrives
    tally = _RoundTally(n_items=before.catalog.n_items)
    service = DecisionService(scorer=loop.scorer, policy=loop.arm.policy)
    with Session(loop.engine) as session:
        loop._serve_one(0, 0, request, service, session, tally)
    slates = read_window(loop.engine).slates.sort_values("position")
    slate = slates["item_id"].to_numpy(dtype=np.int64)
    assert slate.size == TINY.k
    served = before.expected_reward(request, slate)
    oracle = before.expected_reward(request, before.oracle_slate(request, TINY.k))
    assert tally.served == pytest.approx(served, abs=1e-12)
    assert tally.greedy == pytest.approx(served, abs=1e-12)  # greedy: no exploration cost
    assert tally.oracle == pytest.approx(oracle, abs=1e-12)
    assert oracle > served
    assert loop.measures(0, tally)["regret"] == pytest.approx(oracle - served, abs=1e-12)
