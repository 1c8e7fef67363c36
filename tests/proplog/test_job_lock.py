"""One run at a time of a scheduled job (``proplog.job_lock``): on a SQLite file and on a real
PostgreSQL server, a second run of the same job is refused at once, another job is not, and the
lock is free again when the holder's block ends, however it ends."""

from __future__ import annotations

import pytest

from proplog.engine import make_engine
from proplog.job_lock import JobLockedError, job_lock


def test_a_second_run_is_refused_while_the_first_holds_the_lock(log_url: str) -> None:
    first, second = make_engine(log_url), make_engine(log_url)
    try:
        with job_lock(first, "retrain"):
            refused = pytest.raises(JobLockedError, match="another retrain run holds the lock")
            with refused, job_lock(second, "retrain"):
                pass
            with job_lock(second, "export"):  # another job's lock is another lock
                pass
        with job_lock(second, "retrain"):  # free again
            pass
        with pytest.raises(RuntimeError, match="boom"), job_lock(first, "retrain"):
            raise RuntimeError("boom")
        with job_lock(second, "retrain"):  # released although the block raised
            pass
    finally:
        first.dispose()
        second.dispose()


def test_an_in_memory_log_has_nothing_to_exclude() -> None:
    engine = make_engine("sqlite://")
    with job_lock(engine, "retrain"), job_lock(engine, "retrain"):
        pass
    engine.dispose()
