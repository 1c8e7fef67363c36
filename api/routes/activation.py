"""``POST /v1/decisions/{decision_id}/activate``: a deferred decision's slate was shown.

A decision asked for with ``"deferred": true`` is logged at once but counts as shown (for OPE,
training and exports) only once this route is called before its ``activation_expires_at``
(:mod:`proplog.activation`). The body is empty: none, or ``{}``. Activating twice answers the
first activation (200, ``replayed: true``). An unknown ``decision_id`` answers 404; a decision
that was not deferred, or whose activation expired, answers 409 naming ``decision_id``; a
malformed id answers 422. Each outcome is counted in ``loopbreak_activations_total{outcome}``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine
from sqlmodel import Session

from api.deps import MetricsDep
from api.schemas import ActivationResponse
from proplog.activation import ActivationConflictError, ActivationResult, activate

router = APIRouter()


def _activate(engine: Engine, decision_id: str, now: datetime) -> ActivationResult:
    """The activation in a session of its own (blocking: run in the worker's database threads)."""
    with Session(engine) as session:
        return activate(session=session, decision_id=decision_id, now=now)


class EmptyBody(BaseModel):
    """An activation carries nothing; any field is refused (422)."""

    model_config = ConfigDict(extra="forbid")


@router.post(
    "/v1/decisions/{decision_id}/activate",
    response_model=ActivationResponse,
    responses={
        404: {"description": "decision_id is not a stored decision"},
        409: {
            "description": "the decision was not deferred (it counted as shown when it was "
            "made), or its activation expired"
        },
    },
)
async def activate_decision(
    decision_id: uuid.UUID,
    request: Request,
    metrics: MetricsDep,
    body: Annotated[EmptyBody | None, Body()] = None,
) -> ActivationResponse:
    try:
        result = await request.app.state.blocking.run(
            _activate, request.app.state.engine, str(decision_id), datetime.now(UTC)
        )
    except ActivationConflictError as exc:
        metrics.activations.labels(exc.reason).inc()
        raise
    metrics.activations.labels("replayed" if result.replayed else "activated").inc()
    return ActivationResponse(
        decision_id=result.decision_id,
        activated_at=result.activated_at,
        activated=True,
        replayed=result.replayed,
    )
