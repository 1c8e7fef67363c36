"""The batch writer: group commit, idempotency within and across batches, bad records failing
alone, and many threads writing at once, on SQLite and PostgreSQL (the ``engine`` fixture)."""

from __future__ import annotations

import functools
import re
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session
from store_inputs import SLATE_REFUSALS, Mutation, count_rows, decision_payload, rec_play

from proplog.batch_writer import BatchWriter
from proplog.engine import make_engine
from proplog.errors import ConflictError, LogValidationError, UnknownDecisionError
from proplog.schema import DecisionCreate
from proplog.store import get_decision, get_event
from proplog.writes import WriteResult


def decision(*, user_id: str = "u1", items: tuple[int, ...] = (20, 30, 10)) -> dict[str, Any]:
    return decision_payload(
        decision_id=str(uuid.uuid4()), user_id=user_id, items=items, explored_position=2
    )


event_for = functools.partial(rec_play, position=1)
"""A play of position 1 of a decision payload."""


def results(futures: list[Future[WriteResult]]) -> list[bool]:
    return [f.result(timeout=30).created for f in futures]


def test_records_are_durable_when_their_future_resolves(engine: Engine) -> None:
    decisions = [decision() for _ in range(5)]
    with BatchWriter(engine, max_wait_s=0.01) as writer:
        futures = [writer.submit_decision(d) for d in decisions]
        futures += [writer.submit_event(event_for(d)) for d in decisions]
        assert results(futures) == [True] * 10
        # Read through a second engine: the writes are committed, not just in the writer's session.
        other = make_engine(engine.url.render_as_string(hide_password=False))
        with Session(other) as session:
            for d in decisions:
                assert get_decision(session=session, decision_id=d["decision_id"]) == (
                    DecisionCreate.model_validate(d)
                )
        other.dispose()
    assert count_rows(engine, "decision") == 5
    assert count_rows(engine, "slate_item") == 15
    assert count_rows(engine, "event") == 5


def test_validated_models_are_written_as_they_are_and_anything_else_is_refused(
    engine: Engine,
) -> None:
    d = decision()
    record = DecisionCreate.model_validate(d)
    with BatchWriter(engine, max_wait_s=0.01) as writer:
        assert writer.submit_validated(record).result().created
        assert not writer.submit_validated(record).result().created  # a replay, as any other
        with pytest.raises(TypeError, match="record must be a DecisionCreate or an EventCreate"):
            writer.submit_validated(d)  # type: ignore[arg-type]
    with Session(engine) as session:
        assert get_decision(session=session, decision_id=d["decision_id"]) == record
    assert count_rows(engine, "slate_item") == 3


def test_one_batch_is_one_commit_and_a_duplicate_inside_it_is_a_replay(engine: Engine) -> None:
    d = decision()
    e = event_for(d)
    with BatchWriter(engine, max_batch=100, max_wait_s=0.5) as writer:
        futures = [
            writer.submit_decision(d),
            writer.submit_decision(dict(d)),  # the same decision again, in the same batch
            writer.submit_event(e),
            writer.submit_event(dict(e)),
        ]
        writer.flush()
        assert results(futures) == [True, False, True, False]
        assert (writer.stats.commits, writer.stats.records) == (1, 4)
    assert count_rows(engine, "decision") == 1
    assert count_rows(engine, "slate_item") == 3
    assert count_rows(engine, "event") == 1


def test_replays_across_batches_are_reported_and_write_nothing(engine: Engine) -> None:
    d = decision()
    e = event_for(d)
    with BatchWriter(engine, max_wait_s=0.0) as writer:
        first = writer.record_decision(d)
        assert writer.record_event(e) == WriteResult(created=True, key=e["event_id"])
        again = writer.record_decision(DecisionCreate.model_validate(d))
        assert writer.record_event(e) == WriteResult(created=False, key=e["event_id"])
    assert (first.created, again.created) == (True, False)
    assert first.key == again.key == d["decision_id"]
    assert count_rows(engine, "decision") == 1
    assert count_rows(engine, "event") == 1


