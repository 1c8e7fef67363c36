"""What the scorers learn from, and point-in-time views of it.

``TrainingImpressions`` holds the logged impressions (one row per decision and position) with
every play; ``user_sequences`` rebuilds each user's events before a cut from the decisions'
histories, and ``plays_before`` counts plays strictly before each request. Both scorers' fits
use them. It imports numpy only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fm_core.types import History, ScoreRequest


@dataclass(frozen=True)
class TrainingImpressions:
    """Impressions to learn from, one row per (decision, position).

    Attributes:
        requests: one ScoreRequest per decision, with its point-in-time history.
        request_index: (m,) the decision of each row.
        item_ids, positions, labels: (m,) what was shown where, and whether it was played.
        weights: (m,) sample weights, or None for 1.
        play_item_ids, play_times: every play of any source, for point-in-time popularity.
    """

    requests: Sequence[ScoreRequest]
    request_index: np.ndarray
    item_ids: np.ndarray
    positions: np.ndarray
    labels: np.ndarray
    play_item_ids: np.ndarray
    play_times: np.ndarray
    weights: np.ndarray | None = None


def _rec_play_weights(data: TrainingImpressions) -> dict[tuple[str, int], float]:
    """(user, item) → sample weight of the user's latest played impression of the item."""
    if data.weights is None:
        return {}
    weights: dict[tuple[str, int], float] = {}
    played = np.flatnonzero(data.labels > 0)
    times = np.array([data.requests[j].time for j in data.request_index[played]])
    for row in played[np.argsort(times, kind="stable")]:
        user = data.requests[int(data.request_index[row])].user_id
        weights[(user, int(data.item_ids[row]))] = float(data.weights[row])
    return weights


def user_sequences(
    data: TrainingImpressions, *, before: float, search_weight: float = 1.0
) -> list[tuple[History, np.ndarray]]:
    """Every user's events strictly before ``before``, with per-event sample weights.

    A decision's history is every event of its user before it (up to a cap), so walking a user's
    decisions from the latest back and prepending only events older than those already taken
    rebuilds the user's whole history from the histories alone.
    """
    by_user: dict[str, list[ScoreRequest]] = defaultdict(list)
    for request in data.requests:
        by_user[request.user_id].append(request)
    rec_weights = _rec_play_weights(data)
    out = []
    for user, requests in by_user.items():
        pieces: list[History] = []
        earliest = float("inf")
        for request in sorted(requests, key=lambda r: r.time, reverse=True):
            h = request.history
            if not len(h):
                continue
            older = np.asarray(h.times, dtype=np.float64) < earliest
            if older.any():
                pieces.append(_subset(h, older))
                earliest = float(np.min(np.asarray(h.times)[older]))
        if not pieces:
            continue
        merged = _concat(pieces[::-1])
        merged = _subset(merged, np.argsort(np.asarray(merged.times), kind="stable"))
        keep = np.asarray(merged.times) < before
        if not keep.any():
            continue
        merged = _subset(merged, keep)
        weights = np.ones(len(merged))
        for e, (item, source) in enumerate(zip(merged.item_ids, merged.sources, strict=True)):
            if source == "search":
                weights[e] = search_weight
            elif source == "rec":
                weights[e] = rec_weights.get((user, int(item)), 1.0)
        out.append((merged, weights))
    return out


def _subset(h: History, keep: np.ndarray) -> History:
    sources = np.asarray(h.sources, dtype=object)
    return History(
        item_ids=np.asarray(h.item_ids)[keep],
        times=np.asarray(h.times)[keep],
        kinds=np.asarray(h.kinds, dtype=object)[keep],
        values=np.asarray(h.values)[keep],
        sources=sources[keep] if sources.shape == np.shape(h.item_ids) else sources,
    )


def _concat(pieces: list[History]) -> History:
    def cat(name: str, dtype: object = None) -> np.ndarray:
        return np.concatenate([np.asarray(getattr(p, name), dtype=dtype) for p in pieces])

    n = sum(len(p) for p in pieces)
    sources = cat("sources", object)
    return History(
        item_ids=cat("item_ids").astype(np.int64),
        times=cat("times").astype(np.float64),
        kinds=cat("kinds", object),
        values=cat("values").astype(np.float64),
        sources=sources if sources.shape == (n,) else np.full(n, None, dtype=object),
    )


def plays_before(
    play_rows: np.ndarray, play_times: np.ndarray, rows: np.ndarray, times: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each (row, time): plays of catalog row ``row`` strictly before ``time``, and plays of
    any item strictly before it. Exact: times are replaced by their integer rank among all
    times, so that no float key rounds a play across a request."""
    all_times, rank = np.unique(np.concatenate([play_times, times]), return_inverse=True)
    play_rank, query_rank = rank[: play_times.size], rank[play_times.size :]
    span = np.int64(all_times.size + 1)
    keys = np.sort(play_rows.astype(np.int64) * span + play_rank)
    rows = rows.astype(np.int64)
    item_counts = np.searchsorted(keys, rows * span + query_rank) - np.searchsorted(
        keys, rows * span
    )
    totals = np.searchsorted(np.sort(play_rank), query_rank)
    return item_counts.astype(np.float64), totals.astype(np.float64)
