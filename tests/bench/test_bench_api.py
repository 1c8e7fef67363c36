"""``loopbreak bench api`` end to end at a small size: ``loopbreak serve`` and the reference
endpoint under the open-loop generator, the JSON's last line with every rate's figures and
``max_rate_p99_15ms``, every acknowledged decision stored exactly once; the closed-loop form
still runs; bad options are refused naming the option."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench import api as bench_api


def test_the_open_loop_bench_reports_json_and_checks_the_log() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "bench", "api", "--rates", "15,30", "--seconds", "1",
         "--warmup", "0.3", "--items", "60", "--k", "5", "--stop-p99-ms", "10000", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert "ours / reference" in done.stdout
    assert result["mode"] == "open" and result["host"]["cores"] >= 1
    assert len(result["host"]["loadavg_start"]) == 3
    assert result["workers_used"].startswith("1 process")
    for which in ("ours", "reference"):
        steps = result[which]["steps"]
        assert [s["rate"] for s in steps] == [15.0, 30.0]  # no error: both rates ran
        for step in steps:
            assert step["errors"] == 0 and step["n_2xx"] == step["measured"] > 0
            assert 0.0 < step["p50_ms"] <= step["p99_ms"] <= step["max_ms"]
            assert step["generator_cpu_us_per_request"] > 0
            assert step["server_cpu_cores"] is not None
        assert result[which]["max_rate_p99_15ms"] == bench_api.max_rate(steps, 15.0)
        assert result[which]["stored"]["exactly_once"]
    stored = result["ours"]["stored"]
    sent = sum(s["sent"] for s in result["ours"]["steps"])
    assert stored["acknowledged"] == sent == stored["stored"]
    assert stored["missing"] == stored["duplicate_ids"] == stored["wrong_slates"] == 0
    assert result["verified_exactly_once"] is True
    assert result["max_rate_p99_15ms"] == result["ours"]["max_rate_p99_15ms"]
    if result["reference"]["max_rate_p99_15ms"]:
        assert result["ratio"] == pytest.approx(
            result["ours"]["max_rate_p99_15ms"] / result["reference"]["max_rate_p99_15ms"]
        )
    assert result["generator_cpu_us_per_request"] > 0


def test_the_figure_of_merit_is_the_highest_clean_rate_under_the_bar() -> None:
    steps = [
        {"rate": 25.0, "p99_ms": 9.0, "errors": 0},
        {"rate": 50.0, "p99_ms": 14.9, "errors": 0},
        {"rate": 100.0, "p99_ms": 12.0, "errors": 1},
        {"rate": 200.0, "p99_ms": 40.0, "errors": 0},
    ]
    assert bench_api.max_rate(steps, 15.0) == 50.0
    assert bench_api.max_rate(steps[2:], 15.0) == 0.0


def test_the_closed_loop_form_still_serves_both_ways() -> None:
    result = bench_api.run(mode="closed", requests=20, concurrency=4, k=5, items=60, repeats=1)
    sqlite = result["sqlite"]
    for way in ("group_commit", "per_request"):
        assert sqlite[way]["decisions_per_s"] > 0.0
    assert "group commit / per request" in bench_api.table(result)


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [("seconds", 0, "seconds must be >= 0.1"), ("workers", 0, "workers must be >= 1"),
     ("rate_repeats", 0, "rate_repeats must be >= 1"),
     ("k", 0, "k must be >= 1"), ("items", 3, "items must be >= 20"),
     ("rates", [10, 0], "rates must be positive"), ("arrival", "bursty", "arrival must be one"),
     ("model", "vw", "model must be baseline or fm"), ("mode", "half", "mode must be open")],
)  # fmt: skip
def test_bad_options_are_refused_naming_the_option(
    option: str, value: object, expected: str
) -> None:
    with pytest.raises(ValueError, match=expected):
        bench_api.run(**{option: value})  # type: ignore[arg-type]
