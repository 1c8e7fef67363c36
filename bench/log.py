"""``loopbreak bench log``: durable decisions per second into SQLite and PostgreSQL.

Each decision has ``slate`` items (20 by default) out of ``candidates`` scored candidates. Two
ways of writing the same kind of records, side by side, both from ``processes`` writer processes
(as API workers; 2 by default, one per core of the reference machine; 1 runs everything in the
bench's own process) that write into the same database, each with its own engine:

- **batch writer** (:class:`proplog.batch_writer.BatchWriter`, group commit): per process,
  ``threads`` producer threads, each keeping up to ``window`` decisions submitted and not yet
  durable (like that many concurrent API requests per worker); a decision counts once its future
  has resolved, that is once the transaction holding it has committed;
- **one transaction per decision** (``proplog.store.record_decision``): the same number of
  threads, each with its own session, each decision committed on its own.

Several processes matter because one Python process validates, converts and hands over records
under one interpreter lock: on this project's 2-core machine it tops out near 3,500 decisions/s
whatever the database does, while the writers of one SQLite file take turns
(:mod:`proplog.writer_lock`). Within a process, one producer thread with many decisions in
flight is the default, as an asyncio worker serves many requests from one thread; more producer
threads only add contention for the interpreter lock (measured here with two processes: 6,000
decisions/s with one thread each, 5,400 with two, 3,900 with eight).

Each way runs ``repeats`` times per back end, alternating, and the medians are reported (with
every run's rate in the JSON), since the machine may be shared.

Both include validation of every record (from a plain dict, as a client hands it over). The
records' random content is drawn before the clock starts; each producer then builds its records
one by one as it submits them (:class:`DecisionSource`), as a service builds a record from the
policy's slate, so building them counts in the time. SQLite is a file in a temporary folder
with WAL and ``synchronous=FULL``. PostgreSQL is ``--postgres-url`` when given (the bench
creates the tables if missing and deletes its own rows afterwards), else a throwaway server
started like the tests' one but with durable settings (fsync on, ``synchronous_commit=on``),
when the server binaries exist; otherwise it is skipped. Afterwards the bench checks that every
decision and slate item is stored exactly once.
"""

from __future__ import annotations

import argparse
import gc
import logging
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bench.runs import median_run, require_at_least
from proplog.ids import time_ordered_uuid

logger = logging.getLogger(__name__)

BENCH_USER_PREFIX = "bench-log-"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--postgres-url",
        default=None,
        help="PostgreSQL URL to write into (postgresql+psycopg://user:pw@host/db); by default a "
        "throwaway server is started when the PostgreSQL binaries are installed",
    )
    parser.add_argument("--decisions", type=int, default=20_000, help="decisions per back end")
    parser.add_argument(
        "--baseline-decisions",
        type=int,
        default=2_000,
        help="decisions written one transaction each (the slower baseline)",
    )
    parser.add_argument("--slate", type=int, default=20, help="slate items per decision")
    parser.add_argument("--candidates", type=int, default=100, help="candidates per decision")
    parser.add_argument(
        "--processes",
        type=int,
        default=2,
        help="writer processes, like API workers: each with its own engine, batch writer and "
        "producer threads, writing into the same database (1: all in this process)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="producer threads per process (1: as an asyncio worker serving many requests)",
    )
    parser.add_argument(
        "--window", type=int, default=128, help="decisions in flight per producer thread"
    )
    parser.add_argument("--max-batch", type=int, default=1000, help="records per transaction")
    parser.add_argument("--max-wait-ms", type=float, default=2.0, help="batch collection time")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each way per back end; medians reported"
    )
    parser.add_argument("--seed", type=int, default=0)


