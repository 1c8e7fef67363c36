"""The FastAPI application factory and its lifespan: decisions with exploration enabled, and
events.

``create_app(settings)`` builds an app; nothing connects to a database or loads a model at
import time. ``create_app_from_env()`` builds one from ``LOOPBREAK_*`` environment variables: the
factory each worker process of ``loopbreak serve --workers N`` calls, so that every worker has its
own engine, batch writer, database threads, hot reload, API key cache and history cache (none of
them is shared between workers; SQLite writers of several workers take turns through
:mod:`proplog.writer_lock`).

The request path (:mod:`api.deps`): ``async`` routes whose CPU work runs on the event loop, at
most ``Settings.max_in_flight`` requests under ``/v1/`` at once (:mod:`api.admission`: the rest
wait up to ``Settings.queue_timeout_ms``, then 503 ``overloaded``), the blocking reads in
``Settings.db_threads`` threads, and the user's history from the worker's cache
(:mod:`loop.history_cache`, trusted ``Settings.history_cache_seconds``), a miss read on the
event loop itself when the log is a SQLite file (:mod:`loop.loop_reads`).

A decision is recorded (committed, and with SQLite's synchronous=FULL, on disk)
before its answer is sent. By default (``Settings.group_commit``) each worker's decisions and
events go through one :class:`proplog.batch_writer.BatchWriter`, so that the requests in flight
share a durable commit instead of one fsync each.

What a request reads from ``app.state`` (settings, metrics, engine, writer, service) is named in
:mod:`api.deps`; the routes are in :mod:`api.routes`, each behind the API key scope it needs
(:mod:`api.auth`); the refusals are in :mod:`api.errors`, the request body limit in
:mod:`api.body_limit`, the exact OpenAPI document in :mod:`api.contract`. ``/docs`` and
``/redoc`` serve their assets from the app (fastapi-offline), so they work without a network.

The model: the ``scorer`` given, else the experiment's control arm, else the settings' model
file, else the log's production version, else the cold start (:func:`api.deps.starting_model`):
an unfitted scorer over the log's catalog, version ``cold-start``, served with a uniform policy
(ε-greedy with ε = 1 over every candidate, unless a ``policy`` is given) whose decisions are
logged like any other, until a promoted version replaces it with the settings' policy. Unless an
experiment pins the models (or the database is in-memory SQLite), the app then follows the
production version every ``Settings.reload_seconds`` (:mod:`api.reload`), swapping the whole
decision service at once.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from sqlalchemy import Engine

from api.admission import AdmissionLimiter, AdmissionMiddleware
from api.auth import include_routes, warn_at_start
from api.body_limit import BodyLimitMiddleware
from api.contract import install_openapi
from api.deps import BlockingPool, StartingModel, blocking_threads, starting_model
from api.errors import register_error_handlers
from api.lean_decisions import install_lean_decisions
from api.metrics import ServiceMetrics
from api.reload import ProductionFollower, ServiceFactory
from api.routes import ROUTERS
from api.routes.health import serving_info
from api.settings import Settings
from explore import EpsilonGreedySlate, Policy
from fm_core import Scorer
from fm_core.serving_threads import limit_torch_threads
from loop.experiment import LiveExperiment, load_experiment
from loop.history_cache import HistoryCache
from loop.loop_reads import LoopReader
from loop.models import production_model
from loop.online_learning import start_online_learning
from loop.service import DecisionService
from proplog.batch_writer import BatchWriter
from proplog.engine import init_db, make_engine, shares_one_connection

logger = logging.getLogger(__name__)

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def freeze_startup_objects() -> None:
    """Move everything built at start (the model, the catalog, the app, the imported modules)
    out of the garbage collector's reach, so that a later full collection scans only what
    requests made since. A full collection over the loaded stack stops a worker for 17-75 ms
    (measured here, at start); requests rarely trigger one, but a long-running worker whose
    request objects survive into the oldest generation would pay it in its tail latency."""
    gc.collect()
    gc.freeze()


def production_version_of(engine: Engine) -> str | None:
    production = production_model(engine)
    return None if production is None else production[0]


def _follower(
    app: FastAPI, db: Engine, settings: Settings, make_service: ServiceFactory, *, pinned: str
) -> ProductionFollower | None:
    """The hot reload of the production model, or None (and why) when it is off."""
    if settings.reload_seconds <= 0:
        return None
    if pinned:
        logger.info("hot reload off: %s", pinned)
        return None
    return ProductionFollower(
        app,
        db,
        interval_s=settings.reload_seconds,
        make_service=make_service,
        seen=production_version_of(db),
    )


def _starting_model(
    settings: Settings, db: Engine, scorer: Scorer | None, experiment: LiveExperiment | None
) -> StartingModel:
    if scorer is not None:
        return StartingModel(scorer)
    if experiment is not None:
        return StartingModel(experiment.control.scorer)
    return starting_model(settings, db)


def _lifespan(
    settings: Settings, *, scorer: Scorer | None, policy: Policy | None, engine: Engine | None
) -> Lifespan:
    """Open the database, load the model and start the writer (and the hot reload) when the app
    starts; close what it opened when the app stops. ``scorer``, ``policy`` and ``engine``
    override ``settings``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = engine or make_engine(settings.database_url, timeout_s=settings.db_timeout_seconds)
        init_db(db)
        warn_at_start(settings, db)
        experiment = load_experiment(settings.experiment) if settings.experiment else None
        start = _starting_model(settings, db, scorer, experiment)
        chosen = policy or settings.exploration_policy()
        writer = (
            BatchWriter(
                db,
                max_wait_s=settings.group_commit_wait_ms / 1000.0,
                checkpoint_interval_s=settings.checkpoint_interval_ms / 1000.0 or None,
            )
            if settings.group_commit and not shares_one_connection(db)
            else None
        )

        def make_service(served: Scorer, serving: Policy | None = None) -> DecisionService:
            limit_torch_threads(settings.torch_threads)  # a (re)loaded FM has imported torch
            return DecisionService(
                scorer=served,
                policy=serving or chosen,
                history_limit=settings.history_limit,
                experiment=experiment,
                writer=writer,
            )

        app.state.engine = db
        app.state.writer = writer
        app.state.blocking = blocking = BlockingPool(blocking_threads(settings, db))
        app.state.history_cache = history = HistoryCache(
            limit=settings.history_limit,
            ttl_s=settings.history_cache_seconds,
            max_users=settings.history_cache_users,
            reader=LoopReader.for_engine(db),  # a miss read on the loop itself (SQLite files)
        )
        cold = EpsilonGreedySlate(epsilon=1.0) if start.cold_start and policy is None else None
        app.state.service = make_service(start.scorer, cold)
        if start.cold_start:
            logger.warning(
                "cold start: no model file and no production version; serving the log's "
                "catalog (%d items) with %s until a version is promoted",
                start.scorer.catalog.n_items,
                "a uniform policy (epsilon 1 over every candidate)" if cold else "the given policy",
            )
        pinned = (
            "an experiment's arms name their model files"
            if experiment
            else "an in-memory database has one connection, which requests use"
            if shares_one_connection(db)
            else ""
        )
        follower = _follower(app, db, settings, make_service, pinned=pinned)
        serving = serving_info(app.state.service, settings)
        logger.info(
            "serving model %s with %s %s %s on %s; arms %s; hot reload %s",
            serving["model_version"],
            serving["policy"]["name"],
            serving["policy"]["version"],
            serving["policy"]["params"],
            serving["database"],
            [arm["arm"] for arm in serving["arms"]] or "none",
            f"every {settings.reload_seconds:g} s" if follower else "off",
        )
        if follower is not None:
            follower.start()
        app.state.learner = learner = start_online_learning(chosen, db, settings.online_learning())
        if settings.switch_interval_ms is not None:
            sys.setswitchinterval(settings.switch_interval_ms / 1000.0)
        freeze_startup_objects()
        try:
            yield
        finally:
            learner.stop()  # the VW policy's online learning (loop.online_learning), when on
            if follower is not None:
                await follower.stop()
            blocking.close()
            if history.reader is not None:
                history.reader.close()
            if writer is not None:
                writer.close()  # writes what is queued: nothing was acknowledged before its commit
            if engine is None:
                db.dispose()

    return lifespan


