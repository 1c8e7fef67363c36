"""The worker's history cache (:mod:`loop.history_cache`) changes no decision: on a sequence of
decisions and events, the service decides the same with the cache on, with it off, and through
the blocking ``decide``; events written elsewhere are seen once the entry expires, and a read that
raced an event of its user is not kept."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from explore import EpsilonGreedySlate
from fm_core import ItemCatalog, PopularityAffinityScorer
from fm_core.baseline import FEATURES
from loop.context import RequestContext
from loop.history_cache import HistoryCache
from loop.loop_reads import LoopReader
from loop.service import DecisionInput, DecisionService
from proplog.engine import init_db, make_engine
from proplog.schema import DecisionCreate, EventCreate
from proplog.store import record_event

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def new_engine(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    init_db(engine)
    return engine


def seen_aware(catalog: ItemCatalog) -> PopularityAffinityScorer:
    scorer = PopularityAffinityScorer(catalog, model_version="seen-aware")
    scorer.coef_[FEATURES.index("seen")] = -3.0
    return scorer


def write_event(engine: Engine, event: EventCreate, cache: HistoryCache | None) -> None:
    with Session(engine) as session:
        created = record_event(session=session, event=event).created
    if created and cache is not None:
        cache.observe(event)


def run_sequence(
    engine: Engine, service: DecisionService, cache: HistoryCache | None, *, blocking: bool
) -> list[DecisionCreate]:
    """40 decisions for 4 users, each followed by plays of its slate (one dated in the future,
    so that it counts only for the decisions after it), all at fixed times."""
    records: list[DecisionCreate] = []

    async def decide(request: DecisionInput, now: datetime) -> DecisionCreate:
        out = await service.decide_async(
            engine=engine, request=request, now=now, run_blocking=in_thread, history=cache
        )
        return out.record

    for i in range(40):
        now = START + timedelta(minutes=i)
        user = f"u{i % 4}"
        request = DecisionInput(
            context=RequestContext(user_id=user, surface="home"),
            k=5,
            decision_id=str(uuid.UUID(int=i + 1)),  # it seeds the exploration: the same in each run
        )
        if blocking:
            with Session(engine) as session:
                record = service.decide(session=session, request=request, now=now).record
        else:
            record = asyncio.run(decide(request, now))
        records.append(record)
        for j, position in enumerate((0, 2) if i % 2 == 0 else (1,)):
            later = timedelta(minutes=7) if j == 1 else timedelta(seconds=1)
            event = EventCreate(
                event_id=f"e{i}-{j}", created_at=now + later, user_id=user,
                item_id=record.slate[position].item_id, kind="play", source="rec",
                decision_id=record.decision_id, position=position, value=30.0,
            )  # fmt: skip
            write_event(engine, event, cache)
    return records


def comparable(record: DecisionCreate) -> dict[str, Any]:
    return record.model_dump()


def test_the_cache_changes_no_decision(tmp_path: Path, small_catalog: ItemCatalog) -> None:
    outcomes = {}
    caches = {}
    readers = []
    for way in ("cached", "cached_on_loop", "read_on_loop", "uncached", "blocking"):
        engine = new_engine(tmp_path / f"{way}.db")
        service = DecisionService(
            scorer=seen_aware(small_catalog),
            policy=EpsilonGreedySlate(epsilon=0.3, pool=10),
            history_limit=5,
        )
        reader = LoopReader.for_engine(engine) if way.endswith("on_loop") else None
        readers.append(reader)
        cache = (
            HistoryCache(limit=5, ttl_s=0.0 if way == "read_on_loop" else 3600.0, reader=reader)
            if way.startswith(("cached", "read"))
            else None
        )
        caches[way] = cache
        outcomes[way] = run_sequence(engine, service, cache, blocking=way == "blocking")
        if reader is not None:
            reader.close()
        engine.dispose()
    cached = caches["cached"]
    assert cached is not None and cached.stats.hits >= 30  # the cache was used
    read_on_loop = caches["read_on_loop"]
    assert read_on_loop is not None and read_on_loop.stats.misses == 40  # every read on the loop
    for name in ("cached_on_loop", "read_on_loop", "uncached", "blocking"):
        assert [comparable(r) for r in outcomes["cached"]] == [
            comparable(r) for r in outcomes[name]
        ], name
    # the histories mattered: some item was marked down once its user had played it
    scores = [{s.item_id: s.score for s in r.slate} for r in outcomes["cached"]]
    assert len({frozenset(s.items()) for s in scores}) > 4


def test_events_from_elsewhere_are_seen_once_the_entry_expires(
    tmp_path: Path, small_catalog: ItemCatalog
) -> None:
    engine = new_engine(tmp_path / "log.db")
    clock = [0.0]
    cache = HistoryCache(limit=10, ttl_s=2.0, clock=lambda: clock[0])
    service = DecisionService(
        scorer=seen_aware(small_catalog), policy=EpsilonGreedySlate(epsilon=0.0), history_limit=10
    )

    async def decide(now: datetime) -> DecisionCreate:
        request = DecisionInput(context=RequestContext(user_id="u1", surface="home"), k=3)
        out = await service.decide_async(
            engine=engine, request=request, now=now, run_blocking=in_thread, history=cache
        )
        return out.record

    first = asyncio.run(decide(START))
    top = first.slate[0].item_id
    event = EventCreate(
        event_id="elsewhere", created_at=START + timedelta(seconds=1), user_id="u1",
        item_id=top, kind="play", source="direct",
    )  # fmt: skip
    write_event(engine, event, None)  # another process: this worker's cache is not told
    clock[0] = 1.0
    assert asyncio.run(decide(START + timedelta(seconds=2))).slate[0].item_id == top  # stale
    clock[0] = 2.5  # past the TTL: read again
    assert asyncio.run(decide(START + timedelta(seconds=3))).slate[0].item_id != top
    engine.dispose()


def test_a_read_that_raced_an_event_of_its_user_is_not_kept() -> None:
    cache = HistoryCache(limit=3, ttl_s=60.0)
    assert cache.get("u1", START) is None
    load = cache.begin_load("u1")
    event = EventCreate(
        event_id="e1", created_at=START - timedelta(seconds=5), user_id="u1", item_id=4,
        kind="play", source="direct",
    )  # fmt: skip
    cache.observe(event)  # written while the read ran: the read may not have it
    history = cache.put("u1", START, [], load)
    assert len(history) == 0
    assert cache.get("u1", START) is None  # not kept: the next decision reads again
    again = cache.begin_load("u1")
    cache.put("u1", START, [event], again)
    cached = cache.get("u1", START + timedelta(seconds=1))
    assert cached is not None and list(cached.item_ids) == [4]
    assert cache.get("u1", START - timedelta(seconds=1)) is None  # before its load: the log


def test_a_search_retrieves_with_the_users_history_on_both_paths(
    tmp_path: Path, small_catalog: ItemCatalog, monkeypatch: Any
) -> None:
    """The service reads the user's history before it retrieves, so the scorer's share of a
    search's candidates is the user's own (``loop.retrieval``), on the blocking and the async
    path alike."""
    import loop.service as service_module

    engine = new_engine(tmp_path / "log.db")
    item = int(small_catalog.item_ids[3])
    played = EventCreate(
        event_id="p1", created_at=START, user_id="u1", item_id=item, kind="play",
        value=60.0, source="search",
    )  # fmt: skip
    write_event(engine, played, None)
    seen: list[Any] = []
    real = service_module.candidates_for_request

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("history"))
        return real(*args, **kwargs)

    monkeypatch.setattr(service_module, "candidates_for_request", spy)
    service = DecisionService(
        scorer=seen_aware(small_catalog), policy=EpsilonGreedySlate(epsilon=0.1, pool=10)
    )
    request = DecisionInput(
        context=RequestContext(user_id="u1", surface="search", query="space"), k=3
    )
    later = START + timedelta(minutes=1)
    with Session(engine) as session:
        service.decide(session=session, request=request, now=later)
    asyncio.run(
        service.decide_async(engine=engine, request=request, now=later, run_blocking=in_thread)
    )
    assert len(seen) == 2
    for history in seen:
        assert history is not None and item in history.plays().tolist()


def test_a_loop_read_that_meets_a_locked_log_is_left_to_a_thread(
    tmp_path: Path, small_catalog: ItemCatalog
) -> None:
    """Another process holds the file exclusively: the loop's read gives up within its bound
    (it never waits the engine's busy timeout on the loop), and the decision reads in a thread,
    which waits its turn and decides as usual once the lock is gone. (A WAL file cannot be
    locked against readers by an ordinary writer, so this file keeps SQLite's rollback journal,
    where ``BEGIN EXCLUSIVE`` locks readers out.)"""
    import sqlite3
    import threading
    import time

    from sqlalchemy import create_engine

    path = tmp_path / "log.db"
    engine = create_engine(f"sqlite:///{path}")  # rollback journal, sqlite3's 5 s busy timeout
    init_db(engine)
    reader = LoopReader.for_engine(engine, busy_ms=20)
    assert reader is not None
    cache = HistoryCache(limit=5, ttl_s=60.0, reader=reader)
    service = DecisionService(
        scorer=seen_aware(small_catalog), policy=EpsilonGreedySlate(epsilon=0.0), history_limit=5
    )
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    started = time.perf_counter()
    assert reader.history(user_id="u1", before=START, limit=5, later=True) is None
    assert time.perf_counter() - started < 1.0 and reader.gave_up == 1
    threading.Timer(0.3, lambda: holder.execute("COMMIT")).start()
    request = DecisionInput(context=RequestContext(user_id="u1", surface="home"), k=3)
    out = asyncio.run(
        service.decide_async(
            engine=engine, request=request, now=START, run_blocking=in_thread, history=cache
        )
    )
    assert len(out.record.slate) == 3 and reader.gave_up == 2
    assert reader.history(user_id="u1", before=START, limit=5, later=True) == []
    holder.close()
    reader.close()
    engine.dispose()


def test_no_loop_reader_off_sqlite_files() -> None:
    assert LoopReader.for_engine(make_engine("sqlite://")) is None