@dataclass(frozen=True)
class DecisionSource:
    """The raw material of ``n`` valid decisions, drawn before the clock starts; ``record(i)``
    builds decision i as a client hands it over (a plain dict), in the producer's own time.

    Building each record just before it is submitted is what a service does (it makes the record
    from the policy's slate and hands it to the log at once), and it keeps the record as fresh in
    the CPU cache as a served one: 20,000 dicts made in advance would be validated cold, out of
    main memory, at about twice the cost (measured: 120 against 55 µs per decision)."""

    ids: np.ndarray  # (n, candidates) int64, distinct per row
    scores: np.ndarray  # (n, candidates)
    cond: np.ndarray  # (n, slate) Plackett-Luce-like conditionals
    prefix: np.ndarray  # (n, slate) their running products
    millis: np.ndarray  # (n,) decision i is made at start + millis[i] ms
    decision_ids: list[str]
    start: datetime
    user_id: str

    def __len__(self) -> int:
        return len(self.decision_ids)

    def share(self, part: int, parts: int) -> DecisionSource:
        """Decisions part, part + parts, ...: one writer process's share."""
        return DecisionSource(
            ids=self.ids[part::parts],
            scores=self.scores[part::parts],
            cond=self.cond[part::parts],
            prefix=self.prefix[part::parts],
            millis=self.millis[part::parts],
            decision_ids=self.decision_ids[part::parts],
            start=self.start,
            user_id=self.user_id,
        )

    def record(self, i: int) -> dict[str, Any]:
        ids = self.ids[i].tolist()
        scores = self.scores[i].tolist()
        cond = self.cond[i].tolist()
        prefix = self.prefix[i].tolist()
        slate = len(cond)
        return {
            "decision_id": self.decision_ids[i],
            "created_at": self.start + timedelta(milliseconds=int(self.millis[i])),
            "user_id": self.user_id,
            "surface": "home",
            "device": "tv",
            "country": "SE",
            "policy_name": "plackett_luce",
            "policy_version": "1",
            "model_version": "bench",
            "exploration": {"temperature": 0.7},
            "marginals_exact": False,
            "candidate_ids": ids,
            "candidate_scores": scores,
            "slate": [
                {
                    "position": k,
                    "item_id": ids[k],
                    "score": scores[k],
                    "propensity": None,
                    "cond_propensity": cond[k],
                    "prefix_propensity": prefix[k],
                    "explored": k >= slate - 2,
                }
                for k in range(slate)
            ],
        }


def _make_decisions(
    n: int, *, slate: int, candidates: int, run_id: str, rng: np.random.Generator
) -> DecisionSource:
    """``n`` valid decisions: Plackett-Luce-like conditionals, marginals marked not exact."""
    # Distinct ids per row: the first ``candidates`` of a random order of a wide id range.
    ids = np.argsort(rng.random((n, 4 * candidates)), axis=1)[:, :candidates]
    ids = ids + rng.integers(0, 1_000_000, size=(n, 1))
    cond = rng.uniform(0.05, 0.9, size=(n, slate))
    # Decision i is made at start + i ms, with a time-ordered key as the service makes them
    # (proplog.ids), so that later runs append after earlier ones as time goes on.
    start = datetime.now(UTC)
    bits = rng.integers(0, 2**63, size=n)
    return DecisionSource(
        ids=ids.astype(np.int64),
        scores=rng.random((n, candidates)),
        cond=cond,
        prefix=np.cumprod(cond, axis=1),
        millis=np.arange(n),
        decision_ids=[
            time_ordered_uuid(start + timedelta(milliseconds=i), random_bits=int(b) << 11)
            for i, b in enumerate(bits)
        ],
        start=start,
        user_id=f"{BENCH_USER_PREFIX}{run_id}",
    )


