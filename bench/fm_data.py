"""Sequence data for ``loopbreak bench fm``: loaders, the simulated sequences and the split.

- **ml-100k** (``ml-100k/u.data``: ``user \\t item \\t rating \\t unix time``): every rating is
  an interaction; each user's rows are ordered by time, ties by item id.
- **beauty** (``beauty/beauty.txt``: ``user item`` per line, already in time order): no times;
  event i of a user gets the time ``origin + i`` days, so that times are increasing and no two
  events roll up, and the benchmark turns the continuous time features off.
- **sim**: plays logged in the simulated world (``sim``) under a uniformly random home slate of
  ``slate_size`` available items per request, with its search path; each event carries the
  request's device, surface and local hour as an ``EventContext``. A user's repeated plays of
  an item keep the first one only, so that a test target is never an item the user has seen.

Items carry no metadata in ml-100k and beauty (one empty genre column, no tokens, released at
time 0); the sim catalog has the world's genres, tokens and release times.

**Leave-one-out split** (``leave_one_out``): for every user with at least three events the last
event is the test target and the one before it the validation target; training sees the events
before the validation target. A validation query's input is the training events; a test query's
input adds the validation event. A query's request token carries the target event's own
request-time context (time, device, surface, local hour), which a service knows when it asks.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fm_core.types import History, ItemCatalog, ScoreRequest

if TYPE_CHECKING:
    from fm_core.tokenize import EventContext

logger = logging.getLogger(__name__)

DATASETS = ("ml-100k", "beauty", "sim")
DATA_FILES = {"ml-100k": Path("ml-100k") / "u.data", "beauty": Path("beauty") / "beauty.txt"}
_DAY = 86400.0


@dataclass(frozen=True)
class SequenceData:
    """Time-ordered interaction sequences of one dataset and the catalog they index.

    Attributes:
        name: the dataset's name.
        catalog: the items (sorted ids).
        histories: per user, the events oldest first.
        contexts: per user, the events' device, surface and local hour (None: not known).
        timed: whether event times are real (False: positions stand in for times).
        source: the file the data came from, or how it was made.
    """

    name: str
    catalog: ItemCatalog
    histories: tuple[History, ...]
    contexts: tuple[EventContext, ...] | None
    timed: bool
    source: str

    @property
    def n_events(self) -> int:
        return sum(len(h) for h in self.histories)


def _plays(items: np.ndarray, times: np.ndarray) -> History:
    n = len(items)
    return History(
        item_ids=np.asarray(items, dtype=np.int64),
        times=np.asarray(times, dtype=np.float64),
        kinds=np.full(n, "play", dtype=object),
        values=np.zeros(n),
        sources=np.full(n, "direct", dtype=object),
    )


def _bare_catalog(item_ids: np.ndarray) -> ItemCatalog:
    ids = np.unique(np.asarray(item_ids, dtype=np.int64))
    return ItemCatalog(
        item_ids=ids,
        genres=np.zeros((ids.size, 1), dtype=bool),
        release_time=np.zeros(ids.size),
        tokens=tuple(() for _ in range(ids.size)),
    )


def _numeric_table(path: Path, columns: int, layout: str) -> np.ndarray:
    """(rows, columns) int64 table of a whitespace-separated file; errors name the line."""
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != columns:
                raise ValueError(f"{path}:{number}: expected {columns} fields ({layout}); "
                                 f"got {len(fields)}")  # fmt: skip
            try:
                rows.append([int(f) for f in fields])
            except ValueError:
                raise ValueError(
                    f"{path}:{number}: fields must be integers ({layout}); got {line.strip()!r}"
                ) from None
    if not rows:
        raise ValueError(f"{path} holds no interactions")
    return np.asarray(rows, dtype=np.int64)


def load_movielens(path: Path) -> SequenceData:
    """MovieLens ``u.data``: each user's ratings ordered by time, ties by item id."""
    table = _numeric_table(path, 4, "user, item, rating, unix time")
    users, items, times = table[:, 0], table[:, 1], table[:, 3].astype(np.float64)
    order = np.lexsort((items, times, users))
    users, items, times = users[order], items[order], times[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    histories = tuple(
        _plays(items[a:b], times[a:b])
        for a, b in zip(starts, np.r_[starts[1:], users.size], strict=True)
    )
    return SequenceData("ml-100k", _bare_catalog(items), histories, None, True, str(path))


def load_beauty(path: Path) -> SequenceData:
    """Amazon Beauty as preprocessed for BERT4Rec: ``user item`` lines in time order."""
    from fm_core.tokenize import DEFAULT_TIME_ORIGIN

    table = _numeric_table(path, 2, "user, item")
    per_user: dict[int, list[int]] = defaultdict(list)
    for user, item in table:
        per_user[int(user)].append(int(item))
    histories = tuple(
        _plays(np.array(items), DEFAULT_TIME_ORIGIN + _DAY * np.arange(len(items)))
        for _, items in sorted(per_user.items())
    )
    return SequenceData("beauty", _bare_catalog(table[:, 1]), histories, None, False, str(path))


def simulate_sequences(
    *,
    n_users: int = 2000,
    n_items: int = 400,
    requests_per_user: float = 60.0,
    slate_size: int = 10,
    horizon_days: float = 60.0,
    daypart_strength: float = 1.0,
    device_strength: float = 1.0,
    seed: int = 0,
) -> SequenceData:
    """Plays of the simulated world under uniformly random slates (see the module docstring);
    the strengths scale the world's genre × daypart and genre × device effects."""
    from fm_core.tokenize import EventContext
    from loop.sim_bridge import catalog_from_world
    from sim import World, WorldConfig
    from sim.clock import EPOCH

    world = World(
        WorldConfig(
            seed=seed, n_items=n_items, n_users=n_users, horizon_days=horizon_days,
            daypart_strength=daypart_strength, device_strength=device_strength,
        )
    )  # fmt: skip
    rng = np.random.default_rng(seed + 1)
    n_requests = round(requests_per_user * n_users)
    requests = world.sample_requests(n_requests, start=0.0, end=horizon_days, rng=rng)
    # per user: (time in days, item, seconds, surface, device, local hour)
    logged: list[list[tuple[float, int, float, str, str, float]]] = [[] for _ in range(n_users)]
    seen: list[set[int]] = [set() for _ in range(n_users)]
    for request in requests:
        available = world.available(request.t)
        slate = rng.choice(available, size=min(slate_size, available.size), replace=False)
        outcome = world.respond(request, slate, rng)
        world.record(outcome)
        for play in outcome.plays:
            if play.item in seen[request.user]:
                continue
            seen[request.user].add(play.item)
            hour = (request.local_hour + (play.t - request.t) * 24.0) % 24.0
            surface = "search" if play.source == "search" else "home"
            logged[request.user].append(
                (play.t, play.item, play.seconds, surface, request.device_name, hour)
            )
    histories, contexts = [], []
    origin = EPOCH.timestamp()
    for events in logged:
        if not events:
            continue
        events.sort(key=lambda e: (e[0], e[1]))
        t, item, seconds, surface, device, hour = (np.array(c) for c in zip(*events, strict=True))
        histories.append(
            History(
                item_ids=item.astype(np.int64),
                times=origin + t.astype(np.float64) * _DAY,
                kinds=np.full(t.size, "play", dtype=object),
                values=seconds.astype(np.float64),
                sources=np.where(surface == "search", "search", "rec").astype(object),
            )
        )
        contexts.append(
            EventContext(
                devices=device.astype(object),
                surfaces=surface.astype(object),
                local_hours=hour.astype(np.float64),
            )
        )
    source = (f"sim: {n_users} users, {n_items} items, {n_requests} requests, random slates "
              f"of {slate_size}, daypart × {daypart_strength:g}, device × {device_strength:g}, "
              f"seed {seed}")  # fmt: skip
    return SequenceData(
        "sim", catalog_from_world(world), tuple(histories), tuple(contexts), True, source
    )


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """The data folder: as given (relative to the current directory), else ``../shared/data``
    from the current directory or, failing that, from the repository root."""
    if data_dir is not None:
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"--data-dir {path.resolve()} is not a directory")
        return path
    candidates = [
        Path.cwd() / "../shared/data",
        Path(__file__).resolve().parents[1] / "../shared/data",
    ]
    for path in candidates:
        if path.is_dir():
            return path.resolve()
    raise FileNotFoundError(
        "no data folder: looked for ../shared/data at "
        + " and ".join(str(p.resolve()) for p in candidates)
        + "; pass --data-dir"
    )


