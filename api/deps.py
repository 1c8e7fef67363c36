"""What a route depends on, read from ``request.app.state``: the settings, the metrics, a
database session, the decision service and the batch writer; and ``load_scorer``, which loads
the model the settings name when the app starts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from api.metrics import ServiceMetrics
from api.settings import Settings
from fm_core import Scorer
from loop.service import DecisionService
from proplog.batch_writer import BatchWriter


def load_scorer(settings: Settings) -> Scorer:
    """The model named by ``settings.model_path`` (written by ``loopbreak demo``/``retrain``)."""
    if not settings.model_path.exists():
        raise FileNotFoundError(
            f"no model at {settings.model_path}: run `loopbreak demo` or `loopbreak retrain`, "
            "or pass --model"
        )
    from fm_core import load_scorer_file  # either kind; torch only for an FM file

    return load_scorer_file(settings.model_path)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


def get_session(request: Request) -> Iterator[Session]:
    """One session per request on the app's engine."""
    with Session(request.app.state.engine) as session:
        yield session


def get_service(request: Request) -> DecisionService:
    return request.app.state.service


def get_writer(request: Request) -> BatchWriter | None:
    """The worker's batch writer; None when each request commits on its own."""
    return request.app.state.writer


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
SessionDep = Annotated[Session, Depends(get_session)]
ServiceDep = Annotated[DecisionService, Depends(get_service)]
WriterDep = Annotated[BatchWriter | None, Depends(get_writer)]
