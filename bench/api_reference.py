"""The reference endpoint of ``loopbreak bench api``: the least a durable decision service on this
stack must do, as a yardstick for what ours adds.

A FastAPI app with one ``async`` endpoint, ``POST /v1/decisions``, that validates a small
pydantic body (the same JSON the bench sends to the service: user, surface, K, context), inserts
one row into SQLite (WAL, ``synchronous=FULL``) and answers 201 with a new decision id once the
row is committed. Commits are grouped: a writer thread takes everything queued, inserts it in
one transaction and commits, then resolves the waiting requests' futures on the event loop; the
request awaits its future, so no request holds a thread. With several uvicorn workers each has
its own writer and connection, and the writers take turns on an OS file lock held across each
transaction, as the log's writers do (:mod:`proplog.writer_lock`): a waiting writer wakes as
soon as the lock is free, where SQLite's busy handler would sleep through the gaps.

It is served by uvicorn the way ``loopbreak serve`` serves the service, with the same protocol
and event loop (:func:`api.protocol.server_stack`: httptools, uvloop, TCP_NODELAY on each
connection):
``python -m bench.api_reference --db FILE --port PORT [--workers N]``. ``GET /healthz`` answers
200 once the app has started.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from fastapi import FastAPI
from pydantic import BaseModel, Field

from api.protocol import server_stack

logger = logging.getLogger(__name__)

DB_ENV = "LOOPBREAK_BENCH_REFERENCE_DB"
"""The environment variable naming the database file (how uvicorn's workers learn it)."""


class DecisionBody(BaseModel):
    """The request body: what the bench posts to both servers."""

    user_id: str = Field(min_length=1, max_length=256)
    surface: Literal["home", "search", "title", "billboard"]
    k: int = Field(default=10, ge=1, le=500)
    context: dict[str, str] = Field(default_factory=dict)


Row = tuple[str, str, str, int, float]


class GroupWriter:
    """One thread that commits the queued rows together and resolves their futures."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.queue: queue.SimpleQueue[tuple[Row, asyncio.Future[None]] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="reference-writer", daemon=True)
        self.loop = asyncio.get_running_loop()
        self.thread.start()

    def submit(self, row: Row) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self.loop.create_future()
        self.queue.put((row, future))
        return future

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=10)

    def _loop(self) -> None:
        connection = connect(self.path)
        lock = os.open(f"{self.path}.writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                first = self.queue.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while True:
                    try:
                        more = self.queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.append(more)
                error: BaseException | None = None
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    with connection:
                        connection.executemany(
                            "INSERT INTO decision VALUES (?, ?, ?, ?, ?)", [r for r, _ in batch]
                        )
                except sqlite3.Error as exc:
                    error = exc
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
                for _, future in batch:
                    self.loop.call_soon_threadsafe(_resolve, future, error)
                if stop:
                    return
        finally:
            connection.close()
            os.close(lock)


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def connect(path: str) -> sqlite3.Connection:
    """A connection to the reference database, WAL and ``synchronous=FULL``, table created."""
    connection = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    with connection:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS decision (decision_id TEXT PRIMARY KEY, user_id TEXT, "
            "surface TEXT, k INTEGER, created_at REAL)"
        )
    return connection


def create_app(path: str | None = None) -> FastAPI:
    """The reference app on the SQLite file ``path`` (by default the one named by
    ``$LOOPBREAK_BENCH_REFERENCE_DB``)."""
    database = path or os.environ[DB_ENV]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.writer = GroupWriter(database)
        try:
            yield
        finally:
            app.state.writer.close()

    app = FastAPI(title="loopbreak bench reference", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/decisions", status_code=201)
    async def decide(body: DecisionBody) -> dict[str, str]:
        decision_id = str(uuid.uuid4())
        await app.state.writer.submit(
            (decision_id, body.user_id, body.surface, body.k, time.time())
        )
        return {"decision_id": decision_id}

    return app


def stored_decisions(path: str) -> list[str]:
    """The decision ids in the reference database."""
    connection = sqlite3.connect(path)
    try:
        return [row[0] for row in connection.execute("SELECT decision_id FROM decision")]
    finally:
        connection.close()


def main() -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="SQLite file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    os.environ[DB_ENV] = args.db
    connect(args.db).close()  # the table exists before any worker starts
    if args.workers > 1:
        uvicorn.run(
            "bench.api_reference:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            **server_stack(),
            log_level="warning",
            access_log=False,
        )
    else:
        uvicorn.run(
            create_app(args.db), host=args.host, port=args.port, **server_stack(),
            log_level="warning", access_log=False,
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
