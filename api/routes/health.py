"""``GET /healthz`` (what is served: model version, policy, database with the password masked,
experiment arms) and ``GET /metrics`` (Prometheus)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import MetricsDep, ServiceDep, SettingsDep
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


@router.get("/healthz")
def health(service: ServiceDep, settings: SettingsDep) -> dict[str, Any]:
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
def prometheus_metrics(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
