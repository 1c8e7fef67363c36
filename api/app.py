"""The FastAPI application: decisions with exploration enabled, and events.

``create_app(settings)`` builds an app; nothing connects to a database or loads a model at
import time. A decision is recorded (committed, and with SQLite's synchronous=FULL, on disk)
before its answer is sent. By default (``Settings.group_commit``) each worker's decisions and
events go through one :class:`proplog.batch_writer.BatchWriter`, so that the requests in flight
share a durable commit instead of one fsync each.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine
from sqlmodel import Session

from api.metrics import ServiceMetrics
from api.schemas import (
    DecisionRequest,
    DecisionResponse,
    EventRequest,
    EventResponse,
    PolicyInfo,
)
from api.settings import Settings
from explore import Policy
from fm_core import Scorer
from loop.experiment import load_experiment
from loop.service import DecisionInput, DecisionService, NoCandidatesError, UnknownCandidatesError
from proplog.batch_writer import BatchWriter
from proplog.engine import init_db, make_engine, shares_one_connection
from proplog.errors import ConflictError, LogValidationError, UnknownDecisionError
from proplog.schema import DecisionCreate
from proplog.store import get_event, record_event

logger = logging.getLogger(__name__)


# Domain errors and how the API answers them: (status, the field to name when the error does not
# carry its own ``field``).
_REFUSALS: dict[type[Exception], tuple[int, str | None]] = {
    LogValidationError: (status.HTTP_422_UNPROCESSABLE_CONTENT, None),
    UnknownCandidatesError: (status.HTTP_422_UNPROCESSABLE_CONTENT, "candidates"),
    NoCandidatesError: (status.HTTP_422_UNPROCESSABLE_CONTENT, "candidates"),
    UnknownDecisionError: (status.HTTP_404_NOT_FOUND, "decision_id"),
    ConflictError: (status.HTTP_409_CONFLICT, None),
}


def get_session(request: Request) -> Iterator[Session]:
    """One session per request on the app's engine."""
    with Session(request.app.state.engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def _location(loc: tuple[object, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def _problem(status_code: int, message: str, **extra: object) -> JSONResponse:
    return JSONResponse(status_code=status_code, content={"message": message, **extra})


def load_scorer(settings: Settings) -> Scorer:
    """The model named by ``settings.model_path`` (written by ``loopbreak demo``/``retrain``)."""
    if not settings.model_path.exists():
        raise FileNotFoundError(
            f"no model at {settings.model_path}: run `loopbreak demo` or `loopbreak retrain`, "
            "or pass --model"
        )
    from fm_core import load_scorer_file  # either kind; torch only for an FM file

    return load_scorer_file(settings.model_path)


def _response(record: DecisionCreate, *, replayed: bool) -> DecisionResponse:
    return DecisionResponse(
        decision_id=record.decision_id,
        created_at=record.created_at,
        user_id=record.user_id,
        surface=record.surface,
        policy=PolicyInfo(
            name=record.policy_name, version=record.policy_version, params=record.exploration
        ),
        model_version=record.model_version,
        marginals_exact=record.marginals_exact,
        slate=record.slate,
        replayed=replayed,
    )


def create_app(
    settings: Settings | None = None,
    *,
    scorer: Scorer | None = None,
    policy: Policy | None = None,
    engine: Engine | None = None,
) -> FastAPI:
    """Build the app. ``scorer``, ``policy`` and ``engine`` default to what ``settings`` says."""
    settings = settings or Settings()
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = engine or make_engine(settings.database_url)
        init_db(db)
        experiment = load_experiment(settings.experiment) if settings.experiment else None
        model = scorer or (experiment.control.scorer if experiment else load_scorer(settings))
        chosen = policy or settings.exploration_policy()
        app.state.engine = db
        writer = (
            BatchWriter(db, max_wait_s=settings.group_commit_wait_ms / 1000.0)
            if settings.group_commit and not shares_one_connection(db)
            else None
        )
        app.state.writer = writer
        app.state.service = DecisionService(
            scorer=model,
            policy=chosen,
            history_limit=settings.history_limit,
            experiment=experiment,
            writer=writer,
        )
        logger.info(
            "serving model %s with %s %s on %s",
            model.model_version,
            chosen.name,
            chosen.params(),
            settings.safe_database_url,
        )
        try:
            yield
        finally:
            if writer is not None:
                writer.close()  # writes what is queued; every request was answered already
            if engine is None:
                db.dispose()

    app = FastAPI(title="loopbreak", version="0.1.0", lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        message = f"{_location(tuple(first['loc']))}: {first['msg']}"
        metrics.rejected.labels("422").inc()
        detail = [
            {"field": _location(tuple(e["loc"])), "message": e["msg"], "type": e["type"]}
            for e in errors
        ]
        return _problem(status.HTTP_422_UNPROCESSABLE_CONTENT, message, detail=detail)

    async def refuse(_: Request, exc: Exception) -> JSONResponse:
        status_code, field = next(v for t, v in _REFUSALS.items() if isinstance(exc, t))
        metrics.rejected.labels(str(status_code)).inc()
        named = getattr(exc, "field", None) or field
        return _problem(status_code, str(exc), **({"field": named} if named else {}))

    for error_type in _REFUSALS:
        app.add_exception_handler(error_type, refuse)

    @app.post(
        "/v1/decisions",
        response_model=DecisionResponse,
        status_code=status.HTTP_201_CREATED,
        responses={200: {"description": "decision_id already stored: the stored decision"}},
    )
    def decide(
        body: DecisionRequest, session: SessionDep, response: Response
    ) -> DecisionResponse | JSONResponse:
        if body.k > settings.max_k:
            metrics.rejected.labels("422").inc()
            return _problem(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"k: must be <= {settings.max_k} (max_k); got {body.k}",
                field="k",
            )
        started = time.perf_counter()
        context = body.context
        out = app.state.service.decide(
            session=session,
            request=DecisionInput(
                user_id=body.user_id,
                surface=body.surface,
                k=body.k,
                decision_id=str(body.decision_id) if body.decision_id else None,
                device=context.device,
                country=context.country,
                local_time=context.local_time.isoformat() if context.local_time else None,
                query=context.query,
                source_item=context.source_item,
                candidates=tuple(body.candidates) if body.candidates is not None else None,
            ),
            now=datetime.now(UTC),
        )
        metrics.decision_seconds.observe(time.perf_counter() - started)
        metrics.decisions.labels(body.surface, str(out.replayed).lower()).inc()
        if out.replayed:
            response.status_code = status.HTTP_200_OK
        return _response(out.record, replayed=out.replayed)

    @app.post(
        "/v1/events",
        response_model=EventResponse,
        status_code=status.HTTP_201_CREATED,
        responses={
            200: {"description": "event_id already stored with the same content: a no-op"},
            404: {"description": "decision_id is not a stored decision"},
            409: {"description": "event_id already stored with different content"},
        },
    )
    def take_event(body: EventRequest, session: SessionDep, response: Response) -> EventResponse:
        # A plain dict: the store validates it and names the field in a LogValidationError.
        event = {
            "event_id": body.event_id,
            "created_at": body.created_at or datetime.now(UTC),
            "user_id": body.user_id,
            "item_id": body.item_id,
            "kind": body.kind,
            "value": body.value,
            "source": body.source,
            "decision_id": str(body.decision_id) if body.decision_id else None,
            "position": body.position,
        }
        if body.created_at is None:
            # A retry without a client time must not differ from the first write by its time.
            stored = get_event(session=session, event_id=body.event_id)
            if stored is not None:
                event["created_at"] = stored.created_at
        writer = app.state.writer
        result = (
            writer.record_event(event)
            if writer is not None
            else record_event(session=session, event=event)
        )
        metrics.events.labels(body.kind, body.source, str(result.created).lower()).inc()
        if not result.created:
            response.status_code = status.HTTP_200_OK
        return EventResponse(event_id=body.event_id, created=result.created)

    @app.get("/healthz")
    def health() -> dict[str, str]:
        return {"status": "ok", "model_version": app.state.service.scorer.model_version}

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
