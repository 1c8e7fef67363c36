"""The retraining job: logs → point-in-time training impressions → a new model version.

Two kinds of model: ``baseline`` (the popularity × genre-affinity logistic model) and ``fm`` (the
transformer foundation model with the DCN-v2 ranker, calibrated on the latest held-out decisions).
The job registers the version in the ``model_version`` table with its kind, parameters and
training metrics (for ``fm``: the held-out ECE and reliability table), so that every served
decision's ``model_version`` can be traced to how it was made.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine
from sqlmodel import Session

from fm_core import ItemCatalog, PopularityAffinityScorer, Scorer, TrainingImpressions
from loop.model_kinds import MODEL_KINDS
from loop.windows import read_window, training_impressions
from proplog.registry import record_model_version
from proplog.training_table import TrainingTableConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainResult:
    version: str
    path: Path
    impressions: int
    decisions: int
    plays: int


@dataclass(frozen=True)
class FittedModel:
    """A fitted scorer with what the registry records about it."""

    scorer: Scorer
    kind: str
    params: dict[str, Any]
    metrics: dict[str, Any]


def fit_model(
    data: TrainingImpressions,
    catalog: ItemCatalog,
    *,
    model: str,
    version: str,
    fm_config: Any = None,
) -> FittedModel:
    """Fit a ``model`` ("baseline" or "fm") on ``data``; ``fm_config`` is an FMScorerConfig."""
    if model == "baseline":
        scorer = PopularityAffinityScorer(catalog)
        scorer.fit(data, model_version=version)
        return FittedModel(
            scorer=scorer,
            kind="popularity_affinity",
            params={"l2": scorer.l2, "freshness_days": scorer.freshness_days},
            metrics={"coef": [float(c) for c in scorer.coef_]},
        )
    if model == "fm":
        from fm_core.fm_scorer_fit import FMScorerConfig, fit_fm_scorer  # imports torch

        config = fm_config or FMScorerConfig()
        fm_scorer, report = fit_fm_scorer(data, catalog, config, model_version=version)
        return FittedModel(
            scorer=fm_scorer,
            kind="fm_ranker",
            params={
                "fm": asdict(fm_scorer.fm.cfg),
                "ranker": asdict(fm_scorer.ranker.cfg),
                "holdout_share": config.holdout_share,
                "calibration": config.calibration,
                "search_weight": config.search_weight,
            },
            metrics=report.to_dict(),
        )
    raise ValueError(f"model must be one of {MODEL_KINDS}; got {model!r}")


def retrain(
    *,
    engine: Engine,
    catalog: ItemCatalog,
    out: Path,
    version: str | None = None,
    until: datetime | None = None,
    model: str = "baseline",
    fm_config: Any = None,
    table: TrainingTableConfig | None = None,
) -> RetrainResult:
    """Fit a ``model`` ("baseline" or "fm") on every logged decision before ``until`` and save
    it to ``out``; the version is registered with its training window (its first and last
    decision), which ``loopbreak ope report`` and ``ope gate`` refuse to evaluate it on.
    ``table`` sets the training table's weights (inverse-propensity clip and self-normalization,
    the search-play weight α, negatives); None takes its defaults."""
    if model not in MODEL_KINDS:
        raise ValueError(f"model must be one of {MODEL_KINDS}; got {model!r}")
    window = read_window(engine, until=until)
    if window.slates.empty:
        raise ValueError("the log holds no decisions to learn from")
    data = training_impressions(window, table)
    version = version or f"{model}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    fitted = fit_model(data, catalog, model=model, version=version, fm_config=fm_config)
    path = fitted.scorer.save(out)  # type: ignore[attr-defined]  # both kinds save themselves
    result = RetrainResult(
        version=version,
        path=path,
        impressions=int(data.labels.size),
        decisions=len(window.requests),
        plays=int(np.sum(data.labels)),
    )
    times = window.decisions["created_at"]
    training_window = {"first": times.min().isoformat(), "last": times.max().isoformat()}
    with Session(engine) as session:
        record_model_version(
            session=session,
            version=version,
            kind=fitted.kind,
            params={**fitted.params, "training_window": training_window},
            metrics={
                "impressions": result.impressions,
                "decisions": result.decisions,
                "plays": result.plays,
                **fitted.metrics,
            },
            path=str(path),
        )
    logger.info("retrained %s on %d impressions -> %s", version, result.impressions, path)
    return result
