"""Deferred decisions (``proplog.activation``): stored with their activation row by the store and
the batch writer, activated once before their deadline, refused events until then, and read by
the frames (and the export) only once shown; on SQLite and PostgreSQL (the ``engine`` fixture)."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine
from sqlmodel import Session
from store_inputs import T0, count_rows, decision_payload, rec_play

from proplog.activation import (
    ActivationConflictError,
    ActivationResult,
    activate,
    get_activation,
)
from proplog.batch_writer import BatchWriter
from proplog.errors import ConflictError, LogValidationError, UnknownDecisionError
from proplog.export import export_frame, iter_export_chunks
from proplog.frames import decision_frame, slate_frame
from proplog.store import (
    get_decision,
    record_batch,
    record_decision,
    record_event,
    record_validated_batch,
    validated_decision,
    validated_event,
)

WINDOW = timedelta(hours=1)
EXPIRES = T0 + WINDOW


def decision(minutes: float = 0, *, user_id: str = "u1") -> dict[str, Any]:
    payload = decision_payload(decision_id=str(uuid.uuid4()), user_id=user_id)
    payload["created_at"] = T0 + timedelta(minutes=minutes)
    return payload


def decision_ids(frame: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(frame["decision_id"]))


def test_a_deferred_decision_is_logged_with_its_deadline_and_not_yet_activated(
    engine: Engine,
) -> None:
    deferred, shown = decision(), decision(1)
    with Session(engine) as session:
        assert record_decision(session=session, decision=deferred, deferred_until=EXPIRES).created
        record_decision(session=session, decision=shown)
        stored = get_activation(session=session, decision_id=deferred["decision_id"])
        assert stored is not None
        assert (stored.expires_at, stored.activated_at, stored.shown) == (EXPIRES, None, False)
        assert get_activation(session=session, decision_id=shown["decision_id"]) is None
        assert get_decision(session=session, decision_id=deferred["decision_id"]) is not None
    assert count_rows(engine, "decision_activation") == 1


def test_activation_is_idempotent_and_keeps_the_first_time(engine: Engine) -> None:
    d = decision()
    with Session(engine) as session:
        record_decision(session=session, decision=d, deferred_until=EXPIRES)
        first = activate(
            session=session, decision_id=d["decision_id"], now=T0 + timedelta(minutes=30)
        )
        again = activate(session=session, decision_id=d["decision_id"], now=T0 + timedelta(hours=5))
        stored = get_activation(session=session, decision_id=d["decision_id"])
    assert first == ActivationResult(d["decision_id"], T0 + timedelta(minutes=30), EXPIRES, False)
    assert again == ActivationResult(d["decision_id"], T0 + timedelta(minutes=30), EXPIRES, True)
    assert stored is not None and stored.shown and stored.activated_at == first.activated_at


def test_activation_at_exactly_its_deadline_is_expired_and_just_before_is_in_time(
    engine: Engine,
) -> None:
    late, in_time = decision(), decision()
    with Session(engine) as session:
        for d in (late, in_time):
            record_decision(session=session, decision=d, deferred_until=EXPIRES)
        with pytest.raises(ActivationConflictError, match="expired at 2024-05-01T13:00:00") as err:
            activate(session=session, decision_id=late["decision_id"], now=EXPIRES)
        assert (err.value.field, err.value.reason) == ("decision_id", "expired")
        result = activate(
            session=session,
            decision_id=in_time["decision_id"],
            now=EXPIRES - timedelta(microseconds=1),
        )
        assert not result.replayed
        still = get_activation(session=session, decision_id=late["decision_id"])
    assert still is not None and still.activated_at is None
    assert decision_ids(slate_frame(session_or_engine=engine)) == [in_time["decision_id"]]
    every = decision_ids(slate_frame(session_or_engine=engine, shown_only=False))
    assert sorted(every) == sorted([late["decision_id"], in_time["decision_id"]])


def test_activating_what_was_not_deferred_unknown_or_malformed_is_refused(
    engine: Engine,
) -> None:
    shown = decision()
    with Session(engine) as session:
        record_decision(session=session, decision=shown)
        with pytest.raises(ActivationConflictError, match="was not deferred; it counted as shown"):
            activate(session=session, decision_id=shown["decision_id"], now=T0)
        unknown = str(uuid.uuid4())
        with pytest.raises(UnknownDecisionError) as missing:
            activate(session=session, decision_id=unknown, now=T0)
        assert missing.value.where == "decision_id"
        with pytest.raises(LogValidationError) as bad:
            activate(session=session, decision_id="not-a-uuid", now=T0)
        assert bad.value.field == "decision_id"
    assert count_rows(engine, "decision_activation") == 0


def test_the_conflict_is_a_conflict_error_naming_decision_id_and_survives_pickling() -> None:
    import pickle

    err = ActivationConflictError.not_deferred("00000000-0000-4000-8000-000000000001")
    assert isinstance(err, ConflictError)
    again = pickle.loads(pickle.dumps(err))
    assert (again.field, again.reason, str(again)) == ("decision_id", "not_deferred", str(err))


def test_frames_read_shown_decisions_unless_asked_for_all(engine: Engine) -> None:
    plain, pending, activated, expired = decision(0), decision(1), decision(2), decision(3)
    with Session(engine) as session:
        record_decision(session=session, decision=plain)
        for d in (pending, activated, expired):
            record_decision(session=session, decision=d, deferred_until=d["created_at"] + WINDOW)
        activate(
            session=session, decision_id=activated["decision_id"], now=T0 + timedelta(minutes=10)
        )
        with pytest.raises(ActivationConflictError):
            activate(
                session=session, decision_id=expired["decision_id"], now=T0 + timedelta(hours=2)
            )
    everything = [d["decision_id"] for d in (plain, pending, activated, expired)]
    shown = [plain["decision_id"], activated["decision_id"]]
    assert decision_ids(slate_frame(session_or_engine=engine)) == shown
    assert list(decision_frame(session_or_engine=engine)["decision_id"]) == shown
    assert decision_ids(slate_frame(session_or_engine=engine, shown_only=False)) == everything
    assert list(decision_frame(session_or_engine=engine, shown_only=False)["decision_id"]) == (
        everything
    )
    window = slate_frame(session_or_engine=engine, since=T0 + timedelta(minutes=1))
    assert decision_ids(window) == [activated["decision_id"]]


def test_frames_of_a_log_without_deferred_decisions_are_what_they_were(engine: Engine) -> None:
    decisions = [decision(m, user_id=f"u{m % 2}") for m in range(4)]
    with Session(engine) as session:
        record_batch(session=session, decisions=decisions, events=[rec_play(decisions[1])])
    for read in (slate_frame, decision_frame):
        shown = read(session_or_engine=engine)
        pd.testing.assert_frame_equal(shown, read(session_or_engine=engine, shown_only=False))
        assert len(shown) >= 4
    assert slate_frame(session_or_engine=engine)["played"].sum() == 1


def test_an_event_from_a_deferred_slate_is_refused_until_it_is_activated(engine: Engine) -> None:
    d = decision()
    with Session(engine) as session:
        record_decision(session=session, decision=d, deferred_until=EXPIRES)
        with pytest.raises(ActivationConflictError, match="deferred and not activated") as err:
            record_event(session=session, event=rec_play(d))
        assert (err.value.field, err.value.reason) == ("decision_id", "not_activated")
        unattributed = {**rec_play(d), "decision_id": None, "position": None, "source": "search"}
        assert record_event(session=session, event=unattributed).created
        activate(session=session, decision_id=d["decision_id"], now=T0 + timedelta(minutes=5))
        assert record_event(session=session, event=rec_play(d)).created
    assert count_rows(engine, "event") == 2


def test_an_event_in_the_same_batch_as_its_deferred_decision_is_refused_naming_it(
    engine: Engine,
) -> None:
    d = decision()
    with Session(engine) as session:
        with pytest.raises(ActivationConflictError) as err:
            record_validated_batch(
                session=session,
                decisions=[validated_decision(d)],
                events=[validated_event(rec_play(d))],
                deferred_until=[EXPIRES],
            )
        assert err.value.field == "events[0].decision_id"
        assert count_rows(engine, "decision") == 0  # all or nothing
        record_decision(session=session, decision=d, deferred_until=EXPIRES)
        with pytest.raises(ActivationConflictError) as err:
            record_batch(session=session, events=[rec_play(d)])
        assert err.value.field == "events[0].decision_id"
    assert count_rows(engine, "event") == 0


def test_a_replay_must_repeat_its_deferred_state(engine: Engine) -> None:
    deferred, shown = decision(), decision()
    with Session(engine) as session:
        record_decision(session=session, decision=deferred, deferred_until=EXPIRES)
        record_decision(session=session, decision=shown)
        again = record_decision(session=session, decision=deferred, deferred_until=EXPIRES)
        assert not again.created
        assert not record_decision(session=session, decision=shown).created
        with pytest.raises(ConflictError) as undeferred:
            record_decision(session=session, decision=deferred)
        assert (undeferred.value.field, undeferred.value.stored) == ("deferred", True)
        with pytest.raises(ConflictError) as now_deferred:
            record_decision(session=session, decision=shown, deferred_until=EXPIRES)
        assert (now_deferred.value.field, now_deferred.value.given) == ("deferred", True)
    assert count_rows(engine, "decision_activation") == 1


def test_a_deadline_not_after_the_decision_is_refused_naming_it(engine: Engine) -> None:
    d = decision()
    with Session(engine) as session:
        for bad in (T0, T0 - timedelta(seconds=1), T0.replace(tzinfo=None)):
            with pytest.raises(LogValidationError) as err:
                record_decision(session=session, decision=d, deferred_until=bad)
            assert err.value.field == "deferred_until"
    assert count_rows(engine, "decision") == 0


def test_the_batch_writer_makes_a_deferred_decision_durable_with_its_activation_row(
    engine: Engine,
) -> None:
    deferred, shown = decision(), decision(1)
    bad_replay = {**shown, "user_id": "someone-else"}  # a conflict: the batch is split
    with BatchWriter(engine, max_wait_s=0.05) as writer:
        futures = [
            writer.submit_decision(deferred, deferred_until=EXPIRES),
            writer.submit_decision(shown),
        ]
        assert [f.result(timeout=30).created for f in futures] == [True, True]
        assert count_rows(engine, "decision_activation") == 1  # durable with its future
        later = decision(2)
        split = [
            writer.submit_decision(bad_replay),
            writer.submit_decision(later, deferred_until=later["created_at"] + WINDOW),
        ]
        with pytest.raises(ConflictError):
            split[0].result(timeout=30)
        assert split[1].result(timeout=30).created
        with pytest.raises(ActivationConflictError):
            writer.record_event(rec_play(deferred), timeout=30)
        with pytest.raises(ConflictError) as replay:
            writer.record_decision(deferred, timeout=30)
        assert replay.value.field == "deferred"
        with pytest.raises(LogValidationError):
            writer.submit_decision(decision(3), deferred_until=T0)
    with Session(engine) as session:
        stored = get_activation(session=session, decision_id=later["decision_id"])
    assert stored is not None and stored.expires_at == later["created_at"] + WINDOW
    assert count_rows(engine, "decision_activation") == 2
    assert decision_ids(slate_frame(session_or_engine=engine)) == [shown["decision_id"]]


def test_concurrent_activations_activate_once(engine: Engine) -> None:
    d = decision()
    with Session(engine) as session:
        record_decision(session=session, decision=d, deferred_until=EXPIRES)
    outcomes: list[ActivationResult] = []
    start = threading.Barrier(6)

    def one(minute: int) -> None:
        start.wait()
        with Session(engine) as session:
            now = T0 + timedelta(minutes=minute)
            outcomes.append(activate(session=session, decision_id=d["decision_id"], now=now))

    threads = [threading.Thread(target=one, args=(m,)) for m in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o.replayed for o in outcomes) == [False] + [True] * 5
    assert len({o.activated_at for o in outcomes}) == 1


def test_the_export_leaves_out_unshown_decisions_and_pages_past_them(engine: Engine) -> None:
    pending = [decision(m) for m in range(3)]
    shown = [decision(m) for m in range(3, 5)]
    with Session(engine) as session:
        for d in pending:
            record_decision(session=session, decision=d, deferred_until=d["created_at"] + WINDOW)
        for d in shown:
            record_decision(session=session, decision=d)
    wanted = [d["decision_id"] for d in shown]
    assert decision_ids(export_frame(session_or_engine=engine)) == wanted
    chunks = list(iter_export_chunks(session_or_engine=engine, chunk_decisions=1))
    assert [decision_ids(c) for c in chunks] == [[key] for key in wanted]
