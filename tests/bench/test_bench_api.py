"""``loopbreak bench api`` end to end at a small size: real uvicorn servers, both ways, every
answered decision stored once; bad options are refused naming the option."""

from __future__ import annotations

import pytest

from bench import api as bench_api


def test_the_api_bench_serves_both_ways_and_stores_every_answer() -> None:
    result = bench_api.run(requests=30, concurrency=4, k=5, items=60, repeats=1)
    sqlite = result["sqlite"]
    for way in bench_api.WAYS:
        assert sqlite[way]["decisions_per_s"] > 0.0
        assert 0.0 < sqlite[way]["p50_ms"] <= sqlite[way]["p99_ms"]
        assert len(sqlite[way]["runs"]) == 1
    assert sqlite["ratio"] == pytest.approx(
        sqlite["group_commit"]["decisions_per_s"] / sqlite["per_request"]["decisions_per_s"]
    )
    assert "group commit / per request" in bench_api.table(result)


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [("requests", 0, "requests must be >= 1"), ("concurrency", 0, "concurrency must be >= 1"),
     ("k", 0, "k must be >= 1"), ("repeats", 0, "repeats must be >= 1"),
     ("items", 3, "items must be >= 20")],
)  # fmt: skip
def test_bad_options_are_refused_naming_the_option(option: str, value: int, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        bench_api.run(**{option: value})
