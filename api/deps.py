"""What a route depends on, read from ``request.app.state``: the settings, the metrics, the
decision service and the batch writer; the worker's threads for blocking database work
(:class:`BlockingPool`); and ``starting_model``, the model
the app starts with: the settings' model file, else the log's production version
(``load_scorer``), else, when the log has neither a production version nor a model file but has
a catalog (``loopbreak catalog load``), the cold start: an unfitted
:class:`fm_core.PopularityAffinityScorer` over that catalog, version ``cold-start``, which the app
serves with a uniform policy until a version is promoted.

A route takes the decision service once, as a dependency, and uses that object from start to
end: a hot reload (:mod:`api.reload`) replaces ``app.state.service`` with a new service and
never changes one in place, so a request is never served by two models.

**No request holds a database connection while it waits.** The routes are ``async``: their CPU
work runs on the event loop, a durable write awaits the batch writer's future, and the blocking
reads and writes left (:class:`BlockingPool`) each run as one function in one of the worker's
``Settings.db_threads`` threads, which checks a pooled connection out, uses it and returns it
before the function returns. A thread never waits on a request, and the threads (with the batch
writer's one connection and the hot reload's one) never need more connections than the pool
has (:func:`blocking_threads`), so a checkout never waits on another request either: the cycle
of the old design (requests holding connections until a close step that needed a thread that
waiting requests held) cannot form."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.pool import QueuePool

from api.metrics import ServiceMetrics
from api.settings import Settings
from fm_core import Scorer
from loop.service import DecisionService
from proplog.batch_writer import BatchWriter

P = ParamSpec("P")
T = TypeVar("T")

COLD_START_VERSION = "cold-start"
"""The model version of the cold-start scorer (``/healthz`` and every decision it serves)."""


@dataclass(frozen=True)
class StartingModel:
    """The model the app starts with; ``cold_start``: the unfitted scorer over the log's
    catalog, to be served with a uniform policy."""

    scorer: Scorer
    cold_start: bool = False


def load_scorer(settings: Settings, engine: Engine | None = None) -> Scorer:
    """The model file ``settings.model_path`` (written by ``loopbreak demo``/``retrain``); when
    there is none, the file of the production version in ``engine``'s log (``loopbreak models
    promote``)."""
    from fm_core import load_scorer_file  # either kind; torch only for an FM file

    if settings.model_path.exists():
        return load_scorer_file(settings.model_path)
    production = None
    if engine is not None:
        from loop.models import production_model

        production = production_model(engine)
    if production is not None and production[1] is not None and Path(production[1]).exists():
        return load_scorer_file(Path(production[1]))
    where = (
        "and no production version in the log"
        if production is None
        else f"and production version {production[0]} has no model file at {production[1]}"
    )
    raise FileNotFoundError(
        f"no model at {settings.model_path} {where}: run `loopbreak demo` or `loopbreak "
        "retrain` and `loopbreak models promote`, or pass --model"
    )


def starting_model(settings: Settings, engine: Engine) -> StartingModel:
    """:func:`load_scorer`'s model; without a model file and a production version, the cold
    start over the log's catalog; with no catalog either, ``FileNotFoundError`` saying what to
    do."""
    if settings.model_path.exists():
        return StartingModel(load_scorer(settings, engine))
    from loop.models import production_model

    if production_model(engine) is not None:
        return StartingModel(load_scorer(settings, engine))  # its file, or its error
    from fm_core import PopularityAffinityScorer
    from loop.catalog import catalog_from_log

    catalog = catalog_from_log(engine)
    if catalog is None:
        raise FileNotFoundError(
            f"no model at {settings.model_path}, no production version and no catalog in the "
            "log: run `loopbreak demo` or `loopbreak retrain` and `loopbreak models promote`, "
            "pass --model, or load a catalog with `loopbreak catalog load FILE` to start cold"
        )
    scorer = PopularityAffinityScorer(catalog, model_version=COLD_START_VERSION)
    return StartingModel(scorer, cold_start=True)


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


RESERVED_CONNECTIONS = 2
"""Pooled connections left to others than :class:`BlockingPool`: the batch writer's and the hot
reload's."""


def blocking_threads(settings: Settings, engine: Engine) -> int:
    """The number of :class:`BlockingPool` threads: ``settings.db_threads``, at most what the
    engine's pool can give at once besides :data:`RESERVED_CONNECTIONS` (so that no thread ever
    waits for a connection), and 1 on an in-memory SQLite database (one shared connection)."""
    from proplog.engine import shares_one_connection

    if shares_one_connection(engine):
        return 1
    pool = engine.pool
    if isinstance(pool, QueuePool):
        capacity = pool.size() + max(0, pool._max_overflow)
        return max(1, min(settings.db_threads, capacity - RESERVED_CONNECTIONS))
    return settings.db_threads


class BlockingPool:
    """The worker's bounded threads for blocking database work on the request path.

    ``await pool.run(fn, *args)`` runs ``fn`` in one of ``threads`` threads and returns its result
    (or raises its error) without holding the event loop. ``fn`` must open and close its own
    session or connection: nothing of a request's stays checked out between two calls."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="loopbreak-db")

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        call = functools.partial(fn, *args, **kwargs) if kwargs else functools.partial(fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def close(self) -> None:
        """Stop taking work; what runs finishes on its own (never waited for, so a stuck read
        cannot hold up a shutdown)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


async def get_service(request: Request) -> DecisionService:
    return request.app.state.service


async def get_writer(request: Request) -> BatchWriter | None:
    """The worker's batch writer; None when each request commits on its own."""
    return request.app.state.writer


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
ServiceDep = Annotated[DecisionService, Depends(get_service)]
WriterDep = Annotated[BatchWriter | None, Depends(get_writer)]
