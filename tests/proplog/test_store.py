"""The propensity log's store: exact round trips, idempotency, point-in-time reads, frames."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session
from store_inputs import count_rows

import proplog.store
from proplog.engine import default_database_url, init_db, make_engine
from proplog.errors import ConflictError, LogValidationError, UnknownDecisionError
from proplog.frames import decision_frame, event_frame, slate_frame
from proplog.registry import record_model_version, record_ope_report, record_policy
from proplog.schema import DecisionCreate
from proplog.store import (
    get_decision,
    get_event,
    record_decision,
    record_decisions,
    record_event,
    record_events,
    user_history,
    user_history_and_later,
    user_history_and_later_on,
)
from proplog.writes import WriteResult

REPO_ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def make_decision(
    *,
    decision_id: str | None = None,
    created_at: datetime = T0,
    user_id: str = "u1",
    slate_items: tuple[int, ...] = (20, 30, 10),
    cond: tuple[float, ...] = (0.5, 0.25, 0.2),
    marginals: tuple[float, ...] = (0.5, 0.4, 0.3),
) -> dict[str, Any]:
    """A valid decision as a plain dict (what a client or the API hands the store)."""
    prefix: list[float] = []
    for c in cond:
        prefix.append(c if not prefix else prefix[-1] * c)
    candidates = [10, 20, 30, 40]
    return {
        "decision_id": decision_id or str(uuid.uuid4()),
        "created_at": created_at,
        "user_id": user_id,
        "surface": "home",
        "device": "tv",
        "country": "SE",
        "local_time": "2024-05-01T14:00:00+02:00",
        "policy_name": "plackett_luce",
        "policy_version": "1",
        "model_version": "ranker-7",
        "exploration": {"temperature": 0.7, "epsilon": 0.05},
        "marginals_exact": True,
        "arm": None,
        "candidate_ids": candidates,
        "candidate_scores": [0.9, 0.8, 0.7, 0.1],
        "slate": [
            {
                "position": k,
                "item_id": item,
                "score": [0.9, 0.8, 0.7, 0.1][candidates.index(item)],
                "propensity": marginals[k],
                "cond_propensity": cond[k],
                "prefix_propensity": prefix[k],
                "explored": k == 2,
            }
            for k, item in enumerate(slate_items)
        ],
    }


def make_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "created_at": T0 + timedelta(minutes=1),
        "user_id": "u1",
        "item_id": 20,
        "kind": "play",
        "value": 0.0,
        "source": "direct",
        "decision_id": None,
        "position": None,
    }
    event.update(overrides)
    return event


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as s:
        yield s


def test_import_logging_gives_stdlib_and_proplog_imports_from_repo_root() -> None:
    code = (
        "import logging, sysconfig, proplog.store, proplog.frames;"
        "assert hasattr(logging, 'getLogger'), logging;"
        "assert logging.__file__.startswith(sysconfig.get_paths()['stdlib']), logging.__file__"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_sqlite_engine_uses_wal_synchronous_full_and_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'log.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar_one() == 2  # FULL
        assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar_one() == 5000
    engine.dispose()


def test_make_engine_creates_missing_parent_directory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "log.db"
    eng = make_engine(f"sqlite:///{path}")
    init_db(eng)
    init_db(eng)  # idempotent
    eng.dispose()
    assert path.exists()


def test_default_database_url_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOPBREAK_DATABASE_URL", raising=False)
    assert default_database_url() == "sqlite:///./loopbreak.db"
    monkeypatch.setenv("LOOPBREAK_DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert default_database_url() == "postgresql+psycopg://u@h/db"


def test_decision_round_trip_keeps_float_propensities_exact(session: Session) -> None:
    third, tiny, sum_ = 1 / 3, 1e-7, 0.1 + 0.2
    assert sum_ != 0.3  # the value that a decimal rounding would break
    raw = make_decision(cond=(third, sum_, tiny), marginals=(third, sum_, tiny))
    raw["candidate_scores"] = [third, sum_, tiny, -2.5e-300]
    result = record_decision(session=session, decision=raw)
    assert result == WriteResult(created=True, key=raw["decision_id"])

    stored = get_decision(session=session, decision_id=raw["decision_id"])
    assert stored is not None
    assert stored == DecisionCreate.model_validate(raw)
    assert [s.propensity for s in stored.slate] == [third, sum_, tiny]
    assert [s.cond_propensity for s in stored.slate] == [third, sum_, tiny]
    assert [s.prefix_propensity for s in stored.slate] == [third, third * sum_, third * sum_ * tiny]
    assert stored.candidate_scores == [third, sum_, tiny, -2.5e-300]
    assert stored.created_at == T0 and stored.created_at.tzinfo == UTC

    frame = slate_frame(session_or_engine=session)
    assert frame["propensity"].tolist() == [third, sum_, tiny]
    assert frame["prefix_propensity"].tolist() == [s.prefix_propensity for s in stored.slate]


def test_decision_created_at_in_other_zone_is_stored_as_the_same_utc_instant(
    session: Session,
) -> None:
    local = T0.astimezone(timezone(timedelta(hours=-5)))
    raw = make_decision(created_at=local)
    record_decision(session=session, decision=raw)
    stored = get_decision(session=session, decision_id=raw["decision_id"])
    assert stored is not None
    assert stored.created_at == T0
    assert stored.created_at.utcoffset() == timedelta(0)
    # A replay with the same instant written in UTC is the same decision.
    again = record_decision(session=session, decision={**raw, "created_at": T0})
    assert again.created is False


def test_uppercase_decision_id_is_stored_in_canonical_form(session: Session) -> None:
    key = str(uuid.uuid4())
    result = record_decision(session=session, decision=make_decision(decision_id=key.upper()))
    assert result.key == key
    assert get_decision(session=session, decision_id=key) is not None
    assert get_decision(session=session, decision_id="not-a-uuid") is None


def test_replayed_identical_decision_is_a_no_op(
    session: Session, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    raw = make_decision()
    assert record_decision(session=session, decision=raw).created is True
    with caplog.at_level("INFO", logger="proplog.store"):
        again = record_decision(session=session, decision=DecisionCreate.model_validate(raw))
    assert again == WriteResult(created=False, key=raw["decision_id"])
    assert "replayed" in caplog.text
    assert count_rows(engine, "decision") == 1
    assert count_rows(engine, "slate_item") == 3


def test_replayed_decision_with_changed_slate_raises_conflict_and_changes_nothing(
    session: Session, engine: Engine
) -> None:
    raw = make_decision(slate_items=(20, 30, 10))
    record_decision(session=session, decision=raw)
    changed = make_decision(decision_id=raw["decision_id"], slate_items=(20, 40, 10))
    with pytest.raises(ConflictError, match=r"decision_id .* slate\[1\]\.item_id") as info:
        record_decision(session=session, decision=changed)
    assert info.value.key == raw["decision_id"]
    assert (info.value.stored, info.value.given) == (30, 40)
    stored = get_decision(session=session, decision_id=raw["decision_id"])
    assert stored == DecisionCreate.model_validate(raw)
    assert count_rows(engine, "slate_item") == 3


def test_replayed_identical_event_is_a_no_op(session: Session, engine: Engine) -> None:
    event = make_event(value=12.5)
    assert record_event(session=session, event=event).created is True
    assert record_event(session=session, event=event) == WriteResult(False, event["event_id"])
    assert count_rows(engine, "event") == 1


def test_replayed_event_with_changed_value_raises_conflict_and_changes_nothing(
    session: Session, engine: Engine
) -> None:
    event = make_event(value=12.5)
    record_event(session=session, event=event)
    with pytest.raises(ConflictError, match=r"event_id .* value"):
        record_event(session=session, event={**event, "value": 99.0})
    stored = get_event(session=session, event_id=event["event_id"])
    assert stored is not None and stored.value == 12.5
    assert count_rows(engine, "event") == 1


def test_event_attributed_to_a_decision_position_is_stored(session: Session) -> None:
    decision = make_decision(slate_items=(20, 30, 10))
    record_decision(session=session, decision=decision)
    event = make_event(
        decision_id=decision["decision_id"], position=1, item_id=30, source="rec", value=42.0
    )
    assert record_event(session=session, event=event).created is True
    stored = get_event(session=session, event_id=event["event_id"])
    assert stored is not None
    assert (stored.decision_id, stored.position, stored.item_id) == (decision["decision_id"], 1, 30)


def test_user_history_is_strictly_before_and_oldest_first(session: Session) -> None:
    times = [T0 + timedelta(seconds=s) for s in (0, 10, 20, 30)]
    events = [make_event(event_id=f"e{i}", created_at=t) for i, t in enumerate(times)]
    events.append(make_event(event_id="other-user", user_id="u2", created_at=times[0]))
    record_events(session=session, events=list(reversed(events)))

    history = user_history(session=session, user_id="u1", before=times[2])
    assert [e.event_id for e in history] == ["e0", "e1"]  # e2 is at exactly `before`
    assert all(e.created_at.tzinfo == UTC for e in history)
    everything = user_history(session=session, user_id="u1", before=times[3] + timedelta(1))
    assert [e.event_id for e in everything] == ["e0", "e1", "e2", "e3"]


def test_user_history_limit_keeps_the_latest_events(session: Session) -> None:
    times = [T0 + timedelta(seconds=s) for s in range(5)]
    record_events(
        session=session,
        events=[make_event(event_id=f"e{i}", created_at=t) for i, t in enumerate(times)],
    )
    latest = user_history(session=session, user_id="u1", before=times[4], limit=2)
    assert [e.event_id for e in latest] == ["e2", "e3"]
    assert user_history(session=session, user_id="u1", before=times[4], limit=0) == []


@pytest.mark.parametrize("later", [True, False])
def test_user_history_and_later_is_the_history_then_every_later_event(
    engine: Engine, session: Session, later: bool
) -> None:
    """What a serving worker's history cache holds: the ``limit`` latest events before, then (with
    ``later``) every event at or after, oldest first, ties by event id; read on a pooled
    connection and on one the caller holds, whose transaction it ends."""
    seconds = (0, 10, 10, 20, 30, 30, 40)
    events = [make_event(event_id=f"e{i}", created_at=T0 + timedelta(seconds=s))
              for i, s in enumerate(seconds)]  # fmt: skip
    events.append(make_event(event_id="other-user", user_id="u2", created_at=T0))
    record_events(session=session, events=list(reversed(events)))
    before = T0 + timedelta(seconds=20)
    want = ["e1", "e2"] + (["e3", "e4", "e5", "e6"] if later else [])
    got = user_history_and_later(engine, user_id="u1", before=before, limit=2, later=later)
    assert [e.event_id for e in got] == want
    with engine.connect() as conn:
        held = user_history_and_later_on(conn, user_id="u1", before=before, limit=2, later=later)
        assert not conn.in_transaction()
    assert [e.event_id for e in held] == want
    none = user_history_and_later(engine, user_id="u1", before=before, limit=0, later=later)
    assert [e.event_id for e in none] == want[2:]


def test_user_history_refuses_naive_before(session: Session) -> None:
    with pytest.raises(LogValidationError, match="before"):
        user_history(session=session, user_id="u1", before=datetime(2024, 5, 1))


def test_slate_frame_joins_rec_plays_to_their_decision_and_position(session: Session) -> None:
    d1 = make_decision(slate_items=(20, 30, 10), created_at=T0)
    d2 = make_decision(slate_items=(40, 10, 20), created_at=T0 + timedelta(hours=1))
    record_decisions(session=session, decisions=[d2, d1])
    id1, id2 = d1["decision_id"], d2["decision_id"]
    record_events(
        session=session,
        events=[
            # two rec plays of d1 position 1: played once, values summed
            make_event(decision_id=id1, position=1, item_id=30, source="rec", value=30.0),
            make_event(decision_id=id1, position=1, item_id=30, source="rec", value=10.5),
            # a search play and a rec click on d1 position 0: not a rec play
            make_event(decision_id=id1, position=0, item_id=20, source="search", value=99.0),
            make_event(decision_id=id1, position=0, item_id=20, source="rec", kind="click"),
            # a direct play of the same item, no decision
            make_event(item_id=20, source="direct", value=50.0),
            # a rec play of d2 position 2
            make_event(decision_id=id2, position=2, item_id=20, source="rec", value=5.0),
        ],
    )
    frame = slate_frame(session_or_engine=session)
    assert list(zip(frame["decision_id"], frame["position"], strict=True)) == [
        (id1, 0),
        (id1, 1),
        (id1, 2),
        (id2, 0),
        (id2, 1),
        (id2, 2),
    ]
    assert frame["item_id"].tolist() == [20, 30, 10, 40, 10, 20]
    assert frame["played"].tolist() == [0, 1, 0, 0, 0, 1]
    assert frame["play_value"].tolist() == [0.0, 40.5, 0.0, 0.0, 0.0, 5.0]
    assert str(frame["created_at"].dtype) == "datetime64[us, UTC]"

    window = slate_frame(session_or_engine=session, since=T0 + timedelta(minutes=30))
    assert set(window["decision_id"]) == {id2}
    before_d2 = slate_frame(session_or_engine=session, until=T0 + timedelta(hours=1))
    assert set(before_d2["decision_id"]) == {id1}


def test_decision_and_event_frames_hold_candidates_and_events(
    session: Session, engine: Engine
) -> None:
    decision = make_decision()
    record_decision(session=session, decision=decision)
    record_event(session=session, event=make_event(event_id="e1", value=3.0))
    decisions = decision_frame(session_or_engine=engine)
    assert len(decisions) == 1
    row = decisions.iloc[0]
    assert row["candidate_ids"] == decision["candidate_ids"]
    assert row["candidate_scores"] == decision["candidate_scores"]
    assert row["exploration"] == decision["exploration"]
    assert row["k"] == 3
    events = event_frame(session_or_engine=engine)
    assert events["event_id"].tolist() == ["e1"]
    assert events["value"].tolist() == [3.0]
    assert events["position"].isna().all()


def test_batch_with_one_bad_decision_writes_none(session: Session, engine: Engine) -> None:
    bad = make_decision()
    bad["slate"][0]["propensity"] = 0.0
    batch = [make_decision(), bad, make_decision()]
    with pytest.raises(LogValidationError, match=r"decisions\[1\]\.slate\[0\]\.propensity"):
        record_decisions(session=session, decisions=batch)
    assert count_rows(engine, "decision") == 0
    assert count_rows(engine, "slate_item") == 0


def test_batch_with_a_conflicting_decision_writes_none(session: Session, engine: Engine) -> None:
    first = make_decision()
    record_decision(session=session, decision=first)
    conflicting = make_decision(decision_id=first["decision_id"], user_id="someone-else")
    with pytest.raises(ConflictError, match="user_id"):
        record_decisions(session=session, decisions=[make_decision(), conflicting])
    assert count_rows(engine, "decision") == 1


def test_batch_with_one_unattributable_event_writes_none(session: Session, engine: Engine) -> None:
    events = [make_event(), make_event(decision_id=str(uuid.uuid4()), source="rec")]
    with pytest.raises(UnknownDecisionError, match=r"events\[1\]\.decision_id"):
        record_events(session=session, events=events)
    assert count_rows(engine, "event") == 0


def test_failure_between_decision_and_slate_insert_leaves_nothing_half_written(
    session: Session, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    insert_rows = proplog.store._insert_rows

    def failing_insert(conn: Any, table: Any, columns: Any, rows: Any) -> None:
        if table.name == "slate_item":  # the decision row is in; its slate fails
            raise OSError("disk went away")
        insert_rows(conn, table, columns, rows)

    monkeypatch.setattr(proplog.store, "_insert_rows", failing_insert)
    with pytest.raises(OSError, match="disk went away"):
        record_decision(session=session, decision=make_decision())
    assert count_rows(engine, "decision") == 0
    monkeypatch.undo()
    # The session was rolled back and is usable again.
    assert record_decision(session=session, decision=make_decision()).created is True
    assert count_rows(engine, "decision") == 1


def test_decisions_from_two_threads_with_separate_sessions_are_all_stored(
    engine: Engine,
) -> None:
    shared = [make_decision() for _ in range(10)]  # both threads write these: a key race
    own = [[make_decision(user_id=f"t{t}") for _ in range(40)] for t in range(2)]
    barrier = threading.Barrier(2)
    results: dict[int, list[WriteResult]] = {0: [], 1: []}
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            with Session(engine) as s:
                barrier.wait()
                for i in range(40):
                    results[t].append(record_decision(session=s, decision=own[t][i]))
                    if i < len(shared):
                        results[t].append(record_decision(session=s, decision=shared[i]))
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    created = [r.key for t in (0, 1) for r in results[t] if r.created]
    assert sorted(created) == sorted({d["decision_id"] for d in shared + own[0] + own[1]})
    assert count_rows(engine, "decision") == 90
    assert count_rows(engine, "slate_item") == 270
    with Session(engine) as s:
        for raw in shared + own[0] + own[1]:
            assert get_decision(session=s, decision_id=raw["decision_id"]) == (
                DecisionCreate.model_validate(raw)
            )
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA integrity_check")).scalar_one() == "ok"


def test_decision_write_that_loses_a_key_race_is_retried_against_the_winner(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = make_decision()
    key = raw["decision_id"]
    with Session(engine) as winner:
        record_decision(session=winner, decision=raw)
    real_load = proplog.store._load_decisions
    calls: list[object] = []

    def stale_on_first_call(session: Session, ids: list[str]) -> dict[str, DecisionCreate]:
        # As if the winner committed between this writer's check and its insert.
        calls.append(ids)
        return {} if len(calls) == 1 else real_load(session, ids)

    monkeypatch.setattr(proplog.store, "_load_decisions", stale_on_first_call)
    with Session(engine) as loser:
        assert record_decision(session=loser, decision=raw) == WriteResult(False, key)
        assert len(calls) == 2
        calls.clear()
        with pytest.raises(ConflictError, match="user_id"):
            record_decision(session=loser, decision={**raw, "user_id": "u9"})
        assert len(calls) == 2
    assert count_rows(engine, "decision") == 1
    assert count_rows(engine, "slate_item") == 3


def test_event_write_that_loses_a_key_race_is_retried_against_the_winner(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = make_event(value=7.0)
    with Session(engine) as winner:
        record_event(session=winner, event=event)
    real_load = proplog.store._load_events
    calls: list[object] = []

    def stale_on_first_call(session: Session, ids: list[str]) -> dict[str, Any]:
        calls.append(ids)
        return {} if len(calls) == 1 else real_load(session, ids)

    monkeypatch.setattr(proplog.store, "_load_events", stale_on_first_call)
    with Session(engine) as loser:
        assert record_event(session=loser, event=event) == WriteResult(False, event["event_id"])
    assert len(calls) == 2
    assert count_rows(engine, "event") == 1


def test_data_survives_closing_and_reopening_the_engine(log_url: str) -> None:
    url = log_url
    first = make_engine(url)
    init_db(first)
    decision = make_decision(cond=(1 / 3, 1 / 7, 1e-7), marginals=(1 / 3, 1 / 7, 1e-7))
    with Session(first) as s:
        record_decision(session=s, decision=decision)
        record_event(session=s, event=make_event(event_id="e1"))
    first.dispose()

    second = make_engine(url)
    init_db(second)
    with Session(second) as s:
        assert get_decision(session=s, decision_id=decision["decision_id"]) == (
            DecisionCreate.model_validate(decision)
        )
        assert get_event(session=s, event_id="e1") is not None
    second.dispose()


def test_model_versions_and_policies_are_idempotent(session: Session, engine: Engine) -> None:
    args: dict[str, Any] = {
        "version": "ranker-7",
        "kind": "ranker",
        "params": {"lr": 1e-3},
        "metrics": {"auc": 0.71},
    }
    assert record_model_version(session=session, **args).created is True
    assert record_model_version(session=session, **args) == WriteResult(False, "ranker-7")
    with pytest.raises(ConflictError, match=r"ranker-7.*metrics\.auc"):
        record_model_version(session=session, **{**args, "metrics": {"auc": 0.72}})
    assert count_rows(engine, "model_version") == 1

    params = {"temperature": 0.7}
    assert record_policy(session=session, name="pl", version="1", params=params).created is True
    again = record_policy(session=session, name="pl", version="1", params=params)
    assert again == WriteResult(False, "pl@1")
    with pytest.raises(ConflictError, match=r"pl@1.*params\.temperature"):
        record_policy(session=session, name="pl", version="1", params={"temperature": 0.8})
    assert record_policy(session=session, name="pl", version="2", params=params).created is True


def test_ope_reports_are_appended_with_increasing_ids(session: Session) -> None:
    import numpy as np

    first = record_ope_report(
        session=session,
        candidate="pl@2",
        baseline="pl@1",
        payload={"value": np.float64(0.25), "ci": np.array([0.2, 0.3])},
        decision="promote",
        reasons=["interval above baseline"],
    )
    second = record_ope_report(
        session=session, candidate="pl@3", baseline=None, payload={}, decision=None, reasons=[]
    )
    assert second > first
    with pytest.raises(LogValidationError, match="payload"):
        record_ope_report(
            session=session,
            candidate="pl@4",
            baseline=None,
            payload={"value": float("nan")},
            decision=None,
            reasons=[],
        )


def test_packed_candidate_columns_round_trip_exactly_and_read_earlier_json() -> None:
    from sqlalchemy.dialects import sqlite

    from proplog.schema import PackedFloat64s, PackedInt64s

    dialect = sqlite.dialect()
    scores = [1 / 3, 0.1 + 0.2, -2.5e-300, 1e308, 0.0]
    packed = PackedFloat64s().process_bind_param(scores, dialect)
    assert packed is not None and len(packed) == 8 * len(scores)
    assert PackedFloat64s().process_result_value(packed, dialect) == scores
    ids = [0, 7, 2**63 - 1]
    assert (
        PackedInt64s().process_result_value(
            PackedInt64s().process_bind_param(ids, dialect), dialect
        )
        == ids
    )
    # A row written by a version that stored these columns as JSON text still reads.
    assert PackedFloat64s().process_result_value("[0.5, 1e-300]", dialect) == [0.5, 1e-300]
    assert PackedInt64s().process_result_value([1, 2], dialect) == [1, 2]


def test_item_ids_beyond_32_bits_round_trip_on_both_back_ends(session: Session) -> None:
    big = 2**40
    decision = make_decision()
    decision["candidate_ids"] = [big, big + 1, 10, 20]
    for item in decision["slate"]:
        item["item_id"] = {20: big, 30: big + 1, 10: 10}[item["item_id"]]
    decision["source_item"] = big + 2
    record_decision(session=session, decision=decision)
    event = make_event(
        decision_id=decision["decision_id"], position=0, item_id=big, source="rec", value=1.0
    )
    record_event(session=session, event=event)
    stored = get_decision(session=session, decision_id=decision["decision_id"])
    assert stored is not None
    assert [s.item_id for s in stored.slate] == [big, big + 1, 10]
    assert stored.source_item == big + 2
    stored_event = get_event(session=session, event_id=event["event_id"])
    assert stored_event is not None and stored_event.item_id == big
    frame = slate_frame(session_or_engine=session)
    assert frame["item_id"].tolist() == [big, big + 1, 10]
    assert frame["played"].tolist() == [1, 0, 0]
