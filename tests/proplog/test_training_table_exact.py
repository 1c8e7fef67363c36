"""The training table built from hand-made frames (no store), every number by hand: clipped and
self-normalized inverse-propensity weights, the report's fields, the negatives modes, the context
window and ``until`` at their edges, and the messages for bad settings and frames."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine
from sqlmodel import Session
from store_inputs import decision_payload

from proplog.store import record_decisions, record_events
from proplog.training_table import (
    ROW_COLUMNS,
    TrainingTableConfig,
    build_training_table,
    read_training_table,
)

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
NAN = math.nan


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


DECISIONS = pd.DataFrame(
    {
        "decision_id": ["d1", "d2", "d3"],
        "created_at": [at(0), at(10), at(20)],
        "user_id": ["u1", "u2", "u1"],
    }
)
# raw weights 1/propensity: 2, 20 (clipped to 10), 1 (no exact marginal), 4, 1, 1.25, 2.5
SLATES = pd.DataFrame(
    {
        "decision_id": ["d1", "d1", "d1", "d2", "d2", "d3", "d3"],
        "position": [0, 1, 2, 0, 1, 0, 1],
        "item_id": [10, 11, 12, 20, 21, 30, 31],
        "propensity": [0.5, 0.05, NAN, 0.25, 1.0, 0.8, 0.4],
        "played": [1, 0, 0, 0, 1, 0, 0],
    }
)
RAW = np.array([2.0, 10.0, 1.0, 4.0, 1.0, 1.25, 2.5])


def events(*rows: tuple[float, str, int, str, str]) -> pd.DataFrame:
    """(minutes after T0, user, item, kind, source) per event."""
    return pd.DataFrame(
        [
            {"created_at": at(m), "user_id": u, "item_id": i, "kind": k, "source": s}
            for m, u, i, k, s in rows
        ],
        columns=["created_at", "user_id", "item_id", "kind", "source"],
    )


EVENTS = events(
    (5, "u1", 99, "play", "search"),  # -> d1
    (10, "u2", 98, "play", "direct"),  # at d2's own time -> d2
    (80, "u1", 97, "play", "search"),  # exactly an hour after d3 -> d3
    (15, "u3", 96, "play", "search"),  # a user with no decision: left out
    (70.5, "u2", 95, "play", "direct"),  # an hour and a half-minute after d2: left out
    (6, "u1", 94, "click", "search"),  # not a play
    (7, "u1", 10, "play", "rec"),  # rec plays label slate rows, they are not rows of their own
)


def build(events_frame: pd.DataFrame = EVENTS, **config: Any) -> Any:
    return build_training_table(
        decisions=DECISIONS,
        slates=SLATES,
        events=events_frame,
        config=TrainingTableConfig(search_weight=0.5, direct_weight=2.0, **config),
    )


def test_slate_weights_are_clipped_inverse_propensities_normalized_to_mean_one() -> None:
    table = build()
    slate = table.rows[table.rows["origin"] == "slate"]
    normalizer = 7 / RAW.sum()
    np.testing.assert_allclose(slate["weight"], RAW * normalizer, rtol=1e-12)
    assert slate["weight"].mean() == pytest.approx(1.0, rel=1e-12)
    assert list(slate["label"]) == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    assert list(slate["request_row"]) == [0, 0, 0, 1, 1, 2, 2]
    assert list(slate["position"]) == [0, 1, 2, 0, 1, 0, 1]
    assert slate["event_time"].isna().all()
    report = table.report
    assert report.normalizer == pytest.approx(normalizer, rel=1e-12)
    assert (report.slate_rows, report.slate_positives, report.clipped) == (7, 2, 1)
    assert report.without_exact_marginal == 1
    assert report.weight_max == pytest.approx(10 * normalizer, rel=1e-12)
    assert report.weight_min == pytest.approx(1 * normalizer, rel=1e-12)
    assert report.weight_mean == pytest.approx(1.0, rel=1e-12)
    ess = RAW.sum() ** 2 / np.sum(RAW**2)  # 21.75² / 129.8125
    assert report.ess == pytest.approx(ess, rel=1e-12)
    assert report.ess_share == pytest.approx(ess / 7, rel=1e-12)


def test_without_normalization_the_weights_are_the_clipped_inverses() -> None:
    table = build(self_normalize=False, clip_max=4.0)
    slate = table.rows[table.rows["origin"] == "slate"]
    np.testing.assert_allclose(slate["weight"], [2.0, 4.0, 1.0, 4.0, 1.0, 1.25, 2.5], rtol=1e-12)
    assert table.report.normalizer == 1.0
    assert table.report.clipped == 1  # 20 > 4; the weight of exactly 4 is not clipped


def test_search_and_direct_plays_take_the_latest_decision_within_the_window() -> None:
    table = build()
    plays = table.rows[table.rows["origin"] != "slate"]
    assert list(plays["decision_id"]) == ["d1", "d2", "d3"]
    assert list(plays["origin"]) == ["search", "direct", "search"]
    assert list(plays["item_id"]) == [99, 98, 97]
    assert list(plays["request_row"]) == [0, 1, 2]
    assert list(plays["weight"]) == [0.5, 2.0, 0.5]
    assert list(plays["label"]) == [1.0, 1.0, 1.0]
    assert list(plays["position"]) == [0, 0, 0]
    assert plays["propensity"].isna().all()
    assert list(plays["event_time"]) == [at(5), at(10), at(80)]
    report = table.report
    assert (report.search_rows, report.direct_rows, report.plays_without_context) == (2, 1, 2)


def test_a_narrower_window_leaves_the_late_play_out() -> None:
    table = build(context_window_s=3599.0)
    plays = table.rows[table.rows["origin"] != "slate"]
    assert list(plays["item_id"]) == [99, 98]
    assert table.report.plays_without_context == 3


def test_plays_at_or_after_until_are_left_out_and_not_counted() -> None:
    table = build_training_table(
        decisions=DECISIONS, slates=SLATES, events=EVENTS, until=at(10),
        config=TrainingTableConfig(search_weight=0.5, direct_weight=2.0),
    )  # fmt: skip
    plays = table.rows[table.rows["origin"] != "slate"]
    assert list(plays["item_id"]) == [99]
    assert table.report.plays_without_context == 0


def test_without_plays_the_table_has_slate_rows_only() -> None:
    table = build(events(), negatives="none")
    assert list(table.rows["item_id"]) == [10, 21]
    assert (table.report.search_rows, table.report.plays_without_context) == (0, 0)
    # weights 2 and 1 normalized to mean 1
    np.testing.assert_allclose(table.rows["weight"], [4 / 3, 2 / 3], rtol=1e-12)


@pytest.mark.parametrize(
    ("negatives", "items"),
    [
        ("all", [10, 11, 12, 20, 21, 30, 31]),
        ("examined", [10, 20, 21]),  # up to each decision's last played position
        ("none", [10, 21]),
    ],
)
def test_negatives_modes(negatives: str, items: list[int]) -> None:
    table = build(events(), negatives=negatives)
    assert list(table.rows["item_id"]) == items
    assert table.report.slate_rows == len(items)


def test_an_empty_slate_frame_reports_zeros() -> None:
    table = build_training_table(
        decisions=DECISIONS, slates=SLATES.iloc[:0], events=events(),
    )  # fmt: skip
    report = table.report
    assert report.slate_rows == 0 and report.normalizer == 1.0
    assert (report.weight_max, report.weight_mean, report.weight_min) == (0.0, 0.0, 0.0)
    assert (report.ess, report.ess_share) == (0.0, 0.0)
    assert report.as_dict()["slate_rows"] == 0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("clip_max", 0.5, "clip_max must be a number >= 1; got 0.5"),
        ("clip_max", "10", "clip_max must be a number >= 1; got '10'"),
        ("search_weight", -1.0, "search_weight must be a finite number >= 0; got -1.0"),
        ("search_weight", math.inf, "search_weight must be a finite number >= 0; got inf"),
        ("direct_weight", "1", "direct_weight must be a finite number >= 0; got '1'"),
        ("negatives", "some", "negatives must be one of all, examined, none; got 'some'"),
        ("context_window_s", -1.0, "context_window_s must be a number >= 0; got -1.0"),
        ("context_window_s", "1", "context_window_s must be a number >= 0; got '1'"),
    ],
)
def test_bad_settings_are_refused_with_their_message(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message.replace('(', '[(]')}$"):
        TrainingTableConfig(**{field: value})


def test_edge_settings_are_accepted() -> None:
    config = TrainingTableConfig(clip_max=1, search_weight=0, direct_weight=0.0, context_window_s=0)
    assert config.clip_max == 1 and config.context_window_s == 0


def test_bad_frames_are_refused_naming_what_is_missing() -> None:
    with pytest.raises(ValueError, match=r"^decisions must have the columns decision_id, "
                       r"created_at, user_id; missing \['user_id'\]$"):  # fmt: skip
        build_training_table(
            decisions=DECISIONS.drop(columns="user_id"), slates=SLATES, events=EVENTS
        )
    with pytest.raises(ValueError, match=r"^slates must have the column played"):
        build_training_table(
            decisions=DECISIONS, slates=SLATES.drop(columns="played"), events=EVENTS
        )
    with pytest.raises(ValueError, match=r"^events must have the columns .*missing \['kind'\]$"):
        build_training_table(decisions=DECISIONS, slates=SLATES, events=EVENTS.drop(columns="kind"))
    with pytest.raises(ValueError, match=r"^slates name decision 'd1', which is not in decisions$"):
        build_training_table(
            decisions=DECISIONS.iloc[[1]], slates=SLATES.iloc[[0, 5]], events=EVENTS
        )
    with pytest.raises(ValueError) as info:
        build_training_table(
            decisions=DECISIONS, slates=SLATES.drop(columns="propensity"), events=EVENTS
        )
    assert str(info.value) == (
        "slates must have the columns decision_id, position, item_id, propensity; "
        "missing ['propensity']"
    )
    with pytest.raises(ValueError, match="until must be a timezone-aware datetime"):
        build_training_table(
            decisions=DECISIONS, slates=SLATES, events=EVENTS, until=datetime(2024, 5, 1)
        )


TEXT = ("decision_id", "origin")  # strings: pandas' own string or object dtype


def test_the_table_keeps_its_config_a_fresh_index_and_its_column_types(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # ids and positions read back as floats, a propensity column of objects: the table's own
    # columns are still int64 and float64
    slates = SLATES.astype({"item_id": float, "position": float, "propensity": object})
    plays = EVENTS.astype({"item_id": float})
    config = TrainingTableConfig(search_weight=0.5)
    with caplog.at_level(logging.INFO, logger="proplog.training_table"):
        table = build_training_table(
            decisions=DECISIONS, slates=slates, events=plays, config=config
        )
    assert table.config is config
    rows = table.rows
    assert list(rows.columns) == list(ROW_COLUMNS)
    pd.testing.assert_index_equal(rows.index, pd.RangeIndex(len(rows)))
    dtypes = {name: str(dtype) for name, dtype in rows.dtypes.items() if name not in TEXT}
    assert dtypes == {
        "request_row": "int64", "item_id": "int64", "position": "int64", "label": "float64",
        "weight": "float64", "propensity": "float64", "event_time": "datetime64[us, UTC]",
    }  # fmt: skip
    assert f"training table: {table.report}" in caplog.messages


def test_plays_at_the_same_moment_keep_their_order() -> None:
    many = events(*[(5, "u1", 100 + i, "play", "search") for i in range(40)])
    table = build(many)
    plays = table.rows[table.rows["origin"] == "search"]
    assert list(plays["item_id"]) == [100 + i for i in range(40)]


def test_reading_a_window_of_the_log(engine: Engine) -> None:
    """Three decisions at 0, 120 and 240 minutes; the window [60, 200) holds only the second,
    the direct play 5 minutes after it, and none of the plays outside the window."""
    payloads = []
    for minutes, decision_id in ((0, D1), (120, D2), (240, D3)):
        payload = decision_payload(decision_id=decision_id, items=(20, 30, 10))
        payload["created_at"] = at(minutes)
        payloads.append(payload)
    plays = [
        stored_play("search-early", 6, 40, "search"),  # before the window
        stored_play("direct-in", 125, 41, "direct"),  # in the window, after the second
        stored_play("search-at-end", 200, 42, "search"),  # at the window's end: left out
        stored_play("rec-late", 241, 20, "rec", decision_id=D3, position=0),
    ]
    with Session(engine) as session:
        record_decisions(session=session, decisions=payloads)
        record_events(session=session, events=plays)
    decisions, table = read_training_table(
        session_or_engine=engine, since=at(60), until=at(200), config=TrainingTableConfig()
    )
    assert list(decisions["decision_id"]) == [D2]
    assert list(table.rows["decision_id"]) == [D2] * 4
    assert list(table.rows["item_id"]) == [20, 30, 10, 41]
    assert list(table.rows["origin"]) == ["slate", "slate", "slate", "direct"]
    assert table.report.plays_without_context == 0
    assert table.report.slate_positives == 0


D1 = "00000000-0000-4000-8000-0000000000a1"
D2 = "00000000-0000-4000-8000-0000000000a2"
D3 = "00000000-0000-4000-8000-0000000000a3"


def stored_play(event_id: str, minutes: float, item: int, source: str, **kw: Any) -> dict:
    return {
        "event_id": event_id, "created_at": at(minutes), "user_id": "u1", "item_id": item,
        "kind": "play", "value": 60.0, "source": source, **kw,
    }  # fmt: skip


def test_a_play_takes_the_last_of_decisions_made_at_one_moment() -> None:
    """18 decisions of one user at the same moment, in the order given, and one a day later: a
    search play between them takes the context of the last of the 18."""
    ids = [f"s{i}" for i in range(18)] + ["later"]
    decisions = pd.DataFrame(
        {"decision_id": ids, "created_at": [at(0)] * 18 + [at(1440)], "user_id": "u1"}
    )
    plays = events((1, "u1", 99, "play", "search"))
    table = build_training_table(decisions=decisions, slates=SLATES.iloc[:0], events=plays)
    assert list(table.rows["decision_id"]) == ["s17"]
    assert list(table.rows["request_row"]) == [17]
