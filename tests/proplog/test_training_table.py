"""The training table: inverse-propensity weights (clipped, self-normalized), search plays with
weight α in the user's point-in-time context, direct plays, and the negatives modes."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine
from sqlmodel import Session
from store_inputs import T0, decision_payload

from loop.windows import read_window, training_impressions
from proplog.store import record_decision, record_decisions, record_events
from proplog.training_table import TrainingTableConfig, read_training_table

D1 = "00000000-0000-4000-8000-000000000001"
D2 = "00000000-0000-4000-8000-000000000002"
D3 = "00000000-0000-4000-8000-000000000003"
D4 = "00000000-0000-4000-8000-000000000004"
MARGINALS = (0.5, 0.4, 0.3)


def play(event_id: str, minutes: float, item: int, source: str, **kw: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "created_at": T0 + timedelta(minutes=minutes),
        "user_id": kw.pop("user_id", "u1"),
        "item_id": item,
        "kind": "play",
        "value": 60.0,
        "source": source,
        **kw,
    }


@pytest.fixture
def logged(engine: Engine) -> Engine:
    """Three decisions of user u1 (at 0, 120 and 240 minutes) with rec, search and direct plays.

    D1 shows 20, 30, 10 and its position 1 is played; D2 shows 30, 10, 20, nothing played;
    D3 (0.01-propensity first slot) shows 10, 20, 30 and its position 0 is played.
    """
    first = decision_payload(decision_id=D1, items=(20, 30, 10))
    second = decision_payload(decision_id=D2, items=(30, 10, 20))
    second["created_at"] = T0 + timedelta(minutes=120)
    third = decision_payload(decision_id=D3, items=(10, 20, 30))
    third["created_at"] = T0 + timedelta(minutes=240)
    third["slate"][0]["propensity"] = 0.01
    third["slate"][0]["cond_propensity"] = 0.01
    third["slate"][0]["prefix_propensity"] = 0.01
    third["slate"][1]["prefix_propensity"] = 0.01 * 0.25
    third["slate"][2]["prefix_propensity"] = 0.01 * 0.25 * 0.2
    events = [
        play("rec-1", 1, 30, "rec", decision_id=D1, position=1),
        play("search-1", 6, 40, "search"),  # 6 min after D1: in D1's context
        play("search-late", 200, 40, "search"),  # 80 min after D2: beyond the 60 min window
        play("search-before", -30, 40, "search"),  # before any decision
        play("direct-1", 125, 40, "direct"),  # 5 min after D2
        play("rec-3", 241, 10, "rec", decision_id=D3, position=0),
        play("other-user", 7, 40, "search", user_id="u2"),  # u2 has no decision
    ]
    with Session(engine) as session:
        record_decisions(session=session, decisions=[first, second, third])
        record_events(session=session, events=events)
    return engine


def test_slate_weights_are_clipped_inverse_propensities_with_mean_one(logged: Engine) -> None:
    config = TrainingTableConfig(clip_max=20.0, search_weight=0.3)
    _, table = read_training_table(session_or_engine=logged, config=config)
    slate = table.rows[table.rows["origin"] == "slate"]
    assert len(slate) == 9
    propensity = np.array(MARGINALS * 2 + (0.01, 0.4, 0.3))
    raw = np.minimum(1.0 / propensity, 20.0)  # 1/0.01 = 100 is clipped to 20
    expected = raw * 9 / raw.sum()
    order = np.argsort(slate["request_row"].to_numpy() * 10 + slate["position"].to_numpy())
    np.testing.assert_allclose(slate["weight"].to_numpy()[order], expected, rtol=1e-12)
    assert slate["weight"].mean() == pytest.approx(1.0, rel=1e-12)
    report = table.report
    assert report.clipped == 1 and report.without_exact_marginal == 0
    assert report.weight_max == pytest.approx(expected.max())
    assert report.ess == pytest.approx(expected.sum() ** 2 / np.sum(expected**2))
    assert report.slate_positives == 2
    keys = list(zip(slate["decision_id"], slate["position"], strict=True))
    labels = dict(zip(keys, slate["label"], strict=True))
    assert labels[(D1, 1)] == 1 and labels[(D3, 0)] == 1 and sum(labels.values()) == 2


def test_without_self_normalization_weights_are_the_clipped_inverse(logged: Engine) -> None:
    config = TrainingTableConfig(clip_max=50.0, self_normalize=False)
    _, table = read_training_table(session_or_engine=logged, config=config)
    slate = table.rows[table.rows["origin"] == "slate"]
    keys = list(zip(slate["decision_id"], slate["position"], strict=True))
    got = dict(zip(keys, slate["weight"], strict=True))
    assert got[(D1, 2)] == 1 / 0.3
    assert got[(D3, 0)] == 50.0
    assert table.report.normalizer == 1.0


def test_search_and_direct_plays_join_the_latest_decision_within_the_window(
    logged: Engine,
) -> None:
    config = TrainingTableConfig(search_weight=0.3, direct_weight=1.0, context_window_s=3600)
    decisions, table = read_training_table(session_or_engine=logged, config=config)
    plays = table.rows[table.rows["origin"] != "slate"].set_index("origin")
    assert table.report.search_rows == 1 and table.report.direct_rows == 1
    # search-late (80 min after D2), search-before and other-user have no decision context.
    assert table.report.plays_without_context == 3
    search, direct = plays.loc["search"], plays.loc["direct"]
    assert (search["decision_id"], search["item_id"], search["label"]) == (D1, 40, 1.0)
    assert search["weight"] == 0.3 and search["position"] == 0
    assert (direct["decision_id"], direct["weight"]) == (D2, 1.0)
    # Point in time: the context decision is at or before the play, never after it.
    for row in (search, direct):
        context_time = decisions.loc[row["request_row"], "created_at"]
        assert decisions.loc[row["request_row"], "decision_id"] == row["decision_id"]
        assert context_time <= row["event_time"]


def test_a_wider_window_attaches_the_late_search_play(logged: Engine) -> None:
    config = TrainingTableConfig(context_window_s=2 * 3600)
    _, table = read_training_table(session_or_engine=logged, config=config)
    search = table.rows[table.rows["origin"] == "search"]
    assert sorted(search["decision_id"]) == [D1, D2]
    assert table.report.plays_without_context == 2


def test_a_deferred_decision_never_activated_contributes_no_rows(logged: Engine) -> None:
    """D4, deferred at 121 minutes and never activated, is not in the table: no slate rows, and
    the direct play at 125 minutes keeps D2's context rather than taking D4's."""
    _, before = read_training_table(session_or_engine=logged)
    pending = decision_payload(decision_id=D4, items=(40, 10, 20))
    pending["created_at"] = T0 + timedelta(minutes=121)
    with Session(logged) as session:
        until = T0 + timedelta(minutes=181)
        record_decision(session=session, decision=pending, deferred_until=until)
    decisions, table = read_training_table(session_or_engine=logged)
    assert D4 not in set(decisions["decision_id"])
    assert D4 not in set(table.rows["decision_id"])
    pd.testing.assert_frame_equal(table.rows, before.rows)
    assert table.report == before.report
    assert len(read_window(logged).requests) == 3


@pytest.mark.parametrize(
    ("negatives", "kept"),
    [
        ("all", {(D1, 0), (D1, 1), (D1, 2), (D2, 0), (D2, 1), (D2, 2), (D3, 0), (D3, 1), (D3, 2)}),
        ("examined", {(D1, 0), (D1, 1), (D3, 0)}),
        ("none", {(D1, 1), (D3, 0)}),
    ],
)
def test_negatives_modes_choose_the_unplayed_positions(
    logged: Engine, negatives: str, kept: set[tuple[str, int]]
) -> None:
    _, table = read_training_table(
        session_or_engine=logged, config=TrainingTableConfig(negatives=negatives)
    )
    slate = table.rows[table.rows["origin"] == "slate"]
    assert set(zip(slate["decision_id"], slate["position"], strict=True)) == kept
    assert slate["weight"].mean() == pytest.approx(1.0)


def test_positions_without_exact_marginals_weigh_one_before_normalization(
    engine: Engine,
) -> None:
    decision = decision_payload(decision_id=D1)
    decision["marginals_exact"] = False
    decision["slate"][2]["propensity"] = None
    with Session(engine) as session:
        record_decisions(session=session, decisions=[decision])
    config = TrainingTableConfig(self_normalize=False)
    _, table = read_training_table(session_or_engine=engine, config=config)
    assert table.rows["weight"].tolist() == [1 / 0.5, 1 / 0.4, 1.0]
    assert table.report.without_exact_marginal == 1


def test_retraining_impressions_carry_the_table_weights(logged: Engine) -> None:
    window = read_window(logged)
    data = training_impressions(window, TrainingTableConfig(search_weight=0.25))
    assert data.weights is not None
    assert data.labels.size == data.weights.size == 9 + 2
    search = data.weights == 0.25
    assert search.sum() == 1 and data.labels[search].tolist() == [1.0]
    slate_weights = data.weights[:9]
    assert slate_weights.mean() == pytest.approx(1.0)
    # Every row's request is its decision's, whose history ends strictly before the decision.
    for j in np.unique(data.request_index):
        request = data.requests[int(j)]
        assert np.all(np.asarray(request.history.times) < request.time)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("clip_max", 0.5),
        ("search_weight", -1.0),
        ("direct_weight", float("nan")),
        ("negatives", "some"),
        ("context_window_s", -1),
    ],
)
def test_bad_table_settings_are_refused_naming_them(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=re.escape(field)):
        TrainingTableConfig(**{field: value})
