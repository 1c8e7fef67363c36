"""Exports of the propensity log: chunked pandas, Parquet and CSV equal the in-memory frame."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine
from sqlmodel import Session
from store_inputs import T0, decision_payload

from proplog.export import (
    EXPORT_COLUMNS,
    export_frame,
    iter_export_chunks,
    read_parquet_export,
    write_csv,
    write_parquet,
)
from proplog.store import record_decisions, record_events

N_DECISIONS = 23
ITEMS = ((20, 30, 10), (10, 40), (40, 10, 30))


def decision_id(i: int) -> str:
    return str(uuid.UUID(int=(7919 * i) % 1000 + 1))  # ids not in time order


@pytest.fixture
def logged(engine: Engine) -> Engine:
    """23 decisions of 2 or 3 slots; groups of three share a timestamp (keyset ties); every
    fourth decision has a rec play at slot 1 (two events at one of them), and one search play."""
    decisions, events = [], []
    for i in range(N_DECISIONS):
        d = decision_payload(decision_id=decision_id(i), user_id=f"u{i % 4}", items=ITEMS[i % 3])
        d["created_at"] = T0 + timedelta(seconds=i // 3)
        d["device"] = None if i % 5 == 0 else "tv"
        if i == 11:
            d["marginals_exact"] = False
            d["slate"][0]["propensity"] = None
        decisions.append(d)
        if i % 4 == 0:
            for j in range(1 + (i == 8)):
                events.append(
                    {
                        "event_id": f"play-{i}-{j}",
                        "created_at": d["created_at"] + timedelta(minutes=1 + j),
                        "user_id": d["user_id"],
                        "item_id": d["slate"][1]["item_id"],
                        "kind": "play",
                        "value": 30.0 * (j + 1),
                        "source": "rec",
                        "decision_id": d["decision_id"],
                        "position": 1,
                    }
                )
    events.append(
        {
            "event_id": "search-0",
            "created_at": T0 + timedelta(minutes=3),
            "user_id": "u0",
            "item_id": 40,
            "kind": "play",
            "value": 10.0,
            "source": "search",
        }
    )
    with Session(engine) as session:
        record_decisions(session=session, decisions=decisions[::-1])
        record_events(session=session, events=events)
    return engine


def test_export_frame_has_the_ope_columns_and_the_joined_rewards(logged: Engine) -> None:
    frame = export_frame(session_or_engine=logged)
    assert tuple(frame.columns) == EXPORT_COLUMNS
    assert frame["decision_id"].nunique() == N_DECISIONS
    assert len(frame) == sum(len(ITEMS[i % 3]) for i in range(N_DECISIONS))
    played = frame[frame["reward"] == 1]
    assert sorted(played["decision_id"]) == sorted(decision_id(i) for i in range(0, 23, 4))
    assert set(played["slot"]) == {1}
    assert frame.loc[frame["decision_id"] == decision_id(8), "play_value"].max() == 90.0
    # pscore_slate: the whole slate's probability, the last prefix, on every row of a decision.
    last_prefix = frame.groupby("decision_id")["pscore_cascade"].last()
    assert (frame["pscore_slate"] == frame["decision_id"].map(last_prefix)).all()
    assert frame["pscore"].isna().sum() == 1


@pytest.mark.parametrize("chunk_decisions", [1, 4, 7, 100])
def test_chunked_export_equals_the_in_memory_frame(logged: Engine, chunk_decisions: int) -> None:
    whole = export_frame(session_or_engine=logged)
    chunks = list(iter_export_chunks(session_or_engine=logged, chunk_decisions=chunk_decisions))
    assert len(chunks) == -(-N_DECISIONS // chunk_decisions)
    assert all(chunk["decision_id"].nunique() <= chunk_decisions for chunk in chunks)
    # No decision is split between chunks.
    seen = [set(chunk["decision_id"]) for chunk in chunks]
    assert sum(len(s) for s in seen) == len(set().union(*seen)) == N_DECISIONS
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole)


def test_chunked_export_respects_the_time_window(logged: Engine) -> None:
    since, until = T0 + timedelta(seconds=2), T0 + timedelta(seconds=5)
    whole = export_frame(session_or_engine=logged, since=since, until=until)
    chunks = iter_export_chunks(
        session_or_engine=logged, chunk_decisions=2, since=since, until=until
    )
    joined = pd.concat(list(chunks), ignore_index=True)
    pd.testing.assert_frame_equal(joined, whole)
    assert joined["decision_id"].nunique() == 9
    assert ((joined["created_at"] >= since) & (joined["created_at"] < until)).all()


def test_parquet_export_streams_chunks_into_one_file_equal_to_the_frame(
    logged: Engine, tmp_path: pytest.TempPathFactory
) -> None:
    path = tmp_path / "out" / "log.parquet"
    summary = write_parquet(session_or_engine=logged, path=path, chunk_decisions=5)
    assert (summary.decisions, summary.chunks) == (N_DECISIONS, 5)
    import pyarrow.parquet as pq

    assert pq.ParquetFile(path).num_row_groups == 5
    assert not path.with_name("log.parquet.partial").exists()
    pd.testing.assert_frame_equal(read_parquet_export(path), export_frame(session_or_engine=logged))


def test_csv_export_keeps_propensities_bit_for_bit(
    logged: Engine, tmp_path: pytest.TempPathFactory
) -> None:
    path = tmp_path / "log.csv"
    summary = write_csv(session_or_engine=logged, path=path, chunk_decisions=6)
    assert summary.rows == len(export_frame(session_or_engine=logged))
    back = pd.read_csv(path)
    whole = export_frame(session_or_engine=logged)
    assert list(back.columns) == list(EXPORT_COLUMNS)
    for column in ("pscore", "cond_propensity", "pscore_cascade", "score"):
        np.testing.assert_array_equal(back[column].to_numpy(), whole[column].to_numpy())
    assert back["decision_id"].tolist() == whole["decision_id"].tolist()


def test_empty_log_exports_an_empty_file_with_the_schema(
    engine: Engine, tmp_path: pytest.TempPathFactory
) -> None:
    path = tmp_path / "empty.parquet"
    summary = write_parquet(session_or_engine=engine, path=path)
    assert (summary.rows, summary.chunks) == (0, 0)
    back = read_parquet_export(path)
    assert back.empty and tuple(back.columns) == EXPORT_COLUMNS


@pytest.mark.parametrize("chunk", [0, -1, 2.5, True])
def test_bad_chunk_size_is_refused_naming_it(engine: Engine, chunk: object) -> None:
    with pytest.raises(ValueError, match=re.escape("chunk_decisions")):
        next(iter_export_chunks(session_or_engine=engine, chunk_decisions=chunk))  # type: ignore[arg-type]
