"""``GET /healthz`` (what is served: model version, policy, database with the password masked,
experiment arms; 503 once the worker's log writer has stopped) and ``GET /metrics``
(Prometheus)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import MetricsDep, ServiceDep, SettingsDep, WriterDep
from api.errors import error_body, retry_after_s
from api.schemas import ErrorBody
from api.settings import Settings
from loop.service import DecisionService

router = APIRouter()


def serving_info(service: DecisionService, settings: Settings) -> dict[str, Any]:
    """What the app serves: model version, policy, database (password masked) and arms."""
    experiment = service.experiment
    return {
        "model_version": service.scorer.model_version,
        "policy": {
            "name": service.policy.name,
            "version": service.policy.version,
            "params": service.policy.params(),
        },
        "database": settings.safe_database_url,
        "arms": (
            [
                {"arm": live.label, "model_version": live.scorer.model_version}
                for live in experiment.arms.values()
            ]
            if experiment
            else []
        ),
    }


@router.get(
    "/healthz",
    response_model=dict[str, Any],
    responses={
        503: {
            "model": ErrorBody,
            "description": "the worker's log writer stopped: it can record nothing until it is "
            "restarted",
        }
    },
)
async def health(
    service: ServiceDep, settings: SettingsDep, writer: WriterDep
) -> dict[str, Any] | JSONResponse:
    """What is served; 503 once the worker's batch writer has stopped, so that a supervisor
    (a Kubernetes liveness probe, say) restarts a worker that can no longer log."""
    if writer is not None and not writer.alive:
        message = "the worker's log writer stopped; restart the worker"
        return JSONResponse(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            content=error_body(message, field="database", kind="log_writer_stopped"),
            headers={"Retry-After": str(retry_after_s(settings.db_timeout_seconds))},
        )
    return {"status": "ok", **serving_info(service, settings)}


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={
        200: {
            "description": "Prometheus's text exposition format (version 0.0.4)",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def prometheus_metrics(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
