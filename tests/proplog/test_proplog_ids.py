"""Time-ordered decision ids (version-7 UUIDs)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from proplog.ids import time_ordered_uuid


def test_version_variant_and_time_prefix() -> None:
    at = datetime(2024, 6, 1, 12, 30, tzinfo=UTC)
    value = uuid.UUID(time_ordered_uuid(at))
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert value.int >> 80 == int(at.timestamp() * 1000)


def test_ids_sort_by_time_and_differ_within_a_millisecond() -> None:
    start = datetime(2024, 6, 1, tzinfo=UTC)
    ids = [time_ordered_uuid(start + timedelta(milliseconds=i)) for i in range(50)]
    assert ids == sorted(ids)
    same = {time_ordered_uuid(start) for _ in range(200)}
    assert len(same) == 200


def test_random_bits_make_it_reproducible_and_fill_both_random_fields() -> None:
    at = datetime(2024, 6, 1, tzinfo=timezone(timedelta(hours=2)))
    assert time_ordered_uuid(at, random_bits=12345) == time_ordered_uuid(at, random_bits=12345)
    low = uuid.UUID(time_ordered_uuid(at, random_bits=0))
    high = uuid.UUID(time_ordered_uuid(at, random_bits=(1 << 74) - 1))
    assert (high.int ^ low.int) == ((1 << 12) - 1) << 64 | (1 << 62) - 1


@pytest.mark.parametrize(
    ("at", "message"),
    [
        (datetime(2024, 6, 1), "timezone-aware"),
        (datetime(1960, 1, 1, tzinfo=UTC), "1970"),
    ],
)
def test_bad_instants_are_refused(at: datetime, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        time_ordered_uuid(at)


def test_ids_stay_unique_across_forked_workers_and_a_seeded_global_random() -> None:
    """A forked child draws other random bits than its parent (the generator is seeded again at
    fork), and seeding Python's global ``random`` (as simulations do) repeats no id."""
    import os
    import random

    at = datetime(2026, 1, 1, tzinfo=UTC)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, through the pipe
        os.write(write, time_ordered_uuid(at).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    os.close(read)
    assert child != time_ordered_uuid(at)
    random.seed(0)
    first = time_ordered_uuid(at)
    random.seed(0)
    assert time_ordered_uuid(at) != first
