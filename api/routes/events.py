"""``POST /v1/events``: record what a user did with an item, idempotently by ``event_id``.

The handler is ``async``: with the batch writer it awaits the write's future without a thread;
without one the write runs in the worker's bounded database threads, in a session of its own. An
event written (not a replay) is added to the worker's history cache (:mod:`loop.history_cache`)
once it is durable, so the user's next decision on this worker sees it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response, status
from sqlalchemy import Engine
from sqlmodel import Session

from api.deps import BlockingPool
from api.metrics import ServiceMetrics
from api.schemas import EventRequest, EventResponse
from loop.history_cache import HistoryCache
from proplog.batch_writer import BatchWriter
from proplog.errors import ConflictError
from proplog.schema import EventCreate
from proplog.store import get_event, record_validated_batch, validated_event
from proplog.writes import WriteResult

router = APIRouter()


def to_event(body: EventRequest, *, now: datetime) -> dict[str, Any]:
    """The log's event from the HTTP body: a plain dict, which the store validates (naming the
    field in a ``LogValidationError``). Without a client time it takes the server's, ``now``."""
    return {
        "event_id": body.event_id,
        "created_at": body.created_at or now,
        "user_id": body.user_id,
        "item_id": body.item_id,
        "kind": body.kind,
        "value": body.value,
        "source": body.source,
        "decision_id": str(body.decision_id) if body.decision_id else None,
        "position": body.position,
    }


def _write_direct(engine: Engine, event: EventCreate) -> WriteResult:
    """One validated event in a transaction of its own (blocking)."""
    with Session(engine) as session:
        return record_validated_batch(session=session, decisions=(), events=[event])[1][0]


def _stored_time(engine: Engine, event_id: str) -> datetime | None:
    with Session(engine) as session:
        stored = get_event(session=session, event_id=event_id)
    return None if stored is None else stored.created_at


async def write_event(
    body: EventRequest,
    engine: Engine,
    writer: BatchWriter | None,
    blocking: BlockingPool,
    cache: HistoryCache | None = None,
) -> WriteResult:
    """Record the body's event, idempotently on ``event_id``; a new one goes into ``cache``.

    A time the server stamped is not part of what the client sent, so it must not make a retry
    differ from the first write: retries race (each stamps its own time, and neither sees the
    other's row before it writes), and only the log can tell which one won. So when the log finds
    the ``event_id`` stored with another ``created_at``, and the client sent none, the event is
    written again with the stored time: that is a replay (``created=False``) when everything the
    client sent matches, and a ``ConflictError`` naming the field that differs otherwise."""

    async def write(event: dict[str, Any]) -> WriteResult:
        record = validated_event(event)  # LogValidationError names the field
        if writer is not None:
            result = await asyncio.wrap_future(writer.submit_validated(record))
        else:
            result = await blocking.run(_write_direct, engine, record)
        if result.created and cache is not None:
            cache.observe(record)
        return result

    event = to_event(body, now=datetime.now(UTC))
    try:
        return await write(event)
    except ConflictError as exc:
        if body.created_at is not None or exc.field != "created_at":
            raise
        stored = await blocking.run(_stored_time, engine, body.event_id)
        if stored is None:  # pragma: no cover - a stored event is never deleted
            raise
        return await write({**event, "created_at": stored})


@router.post(
    "/v1/events",
    response_model=EventResponse,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {
            "model": EventResponse,
            "description": "event_id already stored with the same content: a no-op",
        },
        404: {"description": "decision_id is not a stored decision"},
        409: {
            "description": "event_id already stored with different content, or decision_id "
            "names a deferred decision that was not activated"
        },
    },
)
async def take_event(body: EventRequest, request: Request, response: Response) -> EventResponse:
    state = request.app.state
    metrics: ServiceMetrics = state.metrics
    started = time.perf_counter()
    result = await write_event(
        body, state.engine, state.writer, state.blocking, state.history_cache
    )
    metrics.write_seconds.labels("event").observe(time.perf_counter() - started)
    metrics.events.labels(body.kind, body.source, str(result.created).lower()).inc()
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return EventResponse(event_id=body.event_id, created=result.created)
