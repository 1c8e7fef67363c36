"""Writers' turns on a SQLite log file: a write waits while another writer holds its turn, and
two processes writing into one file store every decision exactly once."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlmodel import Session
from store_inputs import decision_payload

from proplog.engine import init_db, make_engine
from proplog.store import get_decision, record_decision
from proplog.writer_lock import lock_path, writer_turn


def _decision() -> dict:
    return decision_payload(
        decision_id=str(uuid.uuid4()), user_id="u1", items=(20, 30, 10), explored_position=2
    )


def test_a_write_waits_for_the_writer_holding_its_turn(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'log.db'}")
    init_db(engine)
    record = _decision()
    finished: list[float] = []

    def write() -> None:
        with Session(engine) as session:
            record_decision(session=session, decision=record)
        finished.append(time.perf_counter())

    with engine.connect() as holder, writer_turn(holder):
        assert lock_path(holder) == str(tmp_path / "log.db") + "-writer.lock"
        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.3)
        assert not finished  # still waiting for its turn
        released = time.perf_counter()
    writer.join(timeout=10)
    assert finished and finished[0] >= released
    with Session(engine) as session:
        assert get_decision(session=session, decision_id=record["decision_id"]) is not None
    engine.dispose()


def test_memory_databases_take_no_lock_file(tmp_path: Path) -> None:
    engine = make_engine("sqlite://")
    with engine.connect() as conn:
        assert lock_path(conn) is None
        with writer_turn(conn):  # a no-op
            pass
    engine.dispose()


def _write_many(url: str, ids: list[str]) -> None:
    engine = make_engine(url)
    with Session(engine) as session:
        for decision_id in ids:
            payload = decision_payload(
                decision_id=decision_id, user_id="u1", items=(20, 30, 10), explored_position=2
            )
            record_decision(session=session, decision=payload)
    engine.dispose()


def test_two_processes_write_one_file_each_decision_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    engine = make_engine(url)
    init_db(engine)
    shared = [str(uuid.uuid4()) for _ in range(30)]  # both processes write these: replays
    own = [[str(uuid.uuid4()) for _ in range(30)] for _ in range(2)]
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_many, args=(url, shared + own[p])) for p in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    with engine.connect() as conn:
        decisions = conn.execute(text("SELECT count(*) FROM decision")).scalar_one()
        items = conn.execute(text("SELECT count(*) FROM slate_item")).scalar_one()
    assert decisions == 90 and items == 90 * 3
    engine.dispose()


def test_a_turn_taken_again_by_its_thread_is_kept_until_the_outermost_ends(
    tmp_path: Path,
) -> None:
    import fcntl
    import os

    engine = make_engine(f"sqlite:///{tmp_path / 'log.db'}")
    init_db(engine)

    def free_elsewhere(path: str) -> bool:
        fd = os.open(path, os.O_RDWR)  # another open file: excluded as another writer is
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return True
        finally:
            os.close(fd)

    with engine.connect() as conn:
        path = lock_path(conn)
        assert path is not None
        with writer_turn(conn):
            with writer_turn(conn):  # no deadlock with itself
                assert not free_elsewhere(path)
            assert not free_elsewhere(path)  # the inner exit kept the turn
        assert free_elsewhere(path)
    engine.dispose()


def test_records_that_arrive_while_the_writer_waits_for_its_turn_share_its_commit(
    tmp_path: Path,
) -> None:
    from proplog.batch_writer import BatchWriter

    engine = make_engine(f"sqlite:///{tmp_path / 'log.db'}")
    init_db(engine)
    with BatchWriter(engine, max_wait_s=0) as writer, engine.connect() as holder:
        with writer_turn(holder):  # another writer's turn: the batch writer waits for it
            first = writer.submit_decision(_decision())
            time.sleep(0.2)  # the writer has taken the first record and waits for the turn
            rest = [writer.submit_decision(_decision()) for _ in range(9)]
            time.sleep(0.1)
            assert not first.done()
        for future in [first, *rest]:
            assert future.result(timeout=10).created
        writer.flush()
        assert writer.stats.records == 10
        assert writer.stats.commits == 1  # not one for the first and another for the rest
    engine.dispose()