@pytest.mark.parametrize(("mutate", "field"), SLATE_REFUSALS)
def test_bad_decision_is_refused_at_submit_and_the_batch_around_it_is_written(
    engine: Engine, mutate: Mutation, field: str
) -> None:
    good = [decision() for _ in range(3)]
    bad = decision()
    mutate(bad)
    with BatchWriter(engine, max_wait_s=0.2) as writer:
        before = writer.submit_decision(good[0])
        with pytest.raises(LogValidationError, match=re.escape(field)) as info:
            writer.submit_decision(bad)
        after = [writer.submit_decision(d) for d in good[1:]]
        assert results([before, *after]) == [True, True, True]
    assert info.value.field == field
    assert count_rows(engine, "decision") == 3
    assert count_rows(engine, "slate_item") == 9
    with Session(engine) as session:
        assert get_decision(session=session, decision_id=bad["decision_id"]) is None


BadEvent = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]


def unknown_decision(stored: dict[str, Any], _event: dict[str, Any]) -> dict[str, Any]:
    return event_for(stored, decision_id=str(uuid.uuid4()))


def position_not_in_slate(stored: dict[str, Any], _event: dict[str, Any]) -> dict[str, Any]:
    return {**event_for(stored), "position": 7}


def item_not_at_position(stored: dict[str, Any], _event: dict[str, Any]) -> dict[str, Any]:
    return event_for(stored, position=1, item_id=40)


def changed_replay(_stored: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "value": 99.0}


BAD_EVENTS = [
    pytest.param(unknown_decision, UnknownDecisionError, "decision_id", id="unknown-decision"),
    pytest.param(position_not_in_slate, LogValidationError, "position", id="position-not-in-slate"),
    pytest.param(item_not_at_position, LogValidationError, "item_id", id="item-not-at-position"),
    pytest.param(changed_replay, ConflictError, "value", id="conflicting-replay"),
]


@pytest.mark.parametrize(("make_bad", "error", "field"), BAD_EVENTS)
def test_event_refused_by_the_database_fails_alone_and_its_batch_is_written(
    engine: Engine,
    make_bad: BadEvent,
    error: type[Exception],
    field: str,
) -> None:
    stored = decision()
    stored_event = event_for(stored, position=0)
    with BatchWriter(engine, max_wait_s=0.0) as writer:
        writer.record_decision(stored)
        writer.record_event(stored_event)
    fresh = [decision() for _ in range(4)]
    with BatchWriter(engine, max_batch=100, max_wait_s=0.5) as writer:
        futures = [writer.submit_decision(d) for d in fresh[:2]]
        bad = writer.submit_event(make_bad(stored, stored_event))
        futures += [writer.submit_decision(d) for d in fresh[2:]]
        futures += [writer.submit_event(event_for(d)) for d in fresh]
        writer.flush()
        with pytest.raises(error, match=re.escape(field)):
            bad.result(timeout=30)
        assert results(futures) == [True] * 8
        assert writer.stats.split_batches >= 1
        assert writer.stats.failed_records == 1
    assert count_rows(engine, "decision") == 5
    assert count_rows(engine, "slate_item") == 15
    assert count_rows(engine, "event") == 5
    with Session(engine) as session:
        kept = get_event(session=session, event_id=stored_event["event_id"])
    assert kept is not None and kept.value == 30.0


def test_conflicting_replay_inside_one_batch_fails_alone(engine: Engine) -> None:
    d = decision()
    changed = {**d, "user_id": "u9"}
    others = [decision() for _ in range(3)]
    with BatchWriter(engine, max_batch=100, max_wait_s=0.5) as writer:
        first = writer.submit_decision(d)
        conflict = writer.submit_decision(changed)
        rest = [writer.submit_decision(o) for o in others]
        writer.flush()
        assert results([first, *rest]) == [True] * 4
        with pytest.raises(ConflictError, match="user_id"):
            conflict.result(timeout=30)
    assert count_rows(engine, "decision") == 4
    with Session(engine) as session:
        stored = get_decision(session=session, decision_id=d["decision_id"])
        assert stored is not None and stored.user_id == "u1"


