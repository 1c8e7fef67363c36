"""``POST /v1/decisions``: rank, explore and record a slate, or return the stored one for a
``decision_id`` already seen."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse

from api.deps import MetricsDep, ServiceDep, SessionDep, SettingsDep
from api.errors import refusal
from api.schemas import DecisionRequest, DecisionResponse, PolicyInfo, SlatePosition
from loop.context import RequestContext
from loop.service import DecisionInput
from proplog.activation import Activation
from proplog.schema import DecisionCreate

router = APIRouter()


def to_input(body: DecisionRequest) -> DecisionInput:
    """The service's request from the HTTP body."""
    context = body.context
    return DecisionInput(
        context=RequestContext(
            user_id=body.user_id,
            surface=body.surface,
            device=context.device,
            country=context.country,
            local_time=context.local_time.isoformat() if context.local_time else None,
            query=context.query,
            source_item=context.source_item,
        ),
        k=body.k,
        decision_id=str(body.decision_id) if body.decision_id else None,
        candidates=tuple(body.candidates) if body.candidates is not None else None,
        deferred=body.deferred,
    )


def to_response(
    record: DecisionCreate, *, replayed: bool, activation: Activation | None = None
) -> DecisionResponse:
    """The HTTP answer from the stored decision record (and its activation row when deferred)."""
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
        slate=[SlatePosition.model_validate(p, from_attributes=True) for p in record.slate],
        replayed=replayed,
        deferred=activation is not None,
        activation_expires_at=activation.expires_at if activation is not None else None,
    )


@router.post(
    "/v1/decisions",
    response_model=DecisionResponse,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {
            "model": DecisionResponse,
            "description": "decision_id already stored for the same request: the stored decision",
        },
        409: {
            "description": "decision_id already stored for another request; detail names "
            "the first field that differs"
        },
    },
)
def decide(
    body: DecisionRequest,
    session: SessionDep,
    service: ServiceDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    response: Response,
) -> DecisionResponse | JSONResponse:
    if body.k > settings.max_k:
        return refusal(
            metrics,
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"k: must be <= {settings.max_k} (max_k); got {body.k}",
            field="k",
            kind="less_than_equal",
        )
    started = time.perf_counter()
    out = service.decide(
        session=session,
        request=to_input(body),
        now=datetime.now(UTC),
        activation_window=timedelta(seconds=settings.activation_seconds),
    )
    metrics.decision_seconds.observe(time.perf_counter() - started)
    metrics.decisions.labels(body.surface, str(out.replayed).lower()).inc()
    if not out.replayed:
        metrics.observe_decision(out.record, out.write_seconds)
    if out.replayed:
        response.status_code = status.HTTP_200_OK
    return to_response(out.record, replayed=out.replayed, activation=out.activation)
