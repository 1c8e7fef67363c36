"""The retraining job: a window of the log → point-in-time training impressions → a new model
version, registered with its training window.

The window [since, until) is split at its **cut** (``training_window``): the latest
``holdout_share`` of its decisions are kept out of training, so that the version's off-policy
report and gate can be made on decisions it never saw (they refuse to evaluate it on its training
window). A rerun for a version already registered on the same window does nothing; the command
line holds the job's lock on the log for the run (``proplog.job_lock``).

Two kinds of model: ``baseline`` (the popularity × genre-affinity logistic model) and ``fm`` (the
transformer foundation model with the DCN-v2 ranker, calibrated on the latest held-out decisions).
The job registers the version in the ``model_version`` table with its kind, parameters and
training metrics (for ``fm``: the held-out ECE and reliability table), so that every served
decision's ``model_version`` can be traced to how it was made.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine
from sqlmodel import Session

from fm_core import ItemCatalog, PopularityAffinityScorer, Scorer, TrainingImpressions
from loop.model_kinds import MODEL_KINDS
from loop.windows import read_window, training_impressions
from proplog.frames import decision_frame
from proplog.registry import record_model_version
from proplog.schema import ModelVersion
from proplog.training_table import TrainingTableConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainResult:
    version: str
    path: Path
    impressions: int
    decisions: int
    plays: int
    created: bool = True


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
    previous_fm: Any = None,
) -> FittedModel:
    """Fit a ``model`` ("baseline" or "fm") on ``data``; ``fm_config`` is an FMScorerConfig,
    ``previous_fm`` the last version's FoundationModel to warm-start the FM from."""
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
        fm_scorer, report = fit_fm_scorer(
            data, catalog, config, model_version=version, previous=previous_fm
        )
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


class NothingToLearnError(ValueError):
    """The window holds no decisions (or no plays) to train on."""


DEFAULT_HOLDOUT_SHARE = 0.2
"""The share of the window's decisions, the latest, kept out of training: the version's cut, and
the window its off-policy report and gate are made on."""


@dataclass(frozen=True)
class TrainingWindow:
    """The decisions a version learns from: [since, cut), and the held-out tail [cut, until)."""

    since: datetime | None
    until: datetime | None
    cut: datetime
    first: datetime
    last: datetime
    held_out: int

    def record(self) -> dict[str, Any]:
        """What the registry stores (``params["training_window"]``)."""
        return {
            "since": None if self.since is None else self.since.isoformat(),
            "until": None if self.until is None else self.until.isoformat(),
            "first": self.first.isoformat(),
            "last": self.last.isoformat(),
            "cut": self.cut.isoformat(),
            "held_out_decisions": self.held_out,
        }


def training_window(
    engine: Engine,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    holdout_share: float = DEFAULT_HOLDOUT_SHARE,
) -> TrainingWindow:
    """Where the training part of [since, until) ends: before the latest ``holdout_share`` of
    its decisions (none held out at 0). Raises ``NothingToLearnError`` when no decision is left to
    train on."""
    if not 0.0 <= holdout_share < 1.0:
        raise ValueError(f"holdout_share must be in [0, 1); got {holdout_share}")
    if since is not None and until is not None and since >= until:
        raise ValueError(f"since must be before until; got {since} and {until}")
    times = decision_frame(session_or_engine=engine, since=since, until=until)["created_at"]
    if times.empty:
        raise NothingToLearnError("the window holds no decisions; check --since and --until")
    times = times.sort_values().reset_index(drop=True)
    held = math.ceil(holdout_share * len(times)) if holdout_share > 0 else 0
    if held >= len(times) or (held and times[len(times) - held] <= times[0]):
        raise NothingToLearnError(
            f"the window's {len(times)} decisions leave none to train on before the held-out "
            f"{held}; widen the window or lower --holdout-share"
        )
    if held:
        cut = times[len(times) - held].to_pydatetime()
        trained = times[times < cut]
    else:
        cut = until or times.iloc[-1].to_pydatetime() + timedelta(microseconds=1)
        trained = times
    return TrainingWindow(
        since=since,
        until=until,
        cut=cut,
        first=trained.iloc[0].to_pydatetime(),
        last=trained.iloc[-1].to_pydatetime(),
        held_out=int(len(times) - len(trained)),
    )


def _registered(engine: Engine, version: str) -> ModelVersion | None:
    with Session(engine) as session:
        return session.get(ModelVersion, version)


def _previous_fm(engine: Engine, version: str, model: str) -> Any:
    """The FoundationModel of a registered FM version, to warm-start from."""
    from fm_core import load_scorer_file

    if model != "fm":
        raise ValueError(f"warm_start needs model fm; got {model!r}")
    stored = _registered(engine, version)
    if stored is None or not stored.path:
        raise ValueError(f"warm_start: no registered model version {version!r} with a file")
    if not Path(stored.path).exists():
        raise ValueError(f"warm_start: version {version}'s file {stored.path} does not exist")
    fm = getattr(load_scorer_file(stored.path), "fm", None)
    if fm is None:
        raise ValueError(f"warm_start: version {version} is not a foundation model")
    return fm