def test_many_threads_write_every_record_exactly_once(engine: Engine) -> None:
    threads, per_thread = 4, 40
    shared = [decision(user_id="shared") for _ in range(10)]  # every thread submits these
    own = [[decision(user_id=f"t{t}") for _ in range(per_thread)] for t in range(threads)]
    created: list[list[str]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    with BatchWriter(engine, max_batch=25, max_wait_s=0.002) as writer:

        def produce(t: int) -> None:
            try:
                barrier.wait()
                futures = []
                for i, d in enumerate(own[t]):
                    futures.append(writer.submit_decision(d))
                    futures.append(writer.submit_event(event_for(d)))
                    if i < len(shared):
                        futures.append(writer.submit_decision(shared[i]))
                for future in futures:
                    result = future.result(timeout=60)
                    if result.created:
                        created[t].append(result.key)
            except BaseException as exc:  # surfaced in the main thread below
                errors.append(exc)

        pool = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        assert writer.stats.commits > 1  # several batches: the group commit really grouped

    assert errors == []
    keys = [key for per in created for key in per]
    expected_decisions = {d["decision_id"] for d in shared} | {
        d["decision_id"] for o in own for d in o
    }
    assert len(keys) == len(set(keys))  # each key reported new exactly once
    assert expected_decisions <= set(keys)
    assert count_rows(engine, "decision") == len(expected_decisions) == 170
    assert count_rows(engine, "slate_item") == 3 * 170
    assert count_rows(engine, "event") == threads * per_thread


def test_close_writes_what_is_queued_and_then_refuses_records(engine: Engine) -> None:
    writer = BatchWriter(engine, max_batch=1000, max_wait_s=5.0)
    futures = [writer.submit_decision(decision()) for _ in range(20)]
    writer.close()  # does not wait the 5 s: closing ends the batch
    assert all(f.done() for f in futures)
    assert results(futures) == [True] * 20
    assert count_rows(engine, "decision") == 20
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit_decision(decision())
    writer.close()  # idempotent


def test_every_record_fails_when_the_database_refuses_them_and_the_writer_keeps_going(
    log_url: str, request: pytest.FixtureRequest
) -> None:
    bare_url, bare_name = log_url, None
    if log_url.startswith("postgresql"):  # the test database has the tables: use an empty one
        server = request.getfixturevalue("postgres_server")
        bare_name = f"bare_{uuid.uuid4().hex[:12]}"
        bare_url = server.create_database(bare_name)
    bare = make_engine(bare_url)  # no tables: every write fails in the database
    try:
        with BatchWriter(bare, max_batch=100, max_wait_s=0.2) as writer:
            futures = [writer.submit_decision(decision()) for _ in range(4)]
            for future in futures:
                with pytest.raises(Exception, match="decision"):
                    future.result(timeout=30)
            assert writer.stats.failed_records == 4
            with pytest.raises(Exception, match="decision"):
                writer.record_decision(decision(), timeout=30)
    finally:
        bare.dispose()
        if bare_name is not None:
            server.drop_database(bare_name)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch": 0}, "max_batch"),
        ({"max_batch": 2.5}, "max_batch"),
        ({"max_wait_s": -1}, "max_wait_s"),
        ({"max_queue": 0}, "max_queue"),
    ],
)
def test_bad_writer_settings_are_refused_naming_them(
    engine: Engine, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        BatchWriter(engine, **kwargs)


def test_the_writer_keeps_its_own_connection_while_callers_hold_the_pool(tmp_path: Any) -> None:
    """Callers waiting on their futures may hold every pooled connection (API requests hold
    their sessions' ones): the writer must not need one of them for its next batch."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError

    from proplog.engine import init_db

    url = f"sqlite:///{tmp_path / 'pool.db'}"
    init_db(make_engine(url))
    engine = create_engine(url, pool_size=2, max_overflow=0, pool_timeout=1)
    held = []
    with BatchWriter(engine, max_wait_s=0.0) as writer:
        assert writer.record_decision(decision(user_id="first"), timeout=10).created
        try:  # take every connection the pool still has
            while True:
                held.append(engine.connect())
        except SQLAlchemyTimeoutError:
            pass
        for user in ("a", "b", "c"):  # one batch each, one after the other
            assert writer.record_decision(decision(user_id=user), timeout=5).created
        assert held[0].execute(text("SELECT COUNT(*) FROM decision")).scalar_one() == 4
        for connection in held:
            connection.close()
    engine.dispose()
