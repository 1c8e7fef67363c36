"""What a route depends on, read from ``request.app.state``: the settings, the metrics, a
database session, the decision service and the batch writer; and ``load_scorer``, which loads
the model the app starts with: the settings' model file, else the log's production version.

A route takes the decision service once, as a dependency, and uses that object from start to
end: a hot reload (:mod:`api.reload`) replaces ``app.state.service`` with a new service and
never changes one in place, so a request is never served by two models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlmodel import Session

from api.metrics import ServiceMetrics
from api.settings import Settings
from fm_core import Scorer
from loop.service import DecisionService
from proplog.batch_writer import BatchWriter


def load_scorer(settings: Settings, engine: Engine | None = None) -> Scorer:
    """The model file ``settings.model_path`` (written by ``loopbreak demo``/``retrain``); when
    there is none, the file of the production version in ``engine``'s log (``loopbreak models
    promote``)."""
    from fm_core import load_scorer_file  # either kind; torch only for an FM file

    if settings.model_path.exists():
        return load_scorer_file(settings.model_path)
    production = None
    if engine is not None:
        from loop.models import production_model

        production = production_model(engine)
    if production is not None and production[1] is not None and Path(production[1]).exists():
        return load_scorer_file(Path(production[1]))
    where = (
        "and no production version in the log"
        if production is None
        else f"and production version {production[0]} has no model file at {production[1]}"
    )
    raise FileNotFoundError(
        f"no model at {settings.model_path} {where}: run `loopbreak demo` or `loopbreak "
        "retrain` and `loopbreak models promote`, or pass --model"
    )


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
