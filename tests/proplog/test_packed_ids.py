"""A decision's candidate ids, run-encoded when that is shorter: every list reads back exactly,
columns written plainly (by earlier versions too) still read, and a damaged column is refused."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from proplog.schema import RUNS_TAG, PackedInt64s, pack_id_runs, unpack_id_runs

LISTS = [
    pytest.param([], id="empty"),
    pytest.param([5], id="one"),
    pytest.param([5, 6], id="two"),
    pytest.param(list(range(1, 1001)), id="one-run-of-1000"),
    pytest.param([*range(1, 400), *range(402, 1001)], id="two-runs"),
    pytest.param([*range(0, 300), 7_000, *range(300, 900)], id="runs-out-of-order"),
    pytest.param([9, 3, 7, 1, 12, 40], id="unsorted-no-runs"),
    pytest.param([2**63 - 3, 2**63 - 2, 2**63 - 1, 0, 1, 2], id="int64-top-then-zero"),
    pytest.param([2**63 - 1, -(2**63), -(2**63) + 1, 5], id="no-run-across-wrap"),
    pytest.param([-5, -4, -3, -2, -1, 0, 1], id="negative-run"),
    pytest.param([3, 4, 4, 5, 6, 7, 8, 9], id="duplicate-inside-run"),
]


@pytest.mark.parametrize("ids", LISTS)
@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "pg"])
def test_every_id_list_reads_back_exactly(ids: list[int], dialect) -> None:
    column = PackedInt64s()
    stored = column.process_bind_param(ids, dialect)
    assert stored is not None
    assert column.process_result_value(stored, dialect) == ids
    assert len(stored) <= 8 * len(ids)  # never longer than plain packing


def test_mostly_consecutive_ids_take_a_few_bytes_and_scattered_ones_stay_plain() -> None:
    dialect = sqlite.dialect()
    dense = [*range(1, 500), *range(503, 1001)]
    stored = PackedInt64s().process_bind_param(dense, dialect)
    assert stored == RUNS_TAG + bytes(
        b"".join(v.to_bytes(8, "little", signed=True) for v in (1, 499, 503, 498))
    )
    scattered = [10, 20, 30, 40]
    plain = PackedInt64s().process_bind_param(scattered, dialect)
    assert plain == b"".join(v.to_bytes(8, "little") for v in scattered)
    # Three ids in one run: 17 bytes run-encoded against 24 plain.
    assert len(PackedInt64s().process_bind_param([4, 5, 6], dialect) or b"") == 17
    # Run-encoding only when strictly shorter: two runs of two (33 bytes) against 32 plain.
    assert pack_id_runs(b"".join(v.to_bytes(8, "little") for v in (1, 2, 8, 9))) is None


def test_a_damaged_column_is_refused_with_what_it_must_hold() -> None:
    with pytest.raises(ValueError, match="8 bytes per id, or be run-encoded"):
        PackedInt64s().process_result_value(b"\x02" + bytes(16), sqlite.dialect())
    with pytest.raises(ValueError, match="8 bytes per id"):
        unpack_id_runs(b"\x00" + bytes(16))
