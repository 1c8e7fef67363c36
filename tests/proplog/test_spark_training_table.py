"""The training table on Spark equals ``proplog.training_table`` row for row (weights, labels,
search and direct plays in their point-in-time context, the report) on a simulated log with
ties and edge cases added, and the point-in-time histories equal ``loop.context.HistoryIndex``;
bad frames are refused as the pandas builder refuses them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sim_decisions import uniform_log

from loop.context import HistoryIndex
from proplog.engine import init_db, make_engine
from proplog.frames import decision_frame, event_frame, slate_frame
from proplog.spark_training_table import spark_histories, spark_training_table
from proplog.training_table import ROW_COLUMNS, TrainingTableConfig, build_training_table
from sim import World, WorldConfig

TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    """A uniform-random log of the simulated world, plus: a direct play at the very time of a
    decision, one just inside and one just outside the context window, a play of a user with no
    decision, a second decision at the same time as another of the same user, and a position
    without an exact marginal."""
    url = f"sqlite:///{tmp_path_factory.mktemp('log') / 'log.db'}"
    engine = make_engine(url)
    init_db(engine)
    uniform_log(World(WorldConfig(seed=7, n_items=120, n_users=40)), engine, n=150, k=3, seed=4)
    decisions = decision_frame(session_or_engine=engine)
    slates = slate_frame(session_or_engine=engine)
    events = event_frame(session_or_engine=engine)
    engine.dispose()
    first = decisions.iloc[10]
    twin = first.copy()
    twin["decision_id"] = "ffffffff-0000-4000-8000-000000000000"  # later in decision order
    decisions = (
        pd.concat([decisions, twin.to_frame().T], ignore_index=True)
        .astype(decisions.dtypes.to_dict())
        .sort_values(["created_at", "decision_id"], kind="stable")
        .reset_index(drop=True)
    )
    twin_slate = slates[slates["decision_id"] == first["decision_id"]].assign(
        decision_id=twin["decision_id"]
    )
    slates = pd.concat([slates, twin_slate], ignore_index=True)
    order = decisions.reset_index().set_index("decision_id")["index"]
    slates = slates.assign(_r=slates["decision_id"].map(order)).sort_values(
        ["_r", "position"], kind="stable"
    )
    slates = slates.drop(columns="_r").reset_index(drop=True)
    slates.loc[5, "propensity"] = np.nan
    window = TrainingTableConfig().context_window_s
    extra = [
        ("x-at", first["created_at"], first["user_id"], "direct"),
        ("x-in", first["created_at"] + timedelta(seconds=window), first["user_id"], "search"),
        ("x-out", first["created_at"] + timedelta(seconds=window + 1), first["user_id"], "search"),
        ("x-none", first["created_at"], "nobody", "direct"),
    ]
    added = pd.DataFrame(
        [
            {
                "event_id": e,
                "created_at": t,
                "user_id": u,
                "item_id": 3,
                "kind": "play",
                "value": 5.0,
                "source": s,
                "decision_id": None,
                "position": pd.NA,
            }
            for e, t, u, s in extra
        ]
    ).astype({"item_id": "int64", "value": "float64", "position": "Int64"})
    events = (
        pd.concat([events, added], ignore_index=True)
        .sort_values(["created_at", "event_id"], kind="stable")
        .reset_index(drop=True)
    )
    return {"decisions": decisions, "slates": slates, "events": events}


def _spark_frames(spark: Any, frames: dict[str, pd.DataFrame]) -> dict[str, Any]:
    keep = {
        "decisions": ["decision_id", "created_at", "user_id"],
        "slates": ["decision_id", "position", "item_id", "propensity", "played"],
        "events": ["event_id", "created_at", "user_id", "item_id", "kind", "value", "source"],
    }
    return {name: spark.createDataFrame(frames[name][cols]) for name, cols in keep.items()}


CONFIGS = [
    pytest.param(TrainingTableConfig(), None, id="defaults"),
    pytest.param(
        TrainingTableConfig(
            clip_max=3.0, search_weight=4.0, direct_weight=0.5, negatives="examined"
        ),
        None,
        id="examined-alpha-4",
    ),
    pytest.param(
        TrainingTableConfig(self_normalize=False, negatives="none", context_window_s=60.0),
        "until",
        id="played-only-until",
    ),
]


@pytest.mark.parametrize(("config", "cut"), CONFIGS)
def test_rows_and_report_equal_the_pandas_builder(
    spark: Any, frames: dict[str, pd.DataFrame], config: TrainingTableConfig, cut: str | None
) -> None:
    events = frames["events"]["created_at"]
    until = events.iloc[len(events) // 2].to_pydatetime() if cut else None
    local = build_training_table(**frames, config=config, until=until)
    distributed = spark_training_table(**_spark_frames(spark, frames), config=config, until=until)
    got = distributed.rows.toPandas()
    want = local.rows
    assert list(got.columns) == list(ROW_COLUMNS)
    assert len(got) == len(want)
    for column in ("decision_id", "origin"):
        assert got[column].tolist() == want[column].tolist(), column
    for column in ("request_row", "item_id", "position"):
        np.testing.assert_array_equal(got[column].to_numpy(), want[column].to_numpy(), column)
    for column in ("label", "weight", "propensity"):
        np.testing.assert_allclose(
            got[column].to_numpy(dtype=float), want[column].to_numpy(dtype=float),
            rtol=TOLERANCE, equal_nan=True, err_msg=column,
        )  # fmt: skip
    times = pd.to_datetime(got["event_time"]).dt.tz_localize("UTC")
    pd.testing.assert_series_equal(
        times.astype("datetime64[us, UTC]"), want["event_time"], check_names=False
    )
    mine, theirs = distributed.report.as_dict(), local.report.as_dict()
    assert mine.keys() == theirs.keys()
    for key, value in theirs.items():
        assert mine[key] == pytest.approx(value, rel=TOLERANCE), key
    assert theirs["search_rows"] + theirs["direct_rows"] > 0
    assert theirs["plays_without_context"] > 0
    assert theirs["without_exact_marginal"] == (config.negatives == "all")


@pytest.mark.parametrize("max_events", [3, None])
def test_histories_equal_the_history_index(
    spark: Any, frames: dict[str, pd.DataFrame], max_events: int | None
) -> None:
    sparked = _spark_frames(spark, frames)
    got = spark_histories(sparked["decisions"], sparked["events"], max_events=max_events)
    got = got.toPandas()
    index = HistoryIndex(frames["events"], max_events=max_events)
    decisions = frames["decisions"]
    assert got["decision_id"].tolist() == decisions["decision_id"].tolist()
    assert got["request_row"].tolist() == list(range(len(decisions)))
    lengths = []
    for row, decision in zip(got.itertuples(), decisions.itertuples(), strict=True):
        want = index.before(decision.user_id, decision.created_at.timestamp())
        np.testing.assert_array_equal(np.asarray(row.item_ids, dtype=np.int64), want.item_ids)
        np.testing.assert_allclose(np.asarray(row.times, dtype=float), want.times, rtol=1e-15)
        assert list(row.kinds) == list(want.kinds) and list(row.sources) == list(want.sources)
        np.testing.assert_array_equal(np.asarray(row.values, dtype=float), want.values)
        lengths.append(len(row.item_ids))
    assert max(lengths) == (max_events or max(lengths)) and min(lengths) == 0


BAD_FRAMES = [
    ("decisions", "user_id", "decisions must have the columns decision_id, created_at, user_id"),
    ("slates", "propensity", "slates must have the columns decision_id, position, item_id, "),
    ("slates", "played", "slates must have the column played"),
    ("events", "source", "events must have the columns created_at, user_id, item_id, kind, "),
]


@pytest.mark.parametrize(("frame", "column", "says"), BAD_FRAMES)
def test_a_frame_missing_a_column_is_refused_as_in_pandas(
    spark: Any, frames: dict[str, pd.DataFrame], frame: str, column: str, says: str
) -> None:
    sparked = _spark_frames(spark, frames)
    sparked[frame] = sparked[frame].drop(column)
    with pytest.raises(ValueError, match=says):
        spark_training_table(**sparked)
    local = dict(frames)
    local[frame] = local[frame].drop(columns=[column])
    with pytest.raises(ValueError, match=says):
        build_training_table(**local)


def test_a_slate_of_an_unknown_decision_is_named(
    spark: Any, frames: dict[str, pd.DataFrame]
) -> None:
    sparked = _spark_frames(spark, frames)
    twin = "ffffffff-0000-4000-8000-000000000000"
    sparked["decisions"] = sparked["decisions"].where(f"decision_id != '{twin}'")
    with pytest.raises(ValueError, match=f"slates name decision '{twin}', which is not in"):
        spark_training_table(**sparked)
