"""The retraining job: logs → point-in-time training impressions → a new model version.

It registers the version in the ``model_version`` table with its training metrics, so that every
served decision's ``model_version`` can be traced to how it was made.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import Engine
from sqlmodel import Session

from api.logs import read_window, training_impressions
from fm_core import ItemCatalog, PopularityAffinityScorer
from proplog.store import record_model_version

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainResult:
    version: str
    path: Path
    impressions: int
    decisions: int
    plays: int


def retrain(
    *,
    engine: Engine,
    catalog: ItemCatalog,
    out: Path,
    version: str | None = None,
    until: datetime | None = None,
) -> RetrainResult:
    """Fit the baseline on every logged decision before ``until`` and save it to ``out``."""
    window = read_window(engine, until=until)
    if window.slates.empty:
        raise ValueError("the log holds no decisions to learn from")
    data = training_impressions(window)
    version = version or f"baseline-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    scorer = PopularityAffinityScorer(catalog)
    scorer.fit(data, model_version=version)
    path = scorer.save(out)
    result = RetrainResult(
        version=version,
        path=path,
        impressions=int(data.labels.size),
        decisions=len(window.requests),
        plays=int(np.sum(data.labels)),
    )
    with Session(engine) as session:
        record_model_version(
            session=session,
            version=version,
            kind="popularity_affinity",
            params={"l2": scorer.l2, "freshness_days": scorer.freshness_days},
            metrics={
                "impressions": result.impressions,
                "decisions": result.decisions,
                "plays": result.plays,
                "coef": [float(c) for c in scorer.coef_],
            },
            path=str(path),
        )
    logger.info("retrained %s on %d impressions -> %s", version, result.impressions, path)
    return result
