"""Export of the propensity log as obp's ``bandit_feedback`` dict, for small fixed action sets.

Owns the mapping to Open Bandit Pipeline's logged-data format (obp 0.4.1): one round per logged
(decision, position), as obp's Open Bandit Dataset loader gives it for slates:

- ``n_rounds``: the number of rows; ``n_actions``: the size of the action set;
- ``action`` (n_rounds,): the index of the shown item in ``item_ids`` (the sorted action set);
- ``position`` (n_rounds,): the 0-based slot; ``reward`` (n_rounds,): 1 if played from the slate;
- ``pscore`` (n_rounds,): the logged marginal propensity of the item at that slot;
- ``context`` (n_rounds, d): a one-hot of the request's ``device`` (an ``"unknown"`` column for
  none), ``context_names`` naming the columns;
- ``action_context`` (n_actions, n_actions): the identity (one feature per item);
- and, beyond obp's keys, ``item_ids`` and ``decision_id`` (n_rounds,) to map back.

obp's arrays are dense over actions (an ``action_dist`` of shape rounds × actions × slots), so
this export refuses logs it does not fit: candidate sets that are not one fixed set, more than
``max_actions`` actions, or positions without an exact marginal propensity. Each refusal raises
:class:`ObpExportError` naming the problem and the first decision that shows it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from proplog.export import export_frame
from proplog.frames import SessionOrEngine, decision_frame

DEFAULT_MAX_ACTIONS = 100


class ObpExportError(ValueError):
    """The log does not fit obp's ``bandit_feedback`` (see the module docstring)."""


def _action_set(decisions: pd.DataFrame, max_actions: int) -> np.ndarray:
    """The one candidate set every decision shares, sorted; raise when there is none."""
    first_id = decisions["decision_id"].iloc[0]
    first = np.unique(np.asarray(decisions["candidate_ids"].iloc[0], dtype=np.int64))
    if first.size > max_actions:
        raise ObpExportError(
            f"too many actions for bandit_feedback: decision {first_id} has {first.size} "
            f"candidates, more than max_actions={max_actions} (obp's arrays are dense over "
            "actions; use the Parquet export instead)"
        )
    for decision_id, candidates in zip(
        decisions["decision_id"], decisions["candidate_ids"], strict=True
    ):
        these = np.unique(np.asarray(candidates, dtype=np.int64))
        if these.size != first.size or not np.array_equal(these, first):
            extra = np.setdiff1d(these, first)
            lacking = np.setdiff1d(first, these)
            raise ObpExportError(
                "the log's candidate sets are not one fixed action set: decision "
                f"{decision_id} has {these.size} candidates, {extra.size} of them not in the "
                f"{first.size} of decision {first_id}, and lacks {lacking.size} of those"
            )
    return first


def _device_context(devices: pd.Series) -> tuple[np.ndarray, list[str]]:
    values = devices.astype(object).where(devices.notna(), "unknown").astype(str)
    names = sorted(values.unique())
    codes = pd.Categorical(values, categories=names).codes
    context = np.zeros((len(values), len(names)))
    context[np.arange(len(values)), codes] = 1.0
    return context, [f"device={name}" for name in names]


def to_bandit_feedback(
    *,
    session_or_engine: SessionOrEngine,
    since: datetime | None = None,
    until: datetime | None = None,
    max_actions: int = DEFAULT_MAX_ACTIONS,
) -> dict[str, Any]:
    """obp's ``bandit_feedback`` dict of the decisions with ``since <= created_at < until``."""
    if isinstance(max_actions, bool) or not isinstance(max_actions, int) or max_actions < 1:
        raise ValueError(f"max_actions must be an integer >= 1; got {max_actions!r}")
    decisions = decision_frame(session_or_engine=session_or_engine, since=since, until=until)
    if decisions.empty:
        raise ObpExportError("the log holds no decisions in the window to export")
    item_ids = _action_set(decisions, max_actions)
    rows = export_frame(session_or_engine=session_or_engine, since=since, until=until)
    missing = rows["pscore"].isna().to_numpy()
    if missing.any():
        first = rows.loc[missing, "decision_id"].iloc[0]
        raise ObpExportError(
            f"bandit_feedback needs exact marginal propensities (pscore); decision {first} "
            f"and {int(missing.sum()) - 1} other slate position(s) have none"
        )
    action = np.searchsorted(item_ids, rows["item_id"].to_numpy(dtype=np.int64))
    context, context_names = _device_context(rows["device"])
    return {
        "n_rounds": len(rows),
        "n_actions": int(item_ids.size),
        "action": action.astype(np.int64),
        "position": rows["slot"].to_numpy(dtype=np.int64),
        "reward": rows["reward"].to_numpy(dtype=np.int64),
        "pscore": rows["pscore"].to_numpy(dtype=np.float64),
        "context": context,
        "context_names": context_names,
        "action_context": np.eye(item_ids.size),
        "item_ids": item_ids,
        "decision_id": rows["decision_id"].to_numpy(dtype=object),
    }


__all__ = ["DEFAULT_MAX_ACTIONS", "ObpExportError", "to_bandit_feedback"]
