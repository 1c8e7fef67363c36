"""Fitting the FM scorer: ``fit_fm_scorer`` builds an ``FMRankerScorer`` from
``TrainingImpressions`` and reports what it measured (``FitReport``).

1. the decisions are cut by time: the last ``holdout_share`` of them are held out;
2. the FM trains on every user's events strictly before the cut (the union of the decisions'
   point-in-time histories), each event weighted by its source: a recommendation play gets the
   sample weight of its played impression when the impressions carry weights, a search play
   ``search_weight``, anything else 1 (the FM never sees a held-out event, so the held-out
   decisions measure the whole model out of time);
3. the ranker trains on the impressions before the cut, keeping the epoch with the lowest
   held-out loss;
4. the calibrator is fitted on the held-out impressions' logits (at their logged positions),
   pooled and per surface (``fm_core.surface_calibration``: a surface with enough held-out plays
   gets its own), and the reported ECE and reliability table come from two-fold cross-fitting on
   those rows, so they are out of sample.

Steps 1–2 are ``prepare_ranker_stage`` and steps 3–4 ``fit_ranker``, so that several rankers (the
unified one and per-surface specialists, ``fm_core.ranker_surfaces``) train on one FM.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from fm_core.calibration import (
    Calibrator,
    cross_fitted,
    expected_calibration_error,
    fit_calibrator,
    log_loss,
    reliability_table,
)
from fm_core.fm_scorer import FMRankerScorer
from fm_core.impressions import TrainingImpressions, plays_before, user_sequences
from fm_core.model import FMConfig, FoundationModel
from fm_core.ranker import (
    Ranker,
    RankerConfig,
    RankerInputs,
    RankerTrainConfig,
    RankerTrainResult,
    ranker_logits,
    train_ranker,
)
from fm_core.surface_calibration import fit_surface_calibrators
from fm_core.train_fm import TrainConfig, train_fm
from fm_core.types import ItemCatalog
from fm_core.warm_start import warm_start_from

logger = logging.getLogger(__name__)


def _default_fm() -> FMConfig:
    return FMConfig(d_model=32, n_layers=2, n_heads=2, max_len=64, dropout=0.1)


def _default_fm_train() -> TrainConfig:
    return TrainConfig(epochs=6, batch_size=32, lr=3e-3, progress=False)


@dataclass
class FMScorerConfig:
    """How ``fit_fm_scorer`` builds the scorer (the FM and ranker shapes are sized at fit)."""

    fm: FMConfig = field(default_factory=_default_fm)
    fm_train: TrainConfig = field(default_factory=_default_fm_train)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    ranker_train: RankerTrainConfig = field(default_factory=RankerTrainConfig)
    holdout_share: float = 0.2
    calibration: str = "auto"
    search_weight: float = 1.0
    request_batch: int = 256

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout_share < 1.0:
            raise ValueError(f"holdout_share must be in (0, 1); got {self.holdout_share}")
        if self.search_weight < 0:
            raise ValueError(f"search_weight must be >= 0; got {self.search_weight}")
        if self.request_batch < 1:
            raise ValueError(f"request_batch must be >= 1; got {self.request_batch}")


@dataclass(frozen=True)
class FitReport:
    """What the fit measured; ``to_dict`` is JSON-ready (for the model registry)."""

    cut_time: float
    train_pairs: int
    holdout_pairs: int
    holdout_plays: int
    fm_sequences: int
    fm_epochs: list[dict[str, float]]
    ranker_epochs: list[dict[str, float | None]]
    ranker_best_epoch: int
    calibration: str
    log_loss_raw: float
    log_loss: float
    ece_raw: float
    ece: float
    reliability: list[dict[str, float]]
    seconds: float
    by_surface: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per surface of the held-out rows: pairs, plays, whether it has its own calibrator, and
    the cross-fitted ECE with its calibrator (``ece``) and with the pooled one."""

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON values; a non-finite number (e.g. top-1 accuracy under
        sampled softmax) becomes None, since JSON stores have no NaN."""
        return _finite(asdict(self))


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _holdout_cut(data: TrainingImpressions, share: float) -> float:
    times = np.sort([r.time for r in data.requests])
    return float(times[min(int(np.floor((1.0 - share) * times.size)), times.size - 1)])


@dataclass
class RankerStage:
    """What a ranker trains on once the FM is trained: the scorer (its FM and item side), the
    ranker inputs of every impression, their labels, weights, surfaces and held-out mask."""

    scorer: FMRankerScorer
    inputs: RankerInputs
    labels: np.ndarray
    weights: np.ndarray | None
    surfaces: np.ndarray
    held: np.ndarray
    cut: float
    fm_sequences: int
    fm_epochs: list[dict[str, float]]
    started: float


def prepare_ranker_stage(
    data: TrainingImpressions,
    catalog: ItemCatalog,
    config: FMScorerConfig,
    *,
    model_version: str = "fm",
    previous: FoundationModel | None = None,
) -> RankerStage:
    """Steps 1 and 2 of the module docstring: hold out the latest decisions, train the FM, and
    build the ranker inputs of every impression (the scorer's ranker is still untrained)."""
    started = time.perf_counter()
    labels = np.asarray(data.labels, dtype=np.float64)
    if labels.size == 0:
        raise ValueError("no impressions to learn from")
    weights = None if data.weights is None else np.asarray(data.weights, dtype=np.float64)
    cut = _holdout_cut(data, config.holdout_share)
    request_times = np.array([r.time for r in data.requests], dtype=np.float64)
    held = request_times[data.request_index] >= cut
    if held.all() or not held.any():
        raise ValueError("the impressions span too little time to hold out a share by time")
    for name, rows in (("training", ~held), ("held-out", held)):
        if labels[rows].sum() <= 0:
            raise ValueError(f"the {name} impressions hold no play: nothing to learn from")

    sequences = user_sequences(data, before=cut, search_weight=config.search_weight)
    if not sequences:
        raise ValueError("no user has an event before the held-out decisions to train the FM")
    if previous is None:
        fm_cfg, start = config.fm.with_catalog(catalog), None
    else:
        last_event = max(float(np.max(h.times)) for h, _ in sequences if len(h))
        start, warm = warm_start_from(previous, catalog, age_reference=last_event)
        fm_cfg = start.cfg
        logger.info(
            "warm start from the previous FM: %d items kept, %d added", warm.n_kept, warm.n_added
        )
    fm_result = train_fm(sequences, catalog, fm_cfg, config.fm_train, model=start)
    fm = fm_result.model
    ranker = Ranker(RankerConfig(**{**asdict(config.ranker), "d_fm": fm_cfg.d_model}))
    known = catalog.known(data.play_item_ids)
    play_rows = catalog.rows(np.asarray(data.play_item_ids)[known])
    play_times = np.asarray(data.play_times, dtype=np.float64)[known]
    scorer = FMRankerScorer(
        catalog=catalog,
        fm=fm,
        ranker=ranker,
        calibrator=Calibrator(),
        model_version=model_version,
        request_batch=config.request_batch,
        play_counts=np.bincount(play_rows, minlength=catalog.n_items).astype(np.float64),
    )
    item_rows = catalog.rows(data.item_ids)
    all_inputs = scorer.inputs(
        data.requests,
        data.request_index,
        item_rows,
        np.asarray(data.positions),
        popularity=plays_before(
            play_rows, play_times, item_rows, request_times[data.request_index]
        ),
    )
    request_surfaces = np.array([r.surface or "" for r in data.requests], dtype=object)
    return RankerStage(
        scorer=scorer,
        inputs=all_inputs,
        labels=labels,
        weights=weights,
        surfaces=request_surfaces[data.request_index],
        held=held,
        cut=cut,
        fm_sequences=len(sequences),
        fm_epochs=[asdict(m) for m in fm_result.metrics],
        started=started,
    )


@dataclass
class RankerFit:
    """A ranker trained on some of a stage's impressions, with its calibrators and the held-out
    rows it was calibrated on (``logits``, ``rows``)."""

    ranker: Ranker
    calibrator: Calibrator
    surface_calibrators: dict[str, Calibrator]
    result: RankerTrainResult
    rows: np.ndarray
    logits: np.ndarray
    train_pairs: int


def fit_ranker(
    stage: RankerStage,
    ranker: Ranker,
    config: FMScorerConfig,
    *,
    keep: np.ndarray | None = None,
) -> RankerFit:
    """Steps 3 and 4: train ``ranker`` on the stage's training impressions (those of ``keep``,
    a mask over impressions; None: all), keep its best epoch on the held-out ones of ``keep``,
    and calibrate it on those, pooled and per surface."""
    keep = np.ones(stage.labels.size, dtype=bool) if keep is None else np.asarray(keep, bool)
    if keep.shape != stage.labels.shape:
        raise ValueError(f"keep must be one flag per impression ({stage.labels.size})")
    train = np.flatnonzero(~stage.held & keep)
    held = np.flatnonzero(stage.held & keep)
    labels, weights = stage.labels, stage.weights
    if labels[train].sum() <= 0 or labels[held].sum() <= 0:
        raise ValueError("the chosen impressions hold no play to train or calibrate on")
    held_weights = None if weights is None else weights[held]
    result = train_ranker(
        ranker,
        stage.inputs.pairs(torch.from_numpy(train)),
        labels[train],
        None if weights is None else weights[train],
        valid=(stage.inputs.pairs(torch.from_numpy(held)), labels[held], held_weights),
        config=config.ranker_train,
    )
    trained = result.ranker.to(stage.scorer.device).eval()
    logits = ranker_logits(trained, stage.inputs.pairs(torch.from_numpy(held)))
    y = labels[held]
    calibrator = fit_calibrator(logits, y, held_weights, method=config.calibration)
    by_surface = fit_surface_calibrators(
        logits, y, held_weights, stage.surfaces[held], method=calibrator.method
    )
    return RankerFit(trained, calibrator, by_surface, result, held, logits, int(train.size))


def fit_fm_scorer(
    data: TrainingImpressions,
    catalog: ItemCatalog,
    config: FMScorerConfig | None = None,
    *,
    model_version: str = "fm",
    previous: FoundationModel | None = None,
) -> tuple[FMRankerScorer, FitReport]:
    """Train the FM on the users' histories and the ranker on the impressions, calibrate on
    the held-out decisions, and return the scorer with its training report. ``previous``: the
    last version's FM to warm-start from (``fm_core.warm_start``: its weights carried onto
    ``catalog``, new items initialized from metadata neighbours); its architecture is kept."""
    config = config or FMScorerConfig()
    stage = prepare_ranker_stage(
        data, catalog, config, model_version=model_version, previous=previous
    )
    scorer = stage.scorer
    fit = fit_ranker(stage, scorer.ranker, config)
    scorer.ranker = fit.ranker
    scorer.calibrator = fit.calibrator
    scorer.surface_calibrators = fit.surface_calibrators
    report = fit_report(stage, fit)
    logger.info(
        "fitted %s: %d training and %d held-out pairs, calibration %s, ECE %.4f (raw %.4f), "
        "%.1f s",
        model_version, report.train_pairs, report.holdout_pairs, report.calibration, report.ece,
        report.ece_raw, report.seconds,
    )  # fmt: skip
    return scorer, report


def fit_report(stage: RankerStage, fit: RankerFit) -> FitReport:
    """The report of a ranker fit: held-out loss and calibration (two-fold cross-fitted, per
    surface too, so out of sample)."""
    y = stage.labels[fit.rows]
    w = None if stage.weights is None else stage.weights[fit.rows]
    method = fit.calibrator.method
    raw = np.clip(1.0 / (1.0 + np.exp(-fit.logits)), 1e-6, 1 - 1e-6)
    calibrated = cross_fitted(fit.logits, y, w, method=method)
    surfaces = stage.surfaces[fit.rows]
    by_surface: dict[str, dict[str, float]] = {}
    for surface in sorted({str(s) for s in surfaces}):
        rows = surfaces == surface
        own = fit.surface_calibrators.get(surface)
        ws = None if w is None else w[rows]
        probabilities = (
            cross_fitted(fit.logits[rows], y[rows], ws, method=own.method)
            if own is not None
            else calibrated[rows]
        )
        by_surface[surface] = {
            "pairs": int(rows.sum()),
            "plays": int(y[rows].sum()),
            "own_calibrator": own is not None,
            "ece": expected_calibration_error(probabilities, y[rows], ws),
            "ece_pooled": expected_calibration_error(calibrated[rows], y[rows], ws),
        }
    return FitReport(
        cut_time=stage.cut,
        train_pairs=fit.train_pairs,
        holdout_pairs=int(fit.rows.size),
        holdout_plays=int(y.sum()),
        fm_sequences=stage.fm_sequences,
        fm_epochs=stage.fm_epochs,
        ranker_epochs=[asdict(e) for e in fit.result.epochs],
        ranker_best_epoch=fit.result.best_epoch,
        calibration=method,
        log_loss_raw=log_loss(raw, y, w),
        log_loss=log_loss(calibrated, y, w),
        ece_raw=expected_calibration_error(raw, y, w),
        ece=expected_calibration_error(calibrated, y, w),
        reliability=[asdict(b) for b in reliability_table(calibrated, y, w)],
        seconds=time.perf_counter() - stage.started,
        by_surface=by_surface,
    )