def create_app(
    settings: Settings | None = None,
    *,
    scorer: Scorer | None = None,
    policy: Policy | None = None,
    engine: Engine | None = None,
) -> FastAPI:
    """Build the app. ``scorer``, ``policy`` and ``engine`` default to what ``settings`` says."""
    settings = settings or Settings()
    app = FastAPIOffline(  # /docs and /redoc with their assets served here, not from a CDN
        title="loopbreak",
        version="0.1.0",
        lifespan=_lifespan(settings, scorer=scorer, policy=policy, engine=engine),
    )
    app.state.settings = settings
    metrics = app.state.metrics = ServiceMetrics()
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        on_refuse=lambda: metrics.rejected.labels("413").inc(),
    )
    app.add_middleware(  # outermost: a shed request is answered before its body is read
        AdmissionMiddleware,
        limiter=AdmissionLimiter(settings.max_in_flight, settings.queue_timeout_ms / 1000.0),
        on_shed=lambda: metrics.http_errors.labels("503", "overloaded").inc(),
    )
    register_error_handlers(app)
    include_routes(app, ROUTERS, settings)  # each route behind its API key scope (api.auth)
    install_openapi(app, settings)  # every status and error body declared (api.contract)
    install_lean_decisions(app)  # the common decision request without FastAPI's machinery
    return app


def create_app_from_env() -> FastAPI:
    """The app of ``Settings()`` read from the ``LOOPBREAK_*`` environment: the factory that
    ``loopbreak serve`` gives uvicorn (``api.app:create_app_from_env``), so that each worker
    process builds its own app, engine and writer."""
    return create_app(Settings())
