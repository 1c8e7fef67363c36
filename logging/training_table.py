"""The training table for retraining jobs: logged impressions and plays, with sample weights.

Owns how the propensity log becomes weighted training rows. One row per training example:

- **slate rows** (``origin="slate"``): one per logged (decision, position), labelled 1 when a
  ``play`` event with ``source="rec"`` names that decision and position. Weight: the inverse of
  the logged marginal ``propensity`` (the probability that this item was at this position),
  clipped at ``clip_max``; with ``self_normalize`` the slate weights are then multiplied by one
  constant so that **their mean over the slate rows of the table is exactly 1** (search and direct
  rows are not part of that mean and keep their weights). A position whose marginal was not exact
  (``propensity`` NULL) gets weight 1 before normalization and is counted in the report: an
  estimated propensity is never used as if it were exact.
- **search rows** (``origin="search"``): one per ``play`` event with ``source="search"``, a
  positive (label 1) for the searched item, weight ``search_weight`` (α, tuned by
  ``loopbreak tune search-weight``).
- **direct rows** (``origin="direct"``): the same for ``source="direct"`` plays, weight
  ``direct_weight`` (1 by default).

A search or direct play has no decision of its own; it is put in the user's point-in-time
context by attaching it to the user's latest decision at or before the play, at most
``context_window_s`` earlier (the session it came from). The row shares that decision's request,
whose history holds only events strictly before the decision, so nothing the user did later
leaks in. Plays with no such decision are left out and counted. Their ``position`` is 0 (as if
shown at the top).

Negatives (unplayed slate positions), ``negatives``:

- ``"all"``: every unplayed position, with its inverse-propensity weight;
- ``"examined"``: only positions up to the last played one of the decision (a cascade proxy for
  "examined"; decisions without a rec play give no rows);
- ``"none"``: played slate positions only.

The builder works on the frames of :mod:`proplog.frames` (``decision_frame``, ``slate_frame``,
``event_frame``), which hold shown decisions only (a deferred decision counts once activated
before its deadline: :mod:`proplog.activation`), and returns frames and arrays; turning them
into a model's input (requests with histories) is the caller's job.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from proplog.frames import SessionOrEngine, decision_frame, event_frame, slate_frame
from proplog.validation import check_aware_utc

logger = logging.getLogger(__name__)

NEGATIVE_MODES: tuple[str, ...] = ("all", "examined", "none")
ORIGINS: tuple[str, ...] = ("slate", "search", "direct")
ROW_COLUMNS: tuple[str, ...] = (
    "decision_id",
    "request_row",
    "item_id",
    "position",
    "label",
    "weight",
    "origin",
    "propensity",
    "event_time",
)


@dataclass(frozen=True, kw_only=True)
class TrainingTableConfig:
    """How impressions and plays are weighted (see the module docstring).

    ``clip_max`` caps 1/propensity (so no row weighs more than ``clip_max`` before
    normalization); ``search_weight`` is α; ``context_window_s`` is how far back a search or
    direct play looks for the decision whose context it takes.

    The defaults are what the demo's loop (ε-greedy, 300-1,500 decisions a round) retrains best
    with: a clip of 10 (at 100 the few explored positions' weights cost more variance than the
    bias they remove) and a conservative α of 0.25. α depends on the data: tune it with
    ``loopbreak tune search-weight`` (on the default simulated world it picks 4 at 600 logged
    decisions and 64 at 2,000; see README).
    """

    clip_max: float = 10.0
    self_normalize: bool = True
    search_weight: float = 0.25
    direct_weight: float = 1.0
    negatives: str = "all"
    context_window_s: float = 3600.0

    def __post_init__(self) -> None:
        if not (isinstance(self.clip_max, int | float) and self.clip_max >= 1):
            raise ValueError(f"clip_max must be a number >= 1; got {self.clip_max!r}")
        for name in ("search_weight", "direct_weight"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
        if self.negatives not in NEGATIVE_MODES:
            raise ValueError(
                f"negatives must be one of {', '.join(NEGATIVE_MODES)}; got {self.negatives!r}"
            )
        if not (isinstance(self.context_window_s, int | float) and self.context_window_s >= 0):
            raise ValueError(
                f"context_window_s must be a number >= 0; got {self.context_window_s!r}"
            )


@dataclass(frozen=True)
class WeightReport:
    """The distribution of the slate rows' weights, and what went into the table.

    ``ess`` is Kish's effective sample size of the slate weights, (Σw)² / Σw²; ``ess_share`` is
    ``ess / slate_rows`` (1 when every weight is equal).
    """

    slate_rows: int
    slate_positives: int
    search_rows: int
    direct_rows: int
    weight_max: float
    weight_mean: float
    weight_min: float
    ess: float
    ess_share: float
    clipped: int
    without_exact_marginal: int
    plays_without_context: int
    normalizer: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainingTable:
    """Rows in :data:`ROW_COLUMNS`, ordered by the decision order given, slate rows first.

    ``request_row`` is the row of the row's decision in the decisions frame the table was built
    from; ``event_time`` is the play time for search and direct rows (NaT for slate rows).
    """

    rows: pd.DataFrame
    report: WeightReport
    config: TrainingTableConfig


def _slate_rows(
    slates: pd.DataFrame, request_row: pd.Series, config: TrainingTableConfig
) -> pd.DataFrame:
    played = slates["played"].to_numpy(dtype=np.int64) > 0
    keep = np.ones(len(slates), dtype=bool)
    if config.negatives == "none":
        keep = played
    elif config.negatives == "examined":
        positions = slates["position"].to_numpy(dtype=np.int64)
        last_play = (
            pd.Series(np.where(played, positions, -1), index=slates.index)
            .groupby(slates["decision_id"].to_numpy(), sort=False)
            .transform("max")
            .to_numpy()
        )
        keep = positions <= last_play
    chosen = slates[keep]
    return pd.DataFrame(
        {
            "decision_id": chosen["decision_id"].to_numpy(),
            "request_row": request_row.reindex(chosen["decision_id"]).to_numpy(dtype=np.int64),
            "item_id": chosen["item_id"].to_numpy(dtype=np.int64),
            "position": chosen["position"].to_numpy(dtype=np.int64),
            "label": played[keep].astype(np.float64),
            "weight": np.ones(len(chosen)),
            "origin": "slate",
            "propensity": chosen["propensity"].to_numpy(dtype=np.float64),
            "event_time": pd.NaT,
        }
    )


def _play_rows(
    decisions: pd.DataFrame,
    events: pd.DataFrame,
    request_row: pd.Series,
    config: TrainingTableConfig,
    until: datetime | None,
) -> tuple[pd.DataFrame, int]:
    """Search and direct plays attached to the user's latest decision within the window."""
    plays = events[(events["kind"] == "play") & events["source"].isin(("search", "direct"))]
    if until is not None:
        plays = plays[plays["created_at"] < until]
    if plays.empty or decisions.empty:
        return pd.DataFrame(columns=list(ROW_COLUMNS)), len(plays)
    left = pd.DataFrame(
        {
            "when": plays["created_at"].astype("datetime64[us, UTC]").to_numpy(),
            "user_id": plays["user_id"].astype(str).to_numpy(),
            "item_id": plays["item_id"].to_numpy(dtype=np.int64),
            "source": plays["source"].to_numpy(),
        }
    ).sort_values("when", kind="stable")
    right = pd.DataFrame(
        {
            "when": decisions["created_at"].astype("datetime64[us, UTC]").to_numpy(),
            "user_id": decisions["user_id"].astype(str).to_numpy(),
            "decision_id": decisions["decision_id"].to_numpy(),
        }
    ).sort_values("when", kind="stable")
    attached = pd.merge_asof(
        left,
        right,
        on="when",
        by="user_id",
        direction="backward",
        tolerance=pd.Timedelta(seconds=float(config.context_window_s)),
    )
    found = attached["decision_id"].notna().to_numpy()
    missing = int((~found).sum())
    attached = attached[found]
    source = attached["source"].to_numpy()
    weight = np.where(source == "search", config.search_weight, config.direct_weight)
    rows = pd.DataFrame(
        {
            "decision_id": attached["decision_id"].to_numpy(),
            "request_row": request_row.reindex(attached["decision_id"]).to_numpy(dtype=np.int64),
            "item_id": attached["item_id"].to_numpy(dtype=np.int64),
            "position": np.zeros(len(attached), dtype=np.int64),
            "label": np.ones(len(attached)),
            "weight": weight.astype(np.float64),
            "origin": source,
            "propensity": np.nan,
            "event_time": attached["when"].to_numpy(),
        }
    )
    return rows, missing


