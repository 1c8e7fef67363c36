"""The batch writer: many threads hand over decisions and events; one thread writes them in batches.

Owns group commit for the propensity log. Callers (API request threads, simulators, importers)
call :meth:`BatchWriter.submit_decision` / :meth:`BatchWriter.submit_event`, which validate the
record at once in the caller's thread (raising :class:`proplog.errors.LogValidationError` naming
the field, so a bad record never enters a batch) and return a :class:`concurrent.futures.Future`.
A single writer thread collects what is queued into a batch and writes it with
:func:`proplog.store.record_validated_batch`: decisions, then events, in one transaction with one
durable commit (SQLite ``synchronous=FULL``, PostgreSQL ``synchronous_commit=on``). Only then is
each future resolved with the record's :class:`proplog.writes.WriteResult`: ``created=False`` means
the key was already stored, or came earlier in the same batch, with identical content (a replay).

A batch is closed when it holds ``max_batch`` records, or ``max_wait_s`` after its first record
arrived; while one batch commits, the next one fills, so the batch size follows the load.
:meth:`BatchWriter.flush` waits for everything submitted so far, and :meth:`BatchWriter.close`
flushes and stops the thread.

Failures stay with their record. A record can still fail in the database (an event for a decision
that is not stored, a replay with different content, a lost connection). Then the batch's
transaction is rolled back as a whole, and the batch is written again in halves, recursively,
down to single records: every good record is written, each bad one gets its own exception
(:class:`proplog.errors.UnknownDecisionError`, :class:`proplog.errors.ConflictError`, ...) on its
future, and nothing is half-written. Submit an event after the decision it points at (as with
writes one by one); the two may then share a batch, whose decisions are written before its events.
A cancelled future's record is not written.

With ``checkpoint_interval_s`` on a SQLite file, the writer's commits never checkpoint the WAL:
a thread of :class:`proplog.wal_checkpoints.WalCheckpoints` does, every that many seconds, so
that no batch waits for a checkpoint's copy.

A deferred decision (``deferred_until``, :mod:`proplog.activation`) travels as one record with its
activation deadline: its activation row is written in the same transaction as the decision, so
its future resolves only once both are durable, and a split batch never separates them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from proplog.activation import checked_deferral
from proplog.errors import WriterStoppedError
from proplog.schema import DecisionCreate, EventCreate
from proplog.store import (
    DecisionInput,
    EventInput,
    record_validated_batch,
    validated_decision,
    validated_event,
)
from proplog.wal_checkpoints import WalCheckpoints
from proplog.writer_lock import writer_turn
from proplog.writes import WriteResult

logger = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 1000
DEFAULT_MAX_WAIT_S = 0.002


@dataclass(frozen=True)
class _Pending:
    record: DecisionCreate | EventCreate
    future: Future[WriteResult]
    deferred_until: datetime | None = None  # a deferred decision's activation deadline
    new_key: bool = False  # a decision id the caller just made: not looked up before the insert


@dataclass(frozen=True)
class _Flush:
    done: threading.Event


_STOP = object()


@dataclass
class BatchWriterStats:
    """Counters since the writer started (read them after :meth:`BatchWriter.flush`)."""

    records: int = 0
    batches: int = 0
    commits: int = 0
    split_batches: int = 0
    failed_records: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class BatchWriter:
    """Group-commit writer of decisions and events into the log behind ``engine``.

    Parameters are keyword-only: ``max_batch`` records per transaction at most, and
    ``max_wait_s``, how long a batch waits for more records after its first one. ``max_queue``
    bounds the records waiting; beyond it, ``submit_*`` blocks (back pressure).
    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        max_queue: int = 100_000,
        checkpoint_interval_s: float | None = None,
    ) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be an integer >= 1; got {max_batch!r}")
        if not isinstance(max_wait_s, int | float) or not 0 <= max_wait_s <= 10:
            raise ValueError(f"max_wait_s must be in [0, 10] seconds; got {max_wait_s!r}")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise ValueError(f"max_queue must be an integer >= 1; got {max_queue!r}")
        self.engine = engine
        self.max_batch = max_batch
        self.max_wait_s = float(max_wait_s)
        self.stats = BatchWriterStats()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._closed = False
        self._close_lock = threading.Lock()
        self.checkpoints = (
            None
            if checkpoint_interval_s is None
            else WalCheckpoints.for_engine(engine, interval_s=checkpoint_interval_s)
        )
        self._thread = threading.Thread(target=self._run, name="proplog-batch-writer", daemon=True)
        self._thread.start()

    # -- callers' side ---------------------------------------------------------------------------

    def submit_decision(
        self, decision: DecisionInput, *, deferred_until: datetime | None = None
    ) -> Future[WriteResult]:
        """Validate ``decision`` now (raising ``LogValidationError``) and queue it for writing;
        ``deferred_until``: deferred until activated before that deadline, as
        :func:`proplog.store.record_decision` takes it."""
        record = validated_decision(decision)
        return self._submit(record, checked_deferral(record, deferred_until))

    def submit_event(self, event: EventInput) -> Future[WriteResult]:
        """Validate ``event`` now (raising ``LogValidationError``) and queue it for writing."""
        return self._submit(validated_event(event))

    def submit_validated(
        self,
        record: DecisionCreate | EventCreate,
        *,
        deferred_until: datetime | None = None,
        new_key: bool = False,
    ) -> Future[WriteResult]:
        """Queue a record that is already a validated ``*Create`` model (from ``validated_decision``
        or its constructor) and has not been changed since, without validating it again: for
        callers that built the model themselves, as the service does (``record_validated_batch``
        holds the same contract). ``deferred_until`` (decisions only) is checked here.

        ``new_key`` (decisions only): the caller has just made the ``decision_id`` (a random
        version-7 UUID), so no stored decision has it and the batch inserts it without first
        looking it up. Should the insert still meet the key (it cannot, short of a broken random
        source), the batch is written again with the lookup, so idempotency stays exact."""
        if not isinstance(record, DecisionCreate | EventCreate):
            raise TypeError(
                f"record must be a DecisionCreate or an EventCreate; got {type(record).__name__}"
            )
        if new_key and not isinstance(record, DecisionCreate):
            raise TypeError("new_key is for decisions only")
        if deferred_until is None:
            return self._submit(record, new_key=new_key)
        if not isinstance(record, DecisionCreate):
            raise TypeError("deferred_until is for decisions only")
        return self._submit(record, checked_deferral(record, deferred_until), new_key=new_key)

    def record_decision(
        self,
        decision: DecisionInput,
        *,
        timeout: float | None = None,
        deferred_until: datetime | None = None,
    ) -> WriteResult:
        """Submit ``decision`` and wait until it is durable; raises what its write raised."""
        return self.submit_decision(decision, deferred_until=deferred_until).result(timeout)

    def record_event(self, event: EventInput, *, timeout: float | None = None) -> WriteResult:
        """Submit ``event`` and wait until it is durable; raises what its write raised."""
        return self.submit_event(event).result(timeout)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every record submitted before this call is written (or failed)."""
        done = threading.Event()
        self._put(_Flush(done))
        if not done.wait(timeout):
            raise TimeoutError(f"the batch writer did not flush within {timeout} s")

    @property
    def alive(self) -> bool:
        """True while the writer accepts records (not closed, and its thread running)."""
        return not self._closed and self._thread.is_alive()

    def close(self) -> None:
        """Write everything queued, then stop the writer thread. Further submits raise."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
        if self.checkpoints is not None:
            self.checkpoints.close()
        logger.info("batch writer closed: %s", self.stats.as_dict())

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _submit(
        self,
        record: DecisionCreate | EventCreate,
        deferred_until: datetime | None = None,
        *,
        new_key: bool = False,
    ) -> Future[WriteResult]:
        future: Future[WriteResult] = Future()
        self._put(_Pending(record, future, deferred_until, new_key))
        return future

    def _put(self, item: Any) -> None:
        if not self.alive:
            raise WriterStoppedError("the batch writer is closed; no more records are accepted")
        self._queue.put(item)

    # -- the writer thread -----------------------------------------------------------------------

    def _run(self) -> None:
        batch: list[_Pending] = []
        try:
            # One connection held for the writer's life: callers that wait on their futures may
            # hold every pooled connection (a request's session, say), and a writer that had to
            # check one out per batch would then wait for them while they wait for it.
            with self.engine.connect() as connection, Session(bind=connection) as session:
                if self.checkpoints is not None:
                    self.checkpoints.take_over(connection)
                stopping = False
                while not stopping:
                    batch, flushes, stopping = self._collect()
                    if batch:
                        # The turn first, then what arrived while waiting for it joins the batch:
                        # one commit for them rather than one more turn each (SQLite's writers
                        # take turns on one lock, and with two workers a commit often waits for
                        # the other's).
                        with writer_turn(connection):
                            if not flushes and not stopping:
                                stopping = self._top_up(batch, flushes)
                            self._write(session, batch)
                    batch = []
                    for flush in flushes:
                        flush.done.set()
        except BaseException as exc:  # never leave a caller waiting on a dead thread
            logger.exception("the batch writer stopped on an unexpected error")
            self._closed = True
            self._fail_all(batch, exc)
            raise

    def _fail_all(self, batch: list[_Pending], exc: BaseException) -> None:
        error = WriterStoppedError(f"the batch writer stopped: {type(exc).__name__}: {exc}")
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(error)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Pending) and item.future.set_running_or_notify_cancel():
                item.future.set_exception(error)
            elif isinstance(item, _Flush):
                item.done.set()

    def _take(self, item: Any, batch: list[_Pending], flushes: list[_Flush]) -> str | None:
        """Put a queued ``item`` where it belongs: a record into ``batch`` (unless its caller
        cancelled it), a flush into ``flushes``. What ends the batch: "stop", "flush" or None."""
        if item is _STOP:
            return "stop"
        if isinstance(item, _Flush):
            flushes.append(item)
            return "flush"  # a flush closes the batch at once
        if item.future.set_running_or_notify_cancel():  # False: cancelled by its caller
            batch.append(item)
        return None

    def _top_up(self, batch: list[_Pending], flushes: list[_Flush]) -> bool:
        """Add what is queued now to ``batch``, up to ``max_batch``, stopping at a flush (added
        to ``flushes``) or the stop; whether the stop was met."""
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False
            ended = self._take(item, batch, flushes)
            if ended is not None:
                return ended == "stop"
        return False

    def _collect(self) -> tuple[list[_Pending], list[_Flush], bool]:
        """Block for a first item, then take more until the batch is full or its time is up."""
        batch: list[_Pending] = []
        flushes: list[_Flush] = []
        item = self._queue.get()
        deadline = time.monotonic() + self.max_wait_s
        while True:
            ended = self._take(item, batch, flushes)
            if ended is not None:
                return batch, flushes, ended == "stop"
            if len(batch) >= self.max_batch:
                return batch, flushes, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return batch, flushes, False
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    return batch, flushes, False

    def _write(
        self, session: Session, batch: Sequence[_Pending], *, trust_new: bool = True
    ) -> None:
        """Write ``batch`` in one transaction; if that fails, its halves, down to single records.
        ``trust_new``: decisions submitted with ``new_key`` are inserted without a lookup (a
        failed batch that had any is first written again with the lookup)."""
        self.stats.batches += 1
        decisions = [p for p in batch if isinstance(p.record, DecisionCreate)]
        events = [p for p in batch if isinstance(p.record, EventCreate)]
        new_keys = frozenset(p.record.decision_id for p in decisions if p.new_key and trust_new)  # type: ignore[union-attr]
        try:
            decision_results, event_results = record_validated_batch(
                session=session,
                decisions=[p.record for p in decisions],  # type: ignore[misc]
                events=[p.record for p in events],  # type: ignore[misc]
                deferred_until=[p.deferred_until for p in decisions],
                new_keys=new_keys,
            )
        except Exception as exc:
            if new_keys:
                self._write(session, batch, trust_new=False)
                return
            if len(batch) == 1:
                self.stats.failed_records += 1
                logger.info("record refused by the log: %s", exc)
                batch[0].future.set_exception(exc)
                return
            self.stats.split_batches += 1
            logger.info(
                "a batch of %d records failed (%s: %s); writing it again in halves",
                len(batch),
                type(exc).__name__,
                exc,
            )
            middle = len(batch) // 2
            self._write(session, batch[:middle], trust_new=trust_new)
            self._write(session, batch[middle:], trust_new=trust_new)
            return
        self.stats.commits += 1
        self.stats.records += len(batch)
        for pending, result in zip(
            decisions + events, decision_results + event_results, strict=True
        ):
            pending.future.set_result(result)
