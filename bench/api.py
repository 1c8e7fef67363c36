"""``loopbreak bench api``: the service's latency at fixed request rates, open loop, beside a
minimal reference endpoint: the highest rate it serves at p99 ≤ 15 ms.

**The servers.** *Ours* is the service as deployed: ``loopbreak serve`` started as a process of
its own (``--workers N`` passed on when that option exists; the table says which was used) on a
fresh SQLite log in a temporary folder (WAL, ``synchronous=FULL``), with an API key of scope
``decide`` made in the log before it starts and sent as ``Authorization: Bearer``, the default
serving policy (ε-greedy), and a model file over a simulated catalog of ``items`` titles:
``--model baseline`` a popularity-affinity scorer, ``--model fm`` a small FM and ranker trained
in seconds by the project's own training path (:func:`loop.small_model.small_fm_model`).
The *reference* is :mod:`bench.api_reference`: a minimal FastAPI app whose async endpoint
validates a small body and inserts one row into SQLite with group commit, served by uvicorn with
the same number of workers. Both receive the same request bytes: ``POST /v1/decisions`` for
K = ``k`` items on the home surface, for 1,000 users in turn.

**The load.** An open-loop generator (:mod:`bench.loadgen`, in a process of its own, so it shares
no interpreter with either server) sends requests at fixed times, Poisson arrivals at the rate
(seeded; ``--arrival uniform`` for equal gaps), whether or not earlier ones were answered, and
measures each latency from the request's *scheduled* time, so that a stalled server cannot hide
its queue (coordinated omission corrected). Each rate of the ladder runs ``warmup`` seconds
unmeasured and then ``seconds`` measured, for ours and then the reference, alternating rate by
rate so that both see the same share of a shared machine's load. A server's ladder stops after
the first rate whose p99 exceeds ``stop_p99_ms`` or that had an error (anything but a 2xx: a 503
shed, another 5xx, a 4xx, a timeout after ``timeout`` seconds, a broken connection; a request
that never answered counts at the timeout in the percentiles).

**The figures.** Per rate: offered and achieved rate, p50/p99/max latency, answers by class, the
server's CPU (its processes' user + system time from ``/proc`` over the measured window, in cores
and ms per request) and the generator's own CPU per request. The figure of merit is
``max_rate_p99_15ms``: the highest rate whose p99 is at most ``p99_ms`` (15) with no error; and
the ratio of ours to the reference's. After the ladder the bench checks that every decision our
service acknowledged (201) is stored in the log exactly once with ``k`` slate items (a decision
stored but never acknowledged, from a timed-out request, is counted, not an error), and that the
reference stored exactly its acknowledged rows.

On the 2-core machine the generator's CPU (its ``generator_cpu_us_per_request`` × the rate) is
taken from the servers, so the figures are floors for a dedicated host. The older closed-loop
form (a fixed number of connections each waiting for its answer; group commit against one
transaction per request) is ``--mode closed`` (:mod:`bench.api_closed`).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from bench.loadgen import ARRIVALS, Spec, run_generator
from bench.runs import free_port, new_api_key, require_at_least

logger = logging.getLogger(__name__)

DEFAULT_RATES = (25, 50, 100, 200, 300, 400, 500, 600, 800)
SERVERS = ("ours", "reference")
USERS = 1000
CONFIG_KEYS = ("rates", "seconds", "repeats", "warmup", "arrival", "p99_ms", "stop_p99_ms",
               "timeout", "workers", "model", "k", "items", "seed")  # fmt: skip


def _rates(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=("open", "closed"), default="open",
                        help="open: fixed rates, open loop (default); closed: the earlier form, "
                        "N connections each waiting for its answer")  # fmt: skip
    parser.add_argument(
        "--rates",
        type=_rates,
        default=list(DEFAULT_RATES),
        help="the ladder, requests per second, comma-separated (default "
        + ",".join(str(r) for r in DEFAULT_RATES)
        + ")",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per rate")
    parser.add_argument(
        "--rate-repeats",
        type=int,
        default=1,
        help="runs of each rate per server, alternating; medians reported",
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds per rate")
    parser.add_argument("--arrival", choices=ARRIVALS, default="poisson")
    parser.add_argument("--p99-ms", type=float, default=15.0, help="the bar for max_rate")
    parser.add_argument(
        "--stop-p99-ms",
        type=float,
        default=50.0,
        help="stop a server's ladder after a rate whose p99 exceeds this",
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds before a timeout")
    parser.add_argument("--workers", type=int, default=1, help="server processes (each server)")
    parser.add_argument("--model", choices=("baseline", "fm"), default="baseline")
    parser.add_argument("--k", type=int, default=20, help="slate size")
    parser.add_argument("--items", type=int, default=1000, help="catalog size (candidates)")
    parser.add_argument("--seed", type=int, default=0, help="arrival times")
    parser.add_argument("--requests", type=int, default=3000, help="closed mode: per run")
    parser.add_argument("--concurrency", type=int, default=32, help="closed mode: in flight")
    parser.add_argument("--repeats", type=int, default=3, help="closed mode: runs per way")


# ---- the servers -----------------------------------------------------------------------------


def _cli() -> list[str]:
    return [sys.executable, "-m", "cli.main"]


def serve_has_workers() -> bool:
    """Whether ``loopbreak serve`` takes ``--workers`` (read from its ``--help``)."""
    done = subprocess.run(
        [*_cli(), "serve", "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    return "--workers" in done.stdout


class Server:
    """A server process started in a session of its own, its output in a file (an unread pipe
    would stall it), stopped with SIGTERM and, after 15 s, SIGKILL to its process group."""

    def __init__(self, name: str, argv: list[str], port: int, log: Path) -> None:
        self.name, self.port, self.log = name, port, log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_until_up(self, seconds: float = 180.0) -> None:
        deadline = time.monotonic() + seconds
        url = f"http://127.0.0.1:{self.port}/healthz"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} server exited with code {self.process.returncode}: "
                    f"{self.log.read_text(errors='replace')[-2000:]}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} server did not answer /healthz within {seconds:.0f} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                logger.warning("%s server ignored SIGTERM for 15 s; killing it", self.name)
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)


def _baseline_model(path: Path, items: int) -> Path:
    from fm_core import PopularityAffinityScorer
    from loop.sim_bridge import catalog_from_world
    from sim.config import WorldConfig
    from sim.world import World

    catalog = catalog_from_world(World(WorldConfig(n_items=items, seed=0)))
    return Path(PopularityAffinityScorer(catalog, model_version="bench-baseline").save(path))


def fm_model(path: Path, items: int) -> tuple[Path, str]:
    """A small FM + ranker model file over ``items`` simulated titles at ``path``, made by the
    project's own training path (:func:`loop.small_model.small_fm_model`: one round of uniform
    slates, then the retraining fit, a few seconds on CPU), and a note of how it was made."""
    from loop.small_model import small_fm_model

    start = time.perf_counter()
    small_fm_model(path, n_items=items)
    return path, f"loop.small_model.small_fm_model, trained in {time.perf_counter() - start:.0f} s"


def _start_ours(folder: Path, options: dict[str, Any], workers_flag: bool) -> tuple[Server, dict]:
    url = f"sqlite:///{folder / 'ours.db'}"
    token = new_api_key(url)
    if options["model"] == "fm":
        model, model_note = fm_model(folder / "fm.npz", options["items"])
    else:
        model = _baseline_model(folder / "baseline.npz", options["items"])
        model_note = "popularity-affinity, unfitted"
    port = free_port()
    argv = [*_cli(), "serve", "--port", str(port), "--db", url, "--model", str(model)]
    if workers_flag:
        argv += ["--workers", str(options["workers"])]
    server = Server("ours", argv, port, folder / "ours.log")
    info = {"database": url, "token": token, "model_file": str(model), "model_note": model_note}
    return server, info


def _start_reference(folder: Path, options: dict[str, Any]) -> tuple[Server, dict]:
    path = folder / "reference.db"
    port = free_port()
    argv = [sys.executable, "-m", "bench.api_reference", "--db", str(path), "--port", str(port),
            "--workers", str(options["workers"])]  # fmt: skip
    return Server("reference", argv, port, folder / "reference.log"), {"database": str(path)}


# ---- checks ----------------------------------------------------------------------------------


def check_ours(database_url: str, acknowledged: list[str], k: int) -> dict[str, Any]:
    """Every acknowledged decision stored exactly once with ``k`` slate items; raises otherwise."""
    import sqlite3

    path = database_url.removeprefix("sqlite:///")
    connection = sqlite3.connect(path)
    try:
        stored = [str(r[0]) for r in connection.execute("SELECT decision_id FROM decision")]
        slates = dict(
            connection.execute("SELECT decision_id, COUNT(*) FROM slate_item GROUP BY decision_id")
        )
    finally:
        connection.close()
    stored_set = {_id_key(x) for x in stored}
    slate_of = {_id_key(str(x)): n for x, n in slates.items()}
    acked = Counter(_id_key(x) for x in acknowledged)
    repeated = [x for x, n in acked.items() if n > 1]
    missing = [x for x in acked if x not in stored_set]
    wrong = [x for x in acked if slate_of.get(x) != k]
    out = {
        "acknowledged": len(acknowledged),
        "stored": len(stored),
        "stored_unacknowledged": len(stored_set - set(acked)),
        "duplicate_ids": len(stored) - len(stored_set) + len(repeated),
        "missing": len(missing),
        "wrong_slates": len(wrong),
    }
    out["exactly_once"] = not (out["duplicate_ids"] or missing or wrong)
    if not out["exactly_once"]:
        raise RuntimeError(f"the log does not hold every acknowledged decision exactly once: {out}")
    return out


def _id_key(text: str) -> str:
    return text.replace("-", "").lower()


def check_reference(path: str, acknowledged: list[str]) -> dict[str, Any]:
    from bench.api_reference import stored_decisions

    stored = set(stored_decisions(path))
    acked = set(acknowledged)
    out = {
        "acknowledged": len(acknowledged),
        "stored": len(stored),
        "missing": len(acked - stored),
        "duplicate_ids": len(acknowledged) - len(acked),
    }
    out["exactly_once"] = not (out["missing"] or out["duplicate_ids"])
    if not out["exactly_once"]:
        raise RuntimeError(f"the reference lost or repeated acknowledged rows: {out}")
    return out


# ---- the ladder ------------------------------------------------------------------------------


def request_bodies(k: int, users: int = USERS) -> list[str]:
    """The JSON bodies both servers receive, in turn."""
    return [
        json.dumps({"user_id": f"u{i}", "surface": "home", "k": k,
                    "context": {"device": "tv", "country": "US"}}, separators=(",", ":"))
        for i in range(users)
    ]  # fmt: skip


MEDIAN_KEYS = ("offered_per_s", "achieved_per_s", "p50_ms", "p99_ms", "ok_p50_ms", "ok_p99_ms",
               "server_cpu_cores", "server_cpu_ms_per_request", "generator_cpu_us_per_request",
               "send_lag_p99_ms")  # fmt: skip
SUM_KEYS = ("sent", "measured", "n_2xx", "n_503", "n_5xx", "n_4xx", "timeouts",
            "connection_errors", "errors")  # fmt: skip


def merge_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One rate's repeated runs as one step: the medians of rates, latencies and CPU, the most
    of max latency, the sums of counts, and every run's figures under ``runs``."""
    step: dict[str, Any] = {"rate": runs[0]["rate"], "repeats": len(runs)}
    for key in MEDIAN_KEYS:
        step[key] = _median([r[key] for r in runs])
    for key in SUM_KEYS:
        step[key] = sum(r[key] for r in runs)
    step["max_ms"] = max(r["max_ms"] for r in runs)
    step["runs"] = runs if len(runs) > 1 else []
    return step


