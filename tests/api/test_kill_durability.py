"""An acknowledged write survives ``kill -9``: a real ``loopbreak serve`` under load from 8
client threads is SIGKILLed at a random moment, and every decision and event it had answered
200/201 is then in the log, each stored decision with its whole slate (nothing half-written).
Five trials per back end (SQLite, PostgreSQL) on one log that grows across them, so that later
trials also write into a log the earlier kills left behind."""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from api_keys import bearer, new_token
from served import serve_env, start_serve
from sqlalchemy import text

from fm_core import ItemCatalog, PopularityAffinityScorer
from proplog.engine import make_engine

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)  # so that ``-o log_cli=true`` shows the summary

TRIALS = 5
CLIENTS = 8
K = 5
ACKNOWLEDGED = (200, 201)


@dataclass
class Acknowledged:
    """What the server answered 200/201 to, from all client threads (appends hold the lock)."""

    decisions: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    """Answers other than 200/201 and 503 (a bug in the test or the service)."""
    lock: threading.Lock = field(default_factory=threading.Lock)


def drive(base: str, token: str, thread: int, stop: threading.Event, acked: Acknowledged) -> None:
    """Post decisions and, after each acknowledged one, a play on its first item, until the
    server goes away (a transport error) or ``stop`` is set."""
    with httpx.Client(base_url=base, headers=bearer(token), timeout=10) as client:
        n = 0
        while not stop.is_set():
            n += 1
            user = f"u{thread * 1_000_000 + n}"
            decision_id = str(uuid.uuid4())
            body = {"user_id": user, "surface": "home", "k": K, "decision_id": decision_id}
            try:
                decided = client.post("/v1/decisions", json=body)
                if decided.status_code not in ACKNOWLEDGED:
                    if decided.status_code != 503:
                        with acked.lock:
                            acked.refusals.append(f"decision {decided.status_code}: {decided.text}")
                    continue
                with acked.lock:
                    acked.decisions.append(decision_id)
                event_id = str(uuid.uuid4())
                played = client.post(
                    "/v1/events",
                    json={"event_id": event_id, "user_id": user, "source": "rec",
                          "decision_id": decision_id, "position": 0, "kind": "play",
                          "item_id": decided.json()["slate"][0]["item_id"]},
                )  # fmt: skip
                if played.status_code in ACKNOWLEDGED:
                    with acked.lock:
                        acked.events.append(event_id)
                elif played.status_code != 503:
                    with acked.lock:
                        acked.refusals.append(f"event {played.status_code}: {played.text}")
            except httpx.TransportError:
                return  # the server was killed (or died: the caller checks how it ended)


def stored_ids(url: str, table: str, column: str) -> set[str]:
    """Every ``column`` of ``table`` in the log at ``url``, read through a new engine."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {row[0] for row in conn.execute(text(f"SELECT {column} FROM {table}"))}
    finally:
        engine.dispose()


def partial_slates(url: str) -> list[tuple[str, int, int]]:
    """(decision_id, k, slate rows) of every stored decision whose slate is not k = K rows."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT d.decision_id, d.k, COUNT(s.position) FROM decision d "
                    "LEFT JOIN slate_item s ON s.decision_id = d.decision_id "
                    "GROUP BY d.decision_id, d.k "
                    "HAVING COUNT(s.position) <> d.k OR d.k <> :k"
                ),
                {"k": K},
            )
            return [(str(d), int(k), int(n)) for d, k, n in rows]
    finally:
        engine.dispose()


@pytest.mark.slow
def test_acknowledged_writes_survive_kill_9(
    tmp_path: Path, small_catalog: ItemCatalog, log_url: str
) -> None:
    model = PopularityAffinityScorer(small_catalog, model_version="served").save(
        tmp_path / "model.npz"
    )
    token = new_token(log_url, scopes=("decide", "events"), name="kill test")
    env = serve_env(log_url, reload_seconds="0")
    backend = log_url.split(":", 1)[0].split("+", 1)[0]
    all_decisions: list[str] = []
    all_events: list[str] = []
    for trial in range(TRIALS):
        load_s = random.Random(trial).uniform(0.6, 1.5)
        acked = Acknowledged()
        stop = threading.Event()
        started = time.monotonic()
        served = start_serve(model, env, tmp_path / f"serve-{trial}.log")
        startup_s = time.monotonic() - started
        threads = [
            threading.Thread(target=drive, args=(served.base, token, i, stop, acked), daemon=True)
            for i in range(CLIENTS)
        ]
        try:
            for thread in threads:
                thread.start()
            time.sleep(load_s)
            assert served.process.poll() is None, served.output_text()
            os.kill(served.process.pid, signal.SIGKILL)
            for thread in threads:
                thread.join(timeout=15)
            assert not any(thread.is_alive() for thread in threads), "a client thread hung"
            assert served.process.wait(timeout=10) == -signal.SIGKILL
        finally:
            stop.set()
            served.kill()
        logger.info(
            "%s trial %d: started in %.1f s, killed after %.2f s of load; acknowledged %d "
            "decisions, %d events",
            backend, trial, startup_s, load_s, len(acked.decisions), len(acked.events),
        )  # fmt: skip
        assert not acked.refusals, acked.refusals[:5]
        assert acked.decisions and acked.events, (
            f"trial {trial}: nothing acknowledged in {load_s:.2f} s of load; the test would pass "
            f"vacuously\n{served.output_text()[-3000:]}"
        )
        decisions = stored_ids(log_url, "decision", "decision_id")
        events = stored_ids(log_url, "event", "event_id")
        lost_decisions = [d for d in acked.decisions if d not in decisions]
        lost_events = [e for e in acked.events if e not in events]
        assert not lost_decisions and not lost_events, (
            f"{backend} trial {trial}: lost {len(lost_decisions)} of {len(acked.decisions)} "
            f"acknowledged decisions (e.g. {lost_decisions[:3]}) and {len(lost_events)} of "
            f"{len(acked.events)} acknowledged events (e.g. {lost_events[:3]})"
        )
        half_written = partial_slates(log_url)
        assert not half_written, (
            f"{backend} trial {trial}: {len(half_written)} stored decisions without a whole "
            f"slate of {K} (decision_id, k, slate rows): {half_written[:5]}"
        )
        all_decisions += acked.decisions
        all_events += acked.events
    logger.info(
        "%s: %d trials of kill -9 under load: %d acknowledged decisions and %d acknowledged "
        "events, lost 0 (log now holds %d decisions, %d events)",
        backend, TRIALS, len(all_decisions), len(all_events), len(decisions), len(events),
    )  # fmt: skip
