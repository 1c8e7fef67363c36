"""``POST /v1/events``: record what a user did with an item, idempotently by ``event_id``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Response, status
from sqlmodel import Session

from api.deps import MetricsDep, SessionDep, WriterDep
from api.schemas import EventRequest, EventResponse
from proplog.store import get_event, record_event

router = APIRouter()


def to_event(body: EventRequest, session: Session) -> dict[str, Any]:
    """The log's event from the HTTP body: a plain dict, which the store validates (naming the
    field in a ``LogValidationError``). Without a client time it takes the server's, or the
    stored event's on a retry, so that a retry does not differ from the first write by its time."""
    event: dict[str, Any] = {
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
        stored = get_event(session=session, event_id=body.event_id)
        if stored is not None:
            event["created_at"] = stored.created_at
    return event


@router.post(
    "/v1/events",
    response_model=EventResponse,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "event_id already stored with the same content: a no-op"},
        404: {"description": "decision_id is not a stored decision"},
        409: {"description": "event_id already stored with different content"},
    },
)
def take_event(
    body: EventRequest,
    session: SessionDep,
    writer: WriterDep,
    metrics: MetricsDep,
    response: Response,
) -> EventResponse:
    event = to_event(body, session)
    result = (
        writer.record_event(event)
        if writer is not None
        else record_event(session=session, event=event)
    )
    metrics.events.labels(body.kind, body.source, str(result.created).lower()).inc()
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return EventResponse(event_id=body.event_id, created=result.created)
