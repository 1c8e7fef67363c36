"""Policy replay on Spark (a pandas UDF over partitions) gives each logged slate the target's
exact marginal, item, prefix and whole-slate probabilities of ``ope.replay.replay_slate``;
decisions it cannot replay are named, and input missing a column is refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from explore import EpsilonGreedySlate, PlackettLuceSlate, TopKRandomInsertion
from ope.replay import replay_slate
from ope.spark_replay import first_error, spark_replay


def logged(n: int, seed: int) -> pd.DataFrame:
    """Decisions of 6 to 15 candidates with a 3-slate sampled by a logging policy; the scores
    are the target model's on those candidates."""
    rng = np.random.default_rng(seed)
    logging_policy = PlackettLuceSlate(temperature=0.3)
    rows = []
    for j in range(n):
        scores = rng.uniform(0.0, 1.0, rng.integers(6, 16))
        slate = logging_policy.decide(scores, 3, rng).indices
        rows.append({"decision_id": f"d{j:04d}", "scores": rng.uniform(0.0, 1.0, scores.size),
                     "slate": slate.astype(np.int64)})  # fmt: skip
    return pd.DataFrame(rows)


TARGETS = [
    pytest.param(PlackettLuceSlate(temperature=0.2, pool=8), id="plackett-luce"),
    pytest.param(EpsilonGreedySlate(epsilon=0.3, pool=8), id="epsilon-greedy"),
    pytest.param(TopKRandomInsertion(epsilon=0.3), id="random-insertion-no-prefix"),
]


@pytest.mark.parametrize("policy", TARGETS)
def test_every_decision_equals_the_in_process_replay(spark: Any, policy: Any) -> None:
    frame = logged(120, seed=3)
    decisions = spark.createDataFrame(frame).repartition(3)
    replayed = spark_replay(decisions, policy)
    assert first_error(replayed) is None
    got = replayed.toPandas().set_index("decision_id").loc[frame["decision_id"]]
    for row, (_, want_row) in zip(got.itertuples(), frame.iterrows(), strict=True):
        want = replay_slate(policy, want_row["scores"], want_row["slate"], require_prefix=False)
        np.testing.assert_allclose(row.marginal, want.marginal, rtol=1e-12)
        np.testing.assert_allclose(row.item, want.item, rtol=1e-12)
        assert row.slate_probability == pytest.approx(want.slate, rel=1e-12)
        if want.prefix is None:
            assert row.prefix is None
        else:
            np.testing.assert_allclose(row.prefix, want.prefix, rtol=1e-12)


def test_a_decision_that_cannot_be_replayed_is_named(spark: Any) -> None:
    frame = logged(10, seed=4)
    frame.at[6, "slate"] = np.array([0, 99, 1], dtype=np.int64)
    replayed = spark_replay(
        spark.createDataFrame(frame), PlackettLuceSlate(temperature=0.2, pool=8)
    )
    assert first_error(replayed) == (
        f"decision d0006: the logged slate names candidate 99 of only "
        f"{frame.at[6, 'scores'].size} scores"
    )
    assert replayed.where("error is null").count() == 9


@pytest.mark.parametrize("column", ["decision_id", "scores", "slate"])
def test_input_missing_a_column_is_refused_naming_it(spark: Any, column: str) -> None:
    decisions = spark.createDataFrame(logged(4, seed=5)).drop(column)
    with pytest.raises(ValueError, match=f"lacks the column\\(s\\) {column}; it needs"):
        spark_replay(decisions, PlackettLuceSlate())