def _weigh_slate_rows(rows: pd.DataFrame, config: TrainingTableConfig) -> dict[str, Any]:
    """Set the slate rows' weights in place; return the report's weight fields."""
    propensity = rows["propensity"].to_numpy(dtype=np.float64)
    exact = ~np.isnan(propensity)
    raw = np.ones(len(rows))
    raw[exact] = 1.0 / propensity[exact]
    clipped = int(np.sum(raw > config.clip_max))
    weight = np.minimum(raw, config.clip_max)
    normalizer = 1.0
    if config.self_normalize and weight.size:
        normalizer = weight.size / float(weight.sum())
        weight = weight * normalizer
    rows["weight"] = weight
    n = weight.size
    ess = float(weight.sum() ** 2 / np.sum(weight**2)) if n else 0.0
    return {
        "weight_max": float(weight.max()) if n else 0.0,
        "weight_mean": float(weight.mean()) if n else 0.0,
        "weight_min": float(weight.min()) if n else 0.0,
        "ess": ess,
        "ess_share": ess / n if n else 0.0,
        "clipped": clipped,
        "without_exact_marginal": int((~exact).sum()),
        "normalizer": normalizer,
    }


def _require_columns(frame: pd.DataFrame, name: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} must have the columns {', '.join(columns)}; missing {missing}")