def load_dataset(
    name: str, data_dir: str | Path | None = None, *, sim_options: dict[str, float] | None = None
) -> SequenceData:
    """The named dataset: a file under the data folder, or the simulated sequences."""
    if name == "sim":
        return simulate_sequences(**(sim_options or {}))  # type: ignore[arg-type]
    if name not in DATA_FILES:
        raise ValueError(f"data must be one of {DATASETS}; got {name!r}")
    path = resolve_data_dir(data_dir) / DATA_FILES[name]
    if not path.is_file():
        raise FileNotFoundError(f"{name} data not found: expected the file {path.resolve()}")
    return load_movielens(path) if name == "ml-100k" else load_beauty(path)


# ---- leave-one-out -------------------------------------------------------------------------


def _head(history: History, n: int) -> History:
    return History(
        item_ids=history.item_ids[:n],
        times=history.times[:n],
        kinds=history.kinds[:n],
        values=history.values[:n],
        sources=history.sources[:n],
    )


def _context_head(context: EventContext | None, n: int) -> EventContext | None:
    from fm_core.tokenize import EventContext

    if context is None:
        return None
    return EventContext(
        devices=None if context.devices is None else context.devices[:n],
        surfaces=None if context.surfaces is None else context.surfaces[:n],
        local_hours=None if context.local_hours is None else context.local_hours[:n],
    )


