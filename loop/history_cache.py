"""The recent users' event histories of one serving worker, so that a decision does not read the
log for the user's history.

Owns :class:`HistoryCache`: an LRU of at most ``max_users`` users, each entry the user's history
as :func:`proplog.store.user_history` would read it for any time from the entry's load on: the
``limit`` most recent events strictly before the load time ``loaded_before``, and every event at
or after it (events carry the client's time, which may lie ahead of the server's). A decision at
``now >= loaded_before`` takes the ``limit`` latest of them before ``now`` (the point-in-time
rule, ordered by ``(created_at, event_id)`` as the store orders them): exactly what the log would
give, as long as the entry holds every event of the user written since its load.

What keeps an entry current:

- the events this worker writes (:meth:`HistoryCache.observe`, called by the service's event path
  once the write is durable and was not a replay) are added to the entry at once; an event that
  arrives while a load of its user is in flight makes that load's result not to be kept (it may
  have been read before the event's commit);
- events written by anyone else (another worker of ``loopbreak serve --workers N``, another
  process, an import) are not seen until the entry expires: an entry is trusted for ``ttl_s``
  seconds after its load (monotonic clock), then read again. **So a decision sees every event
  written by another process at least ``ttl_s`` seconds before it** (``Settings.
  history_cache_seconds``, 5 s by default), and every event written through this worker at once.

A decision whose ``now`` is before its entry's ``loaded_before`` (a clock step back, or a request
that took its time before a concurrent one loaded the entry) reads the log instead. ``ttl_s`` 0
keeps nothing: every decision reads the log, as without a cache.

The cache lives on one event loop (the worker's): it has no locks, and its methods are called
only from that loop; the log is read by the caller (in a thread) through :meth:`load`'s
``read`` function, and the result kept by :meth:`put`. It is per worker: each worker process of
``loopbreak serve --workers N`` has its own.
"""

from __future__ import annotations

import bisect
import collections
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine

from fm_core import History
from loop.context import history_from_events
from loop.loop_reads import LoopReader
from proplog.schema import EventCreate
from proplog.store import user_history_and_later


def _key(event: EventCreate) -> tuple[datetime, str]:
    return (event.created_at, event.event_id)


@dataclass
class _Entry:
    loaded_before: datetime
    expires: float
    events: list[EventCreate]
    keys: list[tuple[datetime, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.keys = [_key(e) for e in self.events]


@dataclass
class _Load:
    """A read of the log for one user in flight; ``dirty`` once this worker wrote an event of
    the user meanwhile (the read may have missed it)."""

    dirty: bool = False


@dataclass
class HistoryCacheStats:
    hits: int = 0
    misses: int = 0
    observed: int = 0


class HistoryCache:
    """Recent users' histories (``limit`` events each) for ``ttl_s`` seconds; see the module
    docstring for what it guarantees."""

    def __init__(
        self,
        *,
        limit: int,
        ttl_s: float,
        max_users: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        reader: LoopReader | None = None,
    ) -> None:
        """``reader``: read a miss on the event loop itself (:mod:`loop.loop_reads`, SQLite
        files); None: the caller reads it in a thread (:meth:`read`)."""
        if limit < 0:
            raise ValueError(f"limit must be >= 0; got {limit}")
        self.limit = limit
        self.ttl_s = ttl_s
        self.max_users = max_users
        self.clock = clock
        self.reader = reader
        self.stats = HistoryCacheStats()
        self._entries: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
        self._loads: dict[str, list[_Load]] = {}

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    def get(self, user_id: str, before: datetime) -> History | None:
        """The user's history before ``before`` from the cache, or None (a miss: read the log
        with :meth:`load`)."""
        if self.limit == 0:
            return history_from_events(())
        entry = self._entries.get(user_id)
        if entry is None:
            self.stats.misses += 1
            return None
        if self.clock() >= entry.expires:
            del self._entries[user_id]
            self.stats.misses += 1
            return None
        if before < entry.loaded_before:
            self.stats.misses += 1
            return None
        self._entries.move_to_end(user_id)
        self.stats.hits += 1
        end = bisect.bisect_left(entry.keys, (before,))
        return history_from_events(entry.events[max(0, end - self.limit) : end])

    def read(self, engine: Engine, user_id: str, before: datetime) -> list[EventCreate]:
        """What an entry holds, read from the log (blocking: call it in a thread): the ``limit``
        latest events of the user before ``before``, then every one at or after it, in order."""
        return user_history_and_later(
            engine, user_id=user_id, before=before, limit=self.limit, later=self.enabled
        )

    def read_here(self, user_id: str, before: datetime) -> list[EventCreate] | None:
        """:meth:`read` on the event loop through the cache's reader; None when it has none, or
        when the log stayed locked past the reader's bound (then :meth:`read` in a thread)."""
        if self.reader is None:
            return None
        return self.reader.history(
            user_id=user_id, before=before, limit=self.limit, later=self.enabled
        )

    def begin_load(self, user_id: str) -> _Load:
        """Mark a read of ``user_id``'s history as started (on the event loop, before the read)."""
        load = _Load()
        self._loads.setdefault(user_id, []).append(load)
        return load

    def abandon(self, user_id: str, load: _Load) -> None:
        """Forget a load whose read failed."""
        pending = self._loads.get(user_id, [])
        if load in pending:
            pending.remove(load)
        if not pending:
            self._loads.pop(user_id, None)

    def put(
        self, user_id: str, before: datetime, events: Sequence[EventCreate], load: _Load
    ) -> History:
        """Keep what :meth:`read` gave for ``before`` (unless an event of the user was observed
        during the read) and return the history before ``before``."""
        self.abandon(user_id, load)
        end = bisect.bisect_left([_key(e) for e in events], (before,))
        history = history_from_events(events[max(0, end - self.limit) : end])
        if self.enabled and not load.dirty:
            self._entries[user_id] = _Entry(before, self.clock() + self.ttl_s, list(events))
            self._entries.move_to_end(user_id)
            while len(self._entries) > self.max_users:
                self._entries.popitem(last=False)
        return history

    def observe(self, event: EventCreate) -> None:
        """An event this worker wrote (durable, not a replay): add it to its user's entry."""
        self.stats.observed += 1
        for load in self._loads.get(event.user_id, ()):
            load.dirty = True
        entry = self._entries.get(event.user_id)
        if entry is None:
            return
        key = _key(event)
        at = bisect.bisect_left(entry.keys, key)
        if at < len(entry.keys) and entry.keys[at] == key:
            return  # already read from the log
        entry.keys.insert(at, key)
        entry.events.insert(at, event)
        # Events before loaded_before older than the `limit` latest of them are never read again
        # (every later query is at or after loaded_before): drop them.
        before = bisect.bisect_left(entry.keys, (entry.loaded_before,))
        if before > self.limit:
            drop = before - self.limit
            del entry.keys[:drop]
            del entry.events[:drop]

    def clear(self) -> None:
        self._entries.clear()
