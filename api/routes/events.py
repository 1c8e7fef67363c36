"""``POST /v1/events``: record what a user did with an item, idempotently by ``event_id``."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Response, status
from sqlmodel import Session

from api.deps import MetricsDep, SessionDep, WriterDep
from api.schemas import EventRequest, EventResponse
from proplog.batch_writer import BatchWriter
from proplog.errors import ConflictError
from proplog.store import get_event, record_event
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


def write_event(body: EventRequest, session: Session, writer: BatchWriter | None) -> WriteResult:
    """Record the body's event, idempotently on ``event_id``.

    A time the server stamped is not part of what the client sent, so it must not make a retry
    differ from the first write: retries race (each stamps its own time, and neither sees the
    other's row before it writes), and only the log can tell which one won. So when the log finds
    the ``event_id`` stored with another ``created_at``, and the client sent none, the event is
    written again with the stored time: that is a replay (``created=False``) when everything the
    client sent matches, and a ``ConflictError`` naming the field that differs otherwise."""

    def write(event: dict[str, Any]) -> WriteResult:
        if writer is not None:
            return writer.record_event(event)
        return record_event(session=session, event=event)

    event = to_event(body, now=datetime.now(UTC))
    try:
        return write(event)
    except ConflictError as exc:
        if body.created_at is not None or exc.field != "created_at":
            raise
        stored = get_event(session=session, event_id=body.event_id)
        if stored is None:  # pragma: no cover - a stored event is never deleted
            raise
        return write({**event, "created_at": stored.created_at})


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
def take_event(
    body: EventRequest,
    session: SessionDep,
    writer: WriterDep,
    metrics: MetricsDep,
    response: Response,
) -> EventResponse:
    started = time.perf_counter()
    result = write_event(body, session, writer)
    metrics.write_seconds.labels("event").observe(time.perf_counter() - started)
    metrics.events.labels(body.kind, body.source, str(result.created).lower()).inc()
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return EventResponse(event_id=body.event_id, created=result.created)