def _at(values: np.ndarray | None, i: int) -> object:
    return None if values is None else values[i]


@dataclass(frozen=True)
class Queries:
    """Next-item queries: per user, the input events, a request for the target's step, and the
    target's catalog row.

    Attributes:
        requests: ScoreRequests whose history is the input and whose time, device, surface and
            local hour are the target event's.
        contexts: the input events' EventContext (None when unknown).
        target: (Q,) catalog rows of the targets.
        seen: per query, the catalog rows of the input's items (removed from the ranking).
        time: (Q,) target times (items released later cannot be recommended).
    """

    requests: tuple[ScoreRequest, ...]
    contexts: tuple[EventContext | None, ...]
    target: np.ndarray
    seen: tuple[np.ndarray, ...]
    time: np.ndarray

    def __len__(self) -> int:
        return int(self.target.size)

    def subset(self, index: np.ndarray) -> Queries:
        """The queries at ``index``."""
        return Queries(
            requests=tuple(self.requests[i] for i in index),
            contexts=tuple(self.contexts[i] for i in index),
            target=self.target[index],
            seen=tuple(self.seen[i] for i in index),
            time=self.time[index],
        )


@dataclass(frozen=True)
class LeaveOneOut:
    """Training sequences and the validation and test queries of one dataset."""

    train: tuple[History, ...]
    train_contexts: tuple[EventContext | None, ...]
    valid: Queries
    test: Queries


def _queries(data: SequenceData, users: Sequence[int], offset: int) -> Queries:
    """The query whose target is event ``len - offset`` of each user."""
    requests, contexts, targets, seen, times = [], [], [], [], []
    for u in users:
        history = data.histories[u]
        context = data.contexts[u] if data.contexts is not None else None
        i = len(history) - offset
        requests.append(
            ScoreRequest(
                user_id=str(u),
                time=float(history.times[i]),
                surface=str(_at(None if context is None else context.surfaces, i) or "home"),
                device=_at(None if context is None else context.devices, i),  # type: ignore[arg-type]
                local_hour=None
                if context is None or context.local_hours is None
                else float(context.local_hours[i]),
                history=_head(history, i),
            )
        )
        contexts.append(_context_head(context, i))
        targets.append(int(data.catalog.rows(history.item_ids[i : i + 1])[0]))
        seen.append(np.unique(data.catalog.rows(history.item_ids[:i])))
        times.append(float(history.times[i]))
    return Queries(
        tuple(requests), tuple(contexts), np.array(targets, dtype=np.int64), tuple(seen),
        np.array(times),
    )  # fmt: skip


def leave_one_out(data: SequenceData) -> LeaveOneOut:
    """The split described in the module docstring; users with fewer than 3 events are left
    out (logged)."""
    users = [u for u, h in enumerate(data.histories) if len(h) >= 3]
    if not users:
        raise ValueError(f"{data.name}: no user has the 3 events leave-one-out needs")
    dropped = len(data.histories) - len(users)
    if dropped:
        logger.info("%s: %d users with fewer than 3 events left out", data.name, dropped)
    contexts = data.contexts
    return LeaveOneOut(
        train=tuple(_head(data.histories[u], len(data.histories[u]) - 2) for u in users),
        train_contexts=tuple(
            _context_head(None if contexts is None else contexts[u], len(data.histories[u]) - 2)
            for u in users
        ),
        valid=_queries(data, users, 2),
        test=_queries(data, users, 1),
    )