def _export_embeddings(
    scorer: Any, previous: Any, path: Path, warm_start: str | None
) -> dict[str, Any]:
    """Export the FM's item embeddings (aligned to ``previous``'s when given) to Parquet beside
    the model file; what the registry records of it."""
    from fm_core.alignment import export_item_embeddings

    reference = None if previous is None else export_item_embeddings(previous, previous=None)
    export = export_item_embeddings(scorer.fm, previous=reference)
    target = path.with_name(path.stem + ".items.parquet")
    frame = pd.DataFrame({"item_id": export.item_ids, "vector": list(export.vectors)})
    tmp = target.with_name(target.name + ".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(target)
    out: dict[str, Any] = {"embeddings_path": str(target)}
    if reference is not None:
        out["alignment"] = {
            "aligned_to": warm_start,
            "residual": export.residual,
            "residual_unaligned": export.residual_unaligned,
            "shared_items": export.n_shared,
        }
    return out


def retrain(
    *,
    engine: Engine,
    catalog: ItemCatalog,
    out: Path,
    version: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    holdout_share: float = DEFAULT_HOLDOUT_SHARE,
    model: str = "baseline",
    fm_config: Any = None,
    table: TrainingTableConfig | None = None,
    warm_start: str | None = None,
) -> RetrainResult:
    """Fit a ``model`` ("baseline" or "fm") on the logged decisions of [since, until) before
    its held-out tail (``training_window``), save it to ``out`` and register it with its
    training window, which ``loopbreak ope report`` and ``ope gate`` refuse to evaluate it on.
    ``table`` sets the training table's weights (inverse-propensity clip and self-normalization,
    the search-play weight α, negatives); None takes its defaults.

    ``warm_start``: a registered FM version to start from (its item table grown to
    ``catalog``); the new item embeddings are then aligned to that version's (orthogonal
    Procrustes), the residual before and after goes into the registry, and the aligned
    embeddings are exported beside the model (``<model>.items.parquet``: item_id, vector).

    Idempotent: a version already registered with the same training window and a saved file is
    returned as it is (``created`` False); one registered with another window is refused."""
    if model not in MODEL_KINDS:
        raise ValueError(f"model must be one of {MODEL_KINDS}; got {model!r}")
    window_of = training_window(engine, since=since, until=until, holdout_share=holdout_share)
    version = version or f"{model}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    stored = _registered(engine, version)
    if stored is not None:
        same = stored.params.get("training_window") == window_of.record()
        if same and stored.path and Path(stored.path).exists():
            logger.info("%s is already registered for this window: nothing to do", version)
            return RetrainResult(
                version=version, path=Path(stored.path),
                impressions=int(stored.metrics.get("impressions", 0)),
                decisions=int(stored.metrics.get("decisions", 0)),
                plays=int(stored.metrics.get("plays", 0)), created=False,
            )  # fmt: skip
        raise ValueError(
            f"version {version} is already registered with another training window or without "
            "its file; choose another --version"
        )
    previous = None if warm_start is None else _previous_fm(engine, warm_start, model)
    window = read_window(engine, since=since, until=window_of.cut)
    data = training_impressions(window, table)
    if not np.any(data.labels > 0):
        raise NothingToLearnError("the training window holds no plays to learn from")
    logger.info(
        "training %s on %d decisions (%s to %s), %d held out from %s",
        version, len(window.requests), window_of.first, window_of.last, window_of.held_out,
        window_of.cut,
    )  # fmt: skip
    fitted = fit_model(
        data, catalog, model=model, version=version, fm_config=fm_config, previous_fm=previous
    )
    path = fitted.scorer.save(out)  # type: ignore[attr-defined]  # both kinds save themselves
    extra = {} if model != "fm" else _export_embeddings(fitted.scorer, previous, path, warm_start)
    result = RetrainResult(
        version=version,
        path=path,
        impressions=int(data.labels.size),
        decisions=len(window.requests),
        plays=int(np.sum(data.labels)),
    )
    weights = asdict(table or TrainingTableConfig())
    with Session(engine) as session:
        record_model_version(
            session=session,
            version=version,
            kind=fitted.kind,
            params={
                **fitted.params,
                "training_window": window_of.record(),
                "training_table": weights,
            },
            metrics={
                "impressions": result.impressions,
                "decisions": result.decisions,
                "plays": result.plays,
                **fitted.metrics,
                **extra,
            },
            path=str(path.resolve()),  # a service elsewhere can load it
        )
    logger.info("retrained %s on %d impressions -> %s", version, result.impressions, path)
    return result
