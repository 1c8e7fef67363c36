"""Any exploration policy of ``explore`` as an arm: each arm's decisions log its arm, its model
and its policy family with the parameters actually used, through the real decision service; bad
arm policies are refused naming the arm and the expectation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from fm_core import PopularityAffinityScorer
from loop.ab_sim_serve import serve_world, variant
from loop.experiment import ExperimentSettings, assign_arm, load_experiment
from loop.service import DecisionService
from loop.sim_bridge import catalog_from_world
from proplog.engine import init_db, make_engine
from proplog.frames import decision_frame
from sim import World, WorldConfig


def test_each_arm_serves_its_own_policy_family_and_logs_it(tmp_path: Path) -> None:
    world = World(WorldConfig(seed=3, n_items=60, n_users=80))
    catalog = catalog_from_world(world)
    scorers = {
        name: PopularityAffinityScorer(catalog, model_version=f"model-{name}")
        for name in ("control", "pl", "ri", "top")
    }
    settings = ExperimentSettings(
        name="families",
        arms=[
            {"name": "control", "share": 0.25, "model_path": "a.npz", "epsilon": 0.2},
            {"name": "pl", "share": 0.25, "model_path": "b.npz", "policy": "plackett_luce",
             "temperature": 0.2, "pool": 10},
            {"name": "ri", "share": 0.25, "model_path": "c.npz", "policy": "random_insertion",
             "positions": [2, 3]},
            {"name": "top", "share": 0.25, "model_path": "d.npz", "policy": "greedy"},
        ],
    )  # fmt: skip
    live = load_experiment(settings, scorers=scorers)
    service = DecisionService(scorer=scorers["control"], policy=live.control.policy,
                              experiment=live)  # fmt: skip
    engine = make_engine(f"sqlite:///{tmp_path / 'log.db'}")
    init_db(engine)
    serve_world(world, service, engine, n=120, k=4, start=0.0, end=1.0,
                rng=np.random.default_rng(0))  # fmt: skip
    decisions = decision_frame(session_or_engine=engine)
    engine.dispose()
    families = {"control": "epsilon_greedy", "pl": "plackett_luce", "ri": "random_insertion",
                "top": "greedy"}  # fmt: skip
    for row in decisions.itertuples():
        arm = assign_arm(settings, row.user_id).name
        assert row.arm == f"families:{arm}"
        assert row.model_version == f"model-{arm}"
        assert row.policy_name == families[arm]
    assert set(decisions["arm"]) == {f"families:{a}" for a in families}
    by_arm = decisions.set_index("arm")["exploration"].groupby(level=0).first()
    assert by_arm["families:pl"]["temperature"] == 0.2
    assert by_arm["families:ri"]["positions"] == [2, 3]
    assert by_arm["families:control"]["epsilon"] == 0.2


@pytest.mark.parametrize(
    ("arm", "message"),
    [
        ({"policy": "thompson"}, "policy must be one of epsilon_greedy, greedy, plackett_luce"),
        ({"policy": "uniform"}, "policy must be one of"),
        ({"epsilon": 1.5}, "epsilon\n  Input should be less than or equal to 1"),
        ({"budget": 0.0}, "budget\n  Input should be greater than 0"),
        ({"temperature": 0.0}, "temperature\n  Input should be greater than 0"),
        ({"policy": "random_insertion", "positions": [0, 0]}, "arm b: policy random_insertion"),
    ],
)
def test_bad_arm_policies_are_refused(arm: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ExperimentSettings(
            name="x",
            arms=[{"name": "a", "share": 0.5, "model_path": "m"},
                  {"name": "b", "share": 0.5, "model_path": "m"} | arm],
        )  # fmt: skip


def test_a_variant_at_scale_one_without_noise_is_its_base() -> None:
    world = World(WorldConfig(seed=1, n_items=60, n_users=80))
    catalog = catalog_from_world(world)
    base = PopularityAffinityScorer(catalog, model_version="base")
    base.coef_ = np.linspace(-1.0, 1.0, base.coef_.size)
    base.play_counts_ = np.arange(catalog.n_items, dtype=np.float64)
    base.daypart_lift_ = base.daypart_lift_ + 0.3
    same = variant(base, scale=1.0, noise=0.0, version="same", rng=np.random.default_rng(0))
    other = variant(base, scale=-1.0, noise=0.5, version="other", rng=np.random.default_rng(0))
    assert isinstance(same, PopularityAffinityScorer)
    assert isinstance(other, PopularityAffinityScorer)
    for name in ("coef_", "play_counts_", "genre_prior_", "daypart_lift_", "device_lift_"):
        assert np.array_equal(getattr(same, name), getattr(base, name)), name
    assert same.model_version == "same"
    assert not np.allclose(other.coef_, base.coef_)