def _run_threads(work: Callable[[int], None], threads: int) -> float:
    """Run ``work(t)`` in ``threads`` threads started together; wall seconds until all finish."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)

    def body(t: int) -> None:
        barrier.wait()
        try:
            work(t)
        except BaseException as exc:  # re-raised in the calling thread below
            errors.append(exc)

    pool = [threading.Thread(target=body, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed


def _batch_writer_rate(
    engine: Any, decisions: DecisionSource, options: dict[str, Any]
) -> dict[str, Any]:
    from proplog.batch_writer import BatchWriter

    threads, window = options["threads"], options["window"]
    shares = [range(t, len(decisions), threads) for t in range(threads)]
    created = [0] * threads
    with BatchWriter(
        engine, max_batch=options["max_batch"], max_wait_s=options["max_wait_ms"] / 1000
    ) as writer:

        def produce(t: int) -> None:
            in_flight: deque[Future[Any]] = deque()
            for i in shares[t]:
                if len(in_flight) >= window:
                    created[t] += in_flight.popleft().result().created
                in_flight.append(writer.submit_decision(decisions.record(i)))
            while in_flight:
                created[t] += in_flight.popleft().result().created

        seconds = _run_threads(produce, threads)
        stats = writer.stats.as_dict()
    n = len(decisions)
    if sum(created) != n:
        raise RuntimeError(f"batch writer reported {sum(created)} new decisions of {n}")
    return {
        "decisions": n,
        "seconds": seconds,
        "decisions_per_s": n / seconds,
        "commits": stats["commits"],
        "mean_batch": stats["records"] / max(stats["commits"], 1),
    }


def _per_decision_rate(
    engine: Any, decisions: DecisionSource, options: dict[str, Any]
) -> dict[str, Any]:
    from sqlmodel import Session

    from proplog.store import record_decision

    threads = options["threads"]
    shares = [range(t, len(decisions), threads) for t in range(threads)]

    def write(t: int) -> None:
        with Session(engine) as session:
            for i in shares[t]:
                record_decision(session=session, decision=decisions.record(i))

    seconds = _run_threads(write, threads)
    return {
        "decisions": len(decisions),
        "seconds": seconds,
        "decisions_per_s": len(decisions) / seconds,
    }


def _check_stored(engine: Any, user_id: str, n: int, slate: int) -> None:
    """Every decision and slate item of this run is stored exactly once."""
    from sqlalchemy import text

    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT count(DISTINCT d.decision_id), count(*) FROM decision d "
                "JOIN slate_item s ON s.decision_id = d.decision_id WHERE d.user_id = :u"
            ),
            {"u": user_id},
        ).one()
    if tuple(found) != (n, n * slate):
        raise RuntimeError(f"expected {n} decisions and {n * slate} slate items; found {found}")


def _delete_run(engine: Any, user_id: str) -> None:
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(
            text(
                "DELETE FROM slate_item WHERE decision_id IN "
                "(SELECT decision_id FROM decision WHERE user_id = :u)"
            ),
            {"u": user_id},
        )
        conn.execute(text("DELETE FROM decision WHERE user_id = :u"), {"u": user_id})


WAYS: dict[str, Callable[[Any, DecisionSource, dict[str, Any]], dict[str, Any]]] = {
    "batch_writer": _batch_writer_rate,
    "per_decision": _per_decision_rate,
}


def _timed(
    way: str, url: str, engine: Any, source: DecisionSource, options: dict[str, Any]
) -> dict[str, Any]:
    """One run of ``way``: in this process, or split over ``processes`` writer processes."""
    if options["processes"] > 1:
        return _in_processes(way, url, source, options)
    # What was made before the clock is long-lived: keep the collector from rescanning it.
    gc.collect()
    gc.freeze()
    cpu_start = time.process_time()
    try:
        one = WAYS[way](engine, source, options)
    finally:
        gc.unfreeze()
    # CPU seconds of this process (all threads) per decision: on a shared machine the rate
    # depends on the other load, this much less.
    one["cpu_us_per_decision"] = (time.process_time() - cpu_start) / len(source) * 1e6
    return one


def _writer_process(
    way: str, url: str, source: DecisionSource, options: dict[str, Any], barrier: Any, out: Any
) -> None:
    """One writer process, as one API worker: its own engine (and batch writer), its share of
    the decisions, started together with the others."""
    from proplog.engine import make_engine

    engine = make_engine(url)
    try:
        gc.collect()
        gc.freeze()
        barrier.wait(timeout=120)
        start, cpu = time.perf_counter(), time.process_time()
        one = WAYS[way](engine, source, options)
        one.update(start=start, end=time.perf_counter(), cpu=time.process_time() - cpu)
        out.put(one)
    except BaseException as exc:
        out.put({"error": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        engine.dispose()


def _in_processes(
    way: str, url: str, source: DecisionSource, options: dict[str, Any]
) -> dict[str, Any]:
    """``way`` in ``processes`` spawned processes writing into the same database, each with
    its share of the decisions; the rate is over the wall time from the first start to the last
    finish (``time.perf_counter`` is the system's monotonic clock, the same in every process)."""
    import multiprocessing
    import queue

    parts = options["processes"]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(parts)
    out = context.Queue()
    workers = [
        context.Process(
            target=_writer_process,
            args=(way, url, source.share(p, parts), options, barrier, out),
            daemon=True,
        )
        for p in range(parts)
    ]
    for worker in workers:
        worker.start()
    try:
        results = [out.get(timeout=900) for _ in workers]
    except queue.Empty:
        raise RuntimeError(f"a {way} writer process gave no result within 900 s") from None
    finally:
        for worker in workers:
            worker.join(timeout=60)
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError(f"a {way} writer process failed: {errors[0]}")
    n = len(source)
    seconds = max(r["end"] for r in results) - min(r["start"] for r in results)
    one: dict[str, Any] = {
        "decisions": n,
        "seconds": seconds,
        "decisions_per_s": n / seconds,
        "cpu_us_per_decision": sum(r["cpu"] for r in results) / n * 1e6,
        "processes": parts,
    }
    if way == "batch_writer":
        one["commits"] = sum(r["commits"] for r in results)
        one["mean_batch"] = n / max(one["commits"], 1)
    return one


def _measure(url: str, options: dict[str, Any], *, clean_up: bool) -> dict[str, Any]:
    """Batch writer, then one transaction per decision, on fresh records, into ``url``;
    ``repeats`` times each, alternating, so that both see the same share of the machine's load.
    The rates reported are the medians over the repeats."""
    from proplog.engine import init_db, make_engine

    rng = np.random.default_rng(options["seed"])
    engine = make_engine(url)
    init_db(engine)
    runs: dict[str, list[dict[str, Any]]] = {"batch_writer": [], "per_decision": []}
    try:
        for _ in range(options["repeats"]):
            for name, count in (
                ("batch_writer", options["decisions"]),
                ("per_decision", options["baseline_decisions"]),
            ):
                run_id = uuid.uuid4().hex[:12]
                records = _make_decisions(
                    count,
                    slate=options["slate"],
                    candidates=options["candidates"],
                    run_id=run_id,
                    rng=rng,
                )
                one = _timed(name, url, engine, records, options)
                runs[name].append(one)
                user_id = f"{BENCH_USER_PREFIX}{run_id}"
                _check_stored(engine, user_id, count, options["slate"])
                if clean_up:
                    _delete_run(engine, user_id)
    finally:
        engine.dispose()
    batch = _median_run(runs["batch_writer"])
    single = _median_run(runs["per_decision"])
    return {
        "decisions_per_s": batch["decisions_per_s"],
        "per_decision_tx_decisions_per_s": single["decisions_per_s"],
        "ratio": batch["decisions_per_s"] / single["decisions_per_s"],
        "cpu_us_per_decision": batch["cpu_us_per_decision"],
        "batch_writer": batch,
        "per_decision_tx": single,
        "batch_writer_rates": [r["decisions_per_s"] for r in runs["batch_writer"]],
        "per_decision_tx_rates": [r["decisions_per_s"] for r in runs["per_decision"]],
        "verified_exactly_once": True,
    }


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median rate, with the median CPU of all runs."""
    middle = median_run(runs)
    middle["cpu_us_per_decision"] = float(np.median([r["cpu_us_per_decision"] for r in runs]))
    return middle


@contextmanager
def _postgres_url(given: str | None) -> Iterator[tuple[str | None, str]]:
    """The URL to use and where it comes from; ``(None, reason)`` when there is no server."""
    if given:
        yield given, "given URL"
        return
    from proplog.pg_server import find_bin_dir, running_server

    if find_bin_dir() is None:
        yield None, "skipped: no server (no PostgreSQL binaries; pass --postgres-url)"
        return
    with running_server(database="loopbreak_bench", durable=True) as url:
        yield url, "throwaway server, fsync on"


def run(
    *,
    postgres_url: str | None = None,
    decisions: int = 20_000,
    baseline_decisions: int = 2_000,
    slate: int = 20,
    candidates: int = 100,
    processes: int = 2,
    threads: int = 1,
    window: int = 128,
    max_batch: int = 1000,
    max_wait_ms: float = 2.0,
    repeats: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    require_at_least((
        ("decisions", decisions, 1),
        ("baseline_decisions", baseline_decisions, 1),
        ("slate", slate, 1),
        ("processes", processes, 1),
        ("threads", threads, 1),
        ("window", window, 1),
        ("max_batch", max_batch, 1),
        ("repeats", repeats, 1),
    ))  # fmt: skip
    if candidates < slate:
        raise ValueError(f"candidates must be >= slate ({slate}); got {candidates}")
    options = {
        "decisions": decisions,
        "baseline_decisions": baseline_decisions,
        "slate": slate,
        "candidates": candidates,
        "processes": processes,
        "threads": threads,
        "window": window,
        "max_batch": max_batch,
        "max_wait_ms": max_wait_ms,
        "repeats": repeats,
        "seed": seed,
    }
    result: dict[str, Any] = {"config": options}
    with tempfile.TemporaryDirectory(prefix="loopbreak-bench-log-") as folder:
        sqlite_url = f"sqlite:///{Path(folder) / 'log.db'}"
        result["sqlite"] = _measure(sqlite_url, options, clean_up=False)
        result["sqlite"]["where"] = "temporary file, WAL, synchronous=FULL"
    with _postgres_url(postgres_url) as (url, where):
        if url is None:
            result["postgres"] = None
            result["postgres_skipped"] = where
        else:
            result["postgres"] = _measure(url, options, clean_up=True)
            result["postgres"]["where"] = where
    return result


def table(result: dict[str, Any]) -> str:
    c = result["config"]
    rows = [
        f"durable decisions/s (median of {c.get('repeats', 1)} runs), {c['slate']} slate items "
        f"of {c['candidates']} candidates each; "
        f"{c.get('processes', 1)} processes x {c['threads']} threads x {c['window']} in flight; "
        f"batches <= {c['max_batch']} records, "
        f"<= {c['max_wait_ms']} ms",
        f"{'back end':<10}{'batch writer':>14}{'1 tx/decision':>15}{'ratio':>8}"
        f"{'mean batch':>12}{'CPU µs/dec':>12}  where",
    ]
    for name in ("sqlite", "postgres"):
        r = result.get(name)
        if r is None:
            rows.append(f"{name:<10}{result.get('postgres_skipped', 'skipped: no server')}")
            continue
        rows.append(
            f"{name:<10}{r['decisions_per_s']:>14,.0f}{r['per_decision_tx_decisions_per_s']:>15,.0f}"
            f"{r['ratio']:>7.1f}x{r['batch_writer']['mean_batch']:>12.0f}"
            f"{r['cpu_us_per_decision']:>12.0f}  {r['where']}"
        )
    rows.append(
        "every decision and slate item verified stored exactly once; CPU µs/dec: this process's "
        "CPU time per decision with the batch writer (validation included)"
    )
    return "\n".join(rows)
