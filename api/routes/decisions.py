"""``POST /v1/decisions``: rank, explore and record a slate, or return the stored one for a
``decision_id`` already seen.

The handler is ``async``: validating the body, scoring, exploring and building the record run on
the event loop, the durable write is awaited without a thread, and the few blocking reads go to
the worker's bounded database threads (:meth:`loop.service.DecisionService.decide_async`)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request, Response, status
from pydantic_core import to_json
from starlette.datastructures import State

from api.deps import BlockingPool
from api.errors import refusal
from api.metrics import ServiceMetrics
from api.schemas import DecisionRequest, DecisionResponse
from api.settings import Settings
from loop.context import RequestContext
from loop.service import DecisionInput, DecisionService
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


def response_body(
    record: DecisionCreate, *, replayed: bool, activation: Activation | None = None
) -> bytes:
    """The HTTP answer from the stored decision record (and its activation row when deferred),
    as the JSON bytes of :class:`api.schemas.DecisionResponse`, fields in its order.

    Built straight from the record, which the log's rules validated when it was made or read,
    and serialized once by pydantic's own encoder (the same text as
    ``DecisionResponse(...).model_dump_json()``, which the tests check), rather than validated
    again into the response model and then serialized: the route returns these bytes as its
    response, so FastAPI does neither."""
    return to_json(
        {
            "decision_id": record.decision_id,
            "created_at": record.created_at,
            "user_id": record.user_id,
            "surface": record.surface,
            "policy": {
                "name": record.policy_name,
                "version": record.policy_version,
                "params": record.exploration,
            },
            "model_version": record.model_version,
            "marginals_exact": record.marginals_exact,
            "slate": [
                {
                    "position": p.position,
                    "item_id": p.item_id,
                    "score": p.score,
                    "propensity": p.propensity,
                    "cond_propensity": p.cond_propensity,
                    "prefix_propensity": p.prefix_propensity,
                    "explored": p.explored,
                }
                for p in record.slate
            ],
            "replayed": replayed,
            "deferred": activation is not None,
            "activation_expires_at": activation.expires_at if activation is not None else None,
        }
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
async def decide(body: DecisionRequest, request: Request) -> Response:
    answered = await answer(request.app.state, body)
    if isinstance(answered, Response):
        return answered
    status_code, content = answered
    return Response(content=content, status_code=status_code, media_type="application/json")


async def answer(state: State, body: DecisionRequest) -> tuple[int, bytes] | Response:
    """Decide for the validated ``body`` with the app's service: the status and JSON bytes of
    the answer, or the refusal of a ``k`` above ``Settings.max_k``. Shared by the route and
    the lean path (:mod:`api.lean_decisions`), so both answer alike."""
    settings: Settings = state.settings
    metrics: ServiceMetrics = state.metrics
    service: DecisionService = state.service  # taken once: a hot reload swaps the whole service
    blocking: BlockingPool = state.blocking
    if body.k > settings.max_k:
        return refusal(
            metrics,
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"k: must be <= {settings.max_k} (max_k); got {body.k}",
            field="k",
            kind="less_than_equal",
        )
    started = time.perf_counter()
    out = await service.decide_async(
        engine=state.engine,
        request=to_input(body),
        now=datetime.now(UTC),
        run_blocking=blocking.run,
        history=state.history_cache,
        activation_window=timedelta(seconds=settings.activation_seconds),
    )
    metrics.decision_seconds.observe(time.perf_counter() - started)
    metrics.decisions.labels(body.surface, str(out.replayed).lower()).inc()
    if not out.replayed:
        metrics.observe_decision(out.record, out.write_seconds)
    return (
        status.HTTP_200_OK if out.replayed else status.HTTP_201_CREATED,
        response_body(out.record, replayed=out.replayed, activation=out.activation),
    )
