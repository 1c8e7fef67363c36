"""One ranker for every surface beside a specialist per surface, on one FM and the same data.

Netflix's UniCoRn replaced the rankers of home, search and "more like this" with one model that
reads the surface as a feature. ``fit_unified_and_specialists`` trains, in one run:

- the FM once, on every user's history before the held-out decisions (``prepare_ranker_stage``);
- the **unified** ranker on every surface's impressions, the surface among its context features,
  each impression weighted by its exploration propensity (the training table's clipped,
  self-normalized 1/propensity), calibrated per surface (``fit_ranker``);
- one **specialist** per surface: the same ranker architecture and schedule, from the same
  initial weights (the same seed), trained on that surface's impressions only and calibrated on
  its held-out ones.

Every model shares the FM, its item side and the play counts, so a comparison of them on a
surface is a comparison of rankers alone. It is fm_core's: torch and numpy.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch

from fm_core.fm_scorer import FMRankerScorer
from fm_core.fm_scorer_fit import (
    FitReport,
    FMScorerConfig,
    fit_ranker,
    fit_report,
    prepare_ranker_stage,
)
from fm_core.impressions import TrainingImpressions
from fm_core.ranker import Ranker, RankerConfig
from fm_core.types import ItemCatalog

logger = logging.getLogger(__name__)


@dataclass
class SurfaceModels:
    """The unified scorer, a specialist scorer per surface, and each one's fit report."""

    unified: FMRankerScorer
    specialists: dict[str, FMRankerScorer]
    reports: dict[str, FitReport]
    """"unified" and each surface's specialist by surface name."""


def _scorer_with(base: FMRankerScorer, ranker: Ranker, version: str) -> FMRankerScorer:
    return FMRankerScorer(
        catalog=base.catalog,
        fm=base.fm,
        ranker=ranker,
        calibrator=base.calibrator,
        model_version=version,
        request_batch=base.request_batch,
        play_counts=base.play_counts,
    )


def fit_unified_and_specialists(
    data: TrainingImpressions,
    catalog: ItemCatalog,
    config: FMScorerConfig | None = None,
    *,
    surfaces: tuple[str, ...] | None = None,
    model_version: str = "fm",
) -> SurfaceModels:
    """Train the unified ranker and a specialist for each of ``surfaces`` (default: every
    surface among the impressions) on one FM; see the module docstring."""
    config = config or FMScorerConfig()
    stage = prepare_ranker_stage(data, catalog, config, model_version=model_version)
    present = tuple(sorted({str(s) for s in stage.surfaces}))
    surfaces = present if surfaces is None else tuple(surfaces)
    missing = [s for s in surfaces if s not in present]
    if missing:
        raise ValueError(f"surfaces {missing} have no impressions; the data has {present}")
    ranker_config = RankerConfig(**{**asdict(config.ranker), "d_fm": stage.scorer.fm.cfg.d_model})
    torch.manual_seed(config.ranker_train.seed)
    initial = Ranker(ranker_config)

    def fitted(keep: np.ndarray | None, version: str) -> tuple[FMRankerScorer, FitReport]:
        fit = fit_ranker(stage, copy.deepcopy(initial), config, keep=keep)
        scorer = _scorer_with(stage.scorer, fit.ranker, version)
        scorer.calibrator = fit.calibrator
        scorer.surface_calibrators = fit.surface_calibrators
        return scorer, fit_report(stage, fit)

    unified, unified_report = fitted(None, f"{model_version}-unified")
    reports = {"unified": unified_report}
    specialists = {}
    for surface in surfaces:
        specialists[surface], reports[surface] = fitted(
            stage.surfaces == surface, f"{model_version}-{surface}"
        )
        logger.info(
            "specialist %s: %d held-out pairs, ECE %.4f",
            surface, reports[surface].by_surface[surface]["pairs"],
            reports[surface].by_surface[surface]["ece"],
        )  # fmt: skip
    return SurfaceModels(unified=unified, specialists=specialists, reports=reports)
