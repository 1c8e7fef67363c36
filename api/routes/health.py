"""``GET /healthz`` (the model being served) and ``GET /metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import MetricsDep, ServiceDep

router = APIRouter()


@router.get("/healthz")
def health(service: ServiceDep) -> dict[str, str]:
    return {"status": "ok", "model_version": service.scorer.model_version}


@router.get("/metrics")
def prometheus_metrics(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