def build_training_table(
    *,
    decisions: pd.DataFrame,
    slates: pd.DataFrame,
    events: pd.DataFrame,
    config: TrainingTableConfig | None = None,
    until: datetime | None = None,
) -> TrainingTable:
    """The weighted training rows of the logged ``decisions`` (see the module docstring).

    ``slates`` are their positions with ``played`` (``slate_frame``), ``events`` the events to
    take search and direct plays from (``event_frame``); plays at or after ``until`` are left out.
    """
    config = config or TrainingTableConfig()
    _require_columns(decisions, "decisions", ("decision_id", "created_at", "user_id"))
    _require_columns(slates, "slates", ("decision_id", "position", "item_id", "propensity"))
    _require_columns(events, "events", ("created_at", "user_id", "item_id", "kind", "source"))
    if "played" not in slates.columns:
        raise ValueError("slates must have the column played (use proplog.frames.slate_frame)")
    if until is not None:
        until = check_aware_utc(until, "until")
    request_row = pd.Series(
        np.arange(len(decisions), dtype=np.int64), index=decisions["decision_id"].to_numpy()
    )
    unknown = ~slates["decision_id"].isin(request_row.index)
    if unknown.any():
        first = slates.loc[unknown, "decision_id"].iloc[0]
        raise ValueError(f"slates name decision {first!r}, which is not in decisions")
    slate_rows = _slate_rows(slates, request_row, config)
    weights = _weigh_slate_rows(slate_rows, config)
    play_rows, missing = _play_rows(decisions, events, request_row, config, until)
    parts = [slate_rows] + ([play_rows] if len(play_rows) else [])
    rows = pd.concat(parts, ignore_index=True) if len(parts) > 1 else slate_rows
    rows["event_time"] = pd.to_datetime(rows["event_time"], utc=True).astype("datetime64[us, UTC]")
    origin = play_rows["origin"].to_numpy() if len(play_rows) else np.empty(0, dtype=object)
    report = WeightReport(
        slate_rows=len(slate_rows),
        slate_positives=int(slate_rows["label"].sum()),
        search_rows=int(np.sum(origin == "search")),
        direct_rows=int(np.sum(origin == "direct")),
        plays_without_context=missing,
        **weights,
    )
    logger.info("training table: %s", report)
    return TrainingTable(rows=rows[list(ROW_COLUMNS)], report=report, config=config)


def read_training_table(
    *,
    session_or_engine: SessionOrEngine,
    since: datetime | None = None,
    until: datetime | None = None,
    config: TrainingTableConfig | None = None,
) -> tuple[pd.DataFrame, TrainingTable]:
    """Read the decisions in ``[since, until)`` and build their table; returns the decisions
    frame (whose rows ``request_row`` counts) with the table."""
    decisions = decision_frame(session_or_engine=session_or_engine, since=since, until=until)
    slates = slate_frame(session_or_engine=session_or_engine, since=since, until=until)
    events = event_frame(session_or_engine=session_or_engine, since=since, until=until)
    table = build_training_table(
        decisions=decisions, slates=slates, events=events, config=config, until=until
    )
    return decisions, table


__all__ = [
    "NEGATIVE_MODES",
    "ROW_COLUMNS",
    "TrainingTable",
    "TrainingTableConfig",
    "WeightReport",
    "build_training_table",
    "read_training_table",
]
