"""What a route depends on, read from ``request.app.state``: the settings, the metrics, a
database session, the decision service and the batch writer; and ``starting_model``, the model
the app starts with: the settings' model file, else the log's production version
(``load_scorer``), else, when the log has neither a production version nor a model file but has
a catalog (``loopbreak catalog load``), the cold start: an unfitted
:class:`fm_core.PopularityAffinityScorer` over that catalog, version ``cold-start``, which the app
serves with a uniform policy until a version is promoted.

A route takes the decision service once, as a dependency, and uses that object from start to
end: a hot reload (:mod:`api.reload`) replaces ``app.state.service`` with a new service and
never changes one in place, so a request is never served by two models."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
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

COLD_START_VERSION = "cold-start"
"""The model version of the cold-start scorer (``/healthz`` and every decision it serves)."""


@dataclass(frozen=True)
class StartingModel:
    """The model the app starts with; ``cold_start``: the unfitted scorer over the log's
    catalog, to be served with a uniform policy."""

    scorer: Scorer
    cold_start: bool = False


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


def starting_model(settings: Settings, engine: Engine) -> StartingModel:
    """:func:`load_scorer`'s model; without a model file and a production version, the cold
    start over the log's catalog; with no catalog either, ``FileNotFoundError`` saying what to
    do."""
    if settings.model_path.exists():
        return StartingModel(load_scorer(settings, engine))
    from loop.models import production_model

    if production_model(engine) is not None:
        return StartingModel(load_scorer(settings, engine))  # its file, or its error
    from fm_core import PopularityAffinityScorer
    from loop.catalog import catalog_from_log

    catalog = catalog_from_log(engine)
    if catalog is None:
        raise FileNotFoundError(
            f"no model at {settings.model_path}, no production version and no catalog in the "
            "log: run `loopbreak demo` or `loopbreak retrain` and `loopbreak models promote`, "
            "pass --model, or load a catalog with `loopbreak catalog load FILE` to start cold"
        )
    scorer = PopularityAffinityScorer(catalog, model_version=COLD_START_VERSION)
    return StartingModel(scorer, cold_start=True)


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