def passes(step: dict[str, Any], p99_ms: float) -> bool:
    """A rate passes with no error and p99 at most ``p99_ms``."""
    return step["errors"] == 0 and step["p99_ms"] <= p99_ms


def max_rate(steps: list[dict[str, Any]], p99_ms: float) -> float:
    """The highest rate that passed (0 when none did)."""
    return max((s["rate"] for s in steps if passes(s, p99_ms)), default=0.0)


def _clean(value: Any) -> Any:
    """NaN and infinities as None, so that the JSON is standard."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _open_loop(options: dict[str, Any]) -> dict[str, Any]:
    load_at_start = os.getloadavg()
    workers_flag = options["workers"] > 1 and serve_has_workers()
    if options["workers"] == 1:
        workers_note = "1 process (no --workers passed)"
    elif workers_flag:
        workers_note = f"loopbreak serve --workers {options['workers']}"
    else:
        workers_note = (
            f"1 process: loopbreak serve has no --workers yet (asked for {options['workers']})"
        )
    bodies = request_bodies(options["k"])
    out: dict[str, Any] = {
        "mode": "open",
        "config": {key: options[key] for key in CONFIG_KEYS},
        "host": {"cores": os.cpu_count(), "loadavg_start": list(load_at_start)},
        "workers_used": workers_note,
    }
    with tempfile.TemporaryDirectory(prefix="loopbreak-bench-api-") as name:
        folder = Path(name)
        ours, ours_info = _start_ours(folder, options, workers_flag)
        reference, reference_info = _start_reference(folder, options)
        servers = {"ours": ours, "reference": reference}
        try:
            for server in servers.values():
                server.wait_until_up()
            headers = {"ours": {"Authorization": f"Bearer {ours_info['token']}"}, "reference": {}}
            steps: dict[str, list[dict[str, Any]]] = {s: [] for s in SERVERS}
            ids: dict[str, list[str]] = {s: [] for s in SERVERS}
            running = set(SERVERS)
            for rate in options["rates"]:
                runs: dict[str, list[dict[str, Any]]] = {s: [] for s in SERVERS}
                for repeat in range(options["repeats"]):
                    for which in SERVERS:
                        if which not in running:
                            continue
                        spec = Spec(host="127.0.0.1", port=servers[which].port,
                                    path="/v1/decisions", bodies=bodies, rate=rate,
                                    seconds=options["seconds"], warmup_s=options["warmup"],
                                    arrival=options["arrival"], seed=options["seed"] + repeat,
                                    headers=headers[which], timeout_s=options["timeout"],
                                    server_pid=servers[which].process.pid,
                                    id_field="decision_id")  # fmt: skip
                        one = run_generator(spec)
                        ids[which] += one.pop("ids")
                        runs[which].append(one)
                for which in SERVERS:
                    if not runs[which]:
                        continue
                    step = merge_runs(runs[which])
                    steps[which].append(step)
                    logger.info("%s at %g/s: p99 %.1f ms, %d errors", which, rate,
                                step["p99_ms"], step["errors"])  # fmt: skip
                    if step["errors"] or not step["p99_ms"] <= options["stop_p99_ms"]:
                        running.discard(which)
                if not running:
                    break
        finally:
            for server in servers.values():
                server.stop()
        checks = {
            "ours": check_ours(ours_info["database"], ids["ours"], options["k"]),
            "reference": check_reference(reference_info["database"], ids["reference"]),
        }
    out["model_note"] = ours_info["model_note"]
    for which in SERVERS:
        out[which] = {
            "max_rate_p99_15ms": max_rate(steps[which], options["p99_ms"]),
            "steps": steps[which],
            "stored": checks[which],
        }
    reference_rate = out["reference"]["max_rate_p99_15ms"]
    out["max_rate_p99_15ms"] = out["ours"]["max_rate_p99_15ms"]
    out["ratio"] = out["max_rate_p99_15ms"] / reference_rate if reference_rate else None
    generator = [s["generator_cpu_us_per_request"] for w in SERVERS for s in steps[w]]
    out["generator_cpu_us_per_request"] = _median(generator)
    out["verified_exactly_once"] = all(checks[w]["exactly_once"] for w in SERVERS)
    return _clean(out)


def _median(values: list[float | None]) -> float | None:
    ordered = sorted(v for v in values if v is not None and not math.isnan(v))
    if not ordered:
        return None
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def run(
    *,
    mode: str = "open",
    rates: list[float] | tuple[float, ...] = DEFAULT_RATES,
    seconds: float = 10.0,
    rate_repeats: int = 1,
    warmup: float = 2.0,
    arrival: str = "poisson",
    p99_ms: float = 15.0,
    stop_p99_ms: float = 50.0,
    timeout: float = 5.0,
    workers: int = 1,
    model: str = "baseline",
    k: int = 20,
    items: int = 1000,
    seed: int = 0,
    requests: int = 3000,
    concurrency: int = 32,
    repeats: int = 3,
) -> dict[str, Any]:
    if mode == "closed":
        from bench import api_closed

        result = api_closed.run(
            requests=requests, concurrency=concurrency, k=k, items=items, repeats=repeats
        )
        return {"mode": "closed", **result}
    if mode != "open":
        raise ValueError(f"mode must be open or closed; got {mode!r}")
    require_at_least((("seconds", seconds, 0.1), ("warmup", warmup, 0.0), ("workers", workers, 1),
                      ("rate_repeats", rate_repeats, 1), ("k", k, 1), ("items", items, k),
                      ("timeout", timeout, 0.1)))  # fmt: skip
    if not rates or min(rates) <= 0:
        raise ValueError(f"rates must be positive numbers; got {list(rates)}")
    if arrival not in ARRIVALS:
        raise ValueError(f"arrival must be one of {ARRIVALS}; got {arrival!r}")
    if model not in ("baseline", "fm"):
        raise ValueError(f"model must be baseline or fm; got {model!r}")
    options = {"rates": sorted(float(r) for r in rates), "seconds": seconds,
               "repeats": rate_repeats, "warmup": warmup,
               "arrival": arrival, "p99_ms": p99_ms, "stop_p99_ms": stop_p99_ms,
               "timeout": timeout, "workers": workers, "model": model, "k": k, "items": items,
               "seed": seed}  # fmt: skip
    return _open_loop(options)


def _worst_lag(result: dict[str, Any]) -> float | None:
    lags = [s["send_lag_p99_ms"] for w in SERVERS for s in result[w]["steps"]]
    return max((x for x in lags if x is not None), default=None)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(result: dict[str, Any]) -> str:
    if result.get("mode") == "closed":
        from bench import api_closed

        return api_closed.table(result)
    c = result["config"]
    host = result["host"]
    lines = [
        f"POST /v1/decisions, K={c['k']} of {c['items']} ({c['model']}: {result['model_note']}), "
        f"{c['arrival']} arrivals, open loop, {c['seconds']:g} s per rate after "
        f"{c['warmup']:g} s warm-up"
        + (f", medians of {c['repeats']} runs per rate" if c["repeats"] > 1 else "")
        + f"; {result['workers_used']}",
        f"host: {host['cores']} cores, load average at start "
        + ", ".join(f"{x:.2f}" for x in host["loadavg_start"]),
    ]
    header = (
        f"{'rate/s':>7}{'achieved':>9}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'2xx':>7}{'503':>5}"
        f"{'5xx':>5}{'t/o':>5}{'other':>6}{'srv cores':>10}{'srv ms/req':>11}{'gen µs/req':>11}"
        "  pass"
    )
    for which, label in (("ours", "ours (loopbreak serve)"), ("reference", "reference")):
        r = result[which]
        lines += ["", f"{label}: max rate at p99 ≤ {c['p99_ms']:g} ms: "
                  f"{r['max_rate_p99_15ms']:g}/s", header]  # fmt: skip
        for s in r["steps"]:
            other = s["n_4xx"] + s["connection_errors"]
            lines.append(
                f"{s['rate']:>7g}{s['achieved_per_s']:>9.0f}{_fmt(s['p50_ms'], '.1f'):>8}"
                f"{_fmt(s['p99_ms'], '.1f'):>8}{_fmt(s['max_ms'], '.0f'):>8}{s['n_2xx']:>7}"
                f"{s['n_503']:>5}{s['n_5xx']:>5}{s['timeouts']:>5}{other:>6}"
                f"{_fmt(s['server_cpu_cores'], '.2f'):>10}"
                f"{_fmt(s['server_cpu_ms_per_request'], '.2f'):>11}"
                f"{_fmt(s['generator_cpu_us_per_request'], '.0f'):>11}"
                f"  {'yes' if passes(s, c['p99_ms']) else 'no'}"
            )
    ratio = result["ratio"]
    ours_stored = result["ours"]["stored"]
    lines += [
        "",
        f"ours / reference, max rate at p99 ≤ {c['p99_ms']:g} ms: "
        + ("-" if ratio is None else f"{ratio:.2f}×"),
        f"generator CPU: {_fmt(result['generator_cpu_us_per_request'], '.0f')} µs per request "
        "(median over the rates); its send lag behind the schedule, p99 at most "
        f"{_fmt(_worst_lag(result), '.1f')} ms",
        f"stored exactly once: {ours_stored['acknowledged']} acknowledged decisions, each with "
        f"{c['k']} slate items ({ours_stored['stored_unacknowledged']} stored unacknowledged); "
        f"reference {result['reference']['stored']['acknowledged']} rows",
    ]
    return "\n".join(lines)
