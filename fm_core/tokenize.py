"""Event tokenization: a user's ``History`` (and, at serving time, the request) as model tokens.

This module owns the roll-up of repeated events, the features of each token, the small
kind/device/surface vocabularies, padding into a ``TokenBatch``, the context cap at inference
and sliding windows for training. It is pure numpy until ``collate`` hands torch tensors out.

**Roll-up.** A run of consecutive events on the same item, each within ``window_s`` (default
30 minutes) of the event before it, becomes one event: its time is the run's first time, its
duration (``values``, seconds) is the run's sum, and its kind is the run's strongest, in the
order play > list_add > thumb_up > click > thumb_down (``KIND_STRENGTH``, weakest first). Its
sample weight is that of the event that gave the strongest kind (the first one on ties). An event
on another item breaks the run, so A, B, A stays three events.

**Tokens.** Following Netflix's foundation model, token i of rolled-up events e_0..e_{n-1} joins

- the *request-time* features of its own step i: time, device, surface, and as continuous time
  features log days and decades since ``time_origin``, the log gap in minutes to e_{i-1}, hour of
  day and day of week as sin/cos (local hour when known, else UTC);
- the *post-action* features of the previous step i-1: its item (catalog row), its kind, and
  log1p of its minutes watched. Token 0 has ``PREV_BOS`` as its previous item.

Its target is e_i's item (with e_i's kind, minutes and sample weight for the loss). At serving
time one more token, built from the request (time, device, surface, local hour) and the last
event, has no target: its output is the prediction. An item outside the catalog is
``PREV_UNKNOWN`` as an input and has no target.

Events carry no device or surface in ``History``; pass an ``EventContext`` to give them.
Without one, the surface follows the event's source (search -> "search", rec -> "home") and the
device is unknown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from fm_core.types import History, ItemCatalog, ScoreRequest

KIND_STRENGTH: tuple[str, ...] = ("thumb_down", "click", "thumb_up", "list_add", "play")
KIND_VOCAB: dict[str, int] = {"<none>": 0} | {k: i + 1 for i, k in enumerate(KIND_STRENGTH)}
DEVICE_VOCAB: dict[str, int] = {"<unk>": 0, "tv": 1, "mobile": 2, "web": 3, "tablet": 4}
SURFACE_VOCAB: dict[str, int] = {"<unk>": 0, "home": 1, "search": 2, "title": 3, "billboard": 4}
SOURCE_SURFACE: dict[str, str] = {"search": "search", "rec": "home"}

PREV_BOS = -1  # previous item of the first token of a history
PREV_UNKNOWN = -2  # previous item that the catalog does not hold
NO_TARGET = -1

DENSE_FEATURES: tuple[str, ...] = (
    "log_days_since_origin", "decades_since_origin", "log_gap_minutes",
    "hour_sin", "hour_cos", "weekday_sin", "weekday_cos",
    "prev_log_minutes",
)  # fmt: skip
N_TIME_FEATURES = 7  # the first seven dense features describe time
N_DENSE = len(DENSE_FEATURES)

DEFAULT_ROLLUP_WINDOW_S = 1800.0
DEFAULT_TIME_ORIGIN = 1577836800.0  # 2020-01-01T00:00:00Z
_DAY = 86400.0


@dataclass(frozen=True)
class TokenizerConfig:
    """How histories become tokens; the model's ``FMConfig`` carries the same two fields."""

    rollup_window_s: float = DEFAULT_ROLLUP_WINDOW_S
    time_origin: float = DEFAULT_TIME_ORIGIN


@dataclass(frozen=True)
class EventContext:
    """Request-time context of each raw event of a History, aligned with it; None is unknown.

    Attributes:
        devices, surfaces: (n,) names, None or unknown names map to id 0.
        local_hours: (n,) local hour of day, NaN when unknown.
    """

    devices: np.ndarray | None = None
    surfaces: np.ndarray | None = None
    local_hours: np.ndarray | None = None


@dataclass(frozen=True)
class RolledEvents:
    """Rolled-up events of one history, oldest first; every array has shape (n,).

    ``kinds``, ``devices`` and ``surfaces`` are vocabulary ids; ``local_hours`` is NaN when
    unknown; ``minutes`` is the summed duration.
    """

    item_ids: np.ndarray
    times: np.ndarray
    kinds: np.ndarray
    minutes: np.ndarray
    devices: np.ndarray
    surfaces: np.ndarray
    local_hours: np.ndarray
    weights: np.ndarray

    def __len__(self) -> int:
        return int(self.item_ids.size)


def _vocab_ids(names: np.ndarray | None, vocab: dict[str, int], n: int) -> np.ndarray:
    if names is None:
        return np.zeros(n, dtype=np.int64)
    return np.array([vocab.get(str(name), 0) if name is not None else 0 for name in names])


def _kind_ids(kinds: np.ndarray) -> np.ndarray:
    ids = np.array([KIND_VOCAB.get(str(k), -1) for k in kinds], dtype=np.int64)
    bad = np.flatnonzero(ids <= 0)
    if bad.size:
        raise ValueError(
            f"event kinds must be one of {KIND_STRENGTH}; got {kinds[bad[0]]!r} at index {bad[0]}"
        )
    return ids


def rollup(
    history: History,
    *,
    window_s: float = DEFAULT_ROLLUP_WINDOW_S,
    weights: np.ndarray | None = None,
    context: EventContext | None = None,
) -> RolledEvents:
    """Merge runs of repeated events on the same item (see the module docstring).

    Args:
        history: raw events, oldest first.
        window_s: the largest gap, in seconds, between two events of one run.
        weights: (n,) per-event sample weights, 1 when None.
        context: per-event device, surface and local hour.
    """
    n = len(history)
    times = np.asarray(history.times, dtype=np.float64)
    if n and np.any(np.diff(times) < 0):
        at = int(np.flatnonzero(np.diff(times) < 0)[0]) + 1
        raise ValueError(
            f"history times must be non-decreasing; event {at} is earlier than {at - 1}"
        )
    weights = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if weights.shape != (n,):
        raise ValueError(f"weights must have one value per event ({n}); got shape {weights.shape}")
    items = np.asarray(history.item_ids, dtype=np.int64)
    kinds = _kind_ids(np.asarray(history.kinds, dtype=object))
    values = np.nan_to_num(np.asarray(history.values, dtype=np.float64), nan=0.0)
    context = context or EventContext()
    for name in ("devices", "surfaces", "local_hours"):
        given = getattr(context, name)
        if given is not None and np.shape(given) != (n,):
            raise ValueError(f"context.{name} must have one value per event ({n}); "
                             f"got shape {np.shape(given)}")  # fmt: skip
    if context.surfaces is not None:
        surfaces = _vocab_ids(context.surfaces, SURFACE_VOCAB, n)
    else:
        sources = np.asarray(history.sources, dtype=object)
        sources = sources if sources.shape == (n,) else None
        mapped = None if sources is None else np.array([SOURCE_SURFACE.get(s) for s in sources])
        surfaces = _vocab_ids(mapped, SURFACE_VOCAB, n)
    devices = _vocab_ids(context.devices, DEVICE_VOCAB, n)
    hours = np.full(n, np.nan) if context.local_hours is None else np.asarray(context.local_hours)

    # A new run starts where the item changes or the gap to the previous event exceeds the window.
    starts = np.ones(n, dtype=bool)
    starts[1:] = (items[1:] != items[:-1]) | (np.diff(times) > window_s)
    run = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    # The event that gives each run its kind: strongest kind, then earliest.
    order = np.lexsort((np.arange(n), -kinds, run))
    strongest = order[np.searchsorted(run[order], np.arange(first.size))]
    return RolledEvents(
        item_ids=items[first],
        times=times[first],
        kinds=kinds[strongest],
        minutes=np.bincount(run, weights=values, minlength=first.size) / 60.0,
        devices=devices[first],
        surfaces=surfaces[first],
        local_hours=hours[first].astype(np.float64),
        weights=weights[strongest],
    )


@dataclass(frozen=True)
class SequenceTokens:
    """The tokens of one sequence as numpy arrays; (T,) unless noted.

    Attributes:
        prev_item: catalog row of the previous item, or PREV_BOS / PREV_UNKNOWN.
        prev_kind: kind id of the previous event (0 for the first token).
        device_id, surface_id: request-time context ids of this step.
        dense: (T, N_DENSE) float32 features named in DENSE_FEATURES.
        time: POSIX seconds of this step (float64).
        target: catalog row of this step's item, or NO_TARGET.
        target_kind, target_minutes, sample_weight: for the loss weight of the target.
    """

    prev_item: np.ndarray
    prev_kind: np.ndarray
    device_id: np.ndarray
    surface_id: np.ndarray
    dense: np.ndarray
    time: np.ndarray
    target: np.ndarray
    target_kind: np.ndarray
    target_minutes: np.ndarray
    sample_weight: np.ndarray

    def __len__(self) -> int:
        return int(self.prev_item.size)

    def window(self, start: int, stop: int) -> SequenceTokens:
        """Tokens ``start:stop``; each token carries its own context, so slicing is exact."""
        return replace(self, **{f.name: getattr(self, f.name)[start:stop] for f in fields(self)})


def _time_features(
    times: np.ndarray, prev_times: np.ndarray, hours: np.ndarray, origin: float
) -> np.ndarray:
    """(T, N_TIME_FEATURES) continuous time features; ``prev_times`` is NaN for no previous."""
    days = np.maximum(times - origin, 0.0) / _DAY
    gap_min = np.where(np.isnan(prev_times), 0.0, np.maximum(times - prev_times, 0.0) / 60.0)
    hour = np.where(np.isnan(hours), (times % _DAY) / 3600.0, hours % 24.0)
    weekday = ((np.floor(times / _DAY) + 3.0) % 7.0 + hour / 24.0) / 7.0  # Monday = 0
    return np.stack(
        [
            np.log1p(days) / 10.0,
            days / 3652.5,
            np.log1p(gap_min) / 10.0,
            np.sin(2 * np.pi * hour / 24.0),
            np.cos(2 * np.pi * hour / 24.0),
            np.sin(2 * np.pi * weekday),
            np.cos(2 * np.pi * weekday),
        ],
        axis=1,
    )


def tokens_of(
    events: RolledEvents,
    catalog: ItemCatalog,
    *,
    request: ScoreRequest | None = None,
    config: TokenizerConfig = TokenizerConfig(),
) -> SequenceTokens:
    """One token per rolled-up event, plus a target-less request token when ``request`` is set."""
    n = len(events)
    known = catalog.known(events.item_ids) if n else np.zeros(0, dtype=bool)
    rows = np.full(n, NO_TARGET, dtype=np.int64)
    rows[known] = catalog.rows(events.item_ids[known])
    prev_rows = np.where(known, rows, PREV_UNKNOWN)

    times, devices, surfaces = events.times, events.devices, events.surfaces
    hours = events.local_hours
    target, target_kind = rows, events.kinds
    target_minutes, weight = events.minutes, events.weights
    if request is not None:
        times = np.append(times, float(request.time))
        devices = np.append(devices, DEVICE_VOCAB.get(request.device or "", 0))
        surfaces = np.append(surfaces, SURFACE_VOCAB.get(request.surface or "", 0))
        hours = np.append(hours, np.nan if request.local_hour is None else request.local_hour)
        target = np.append(target, NO_TARGET)
        target_kind = np.append(target_kind, 0)
        target_minutes = np.append(target_minutes, 0.0)
        weight = np.append(weight, 0.0)
    T = times.size
    prev_item = np.concatenate([[PREV_BOS], prev_rows])[:T]
    prev_kind = np.concatenate([[0], events.kinds])[:T]
    prev_minutes = np.concatenate([[0.0], events.minutes])[:T]
    prev_times = np.concatenate([[np.nan], events.times])[:T]
    dense = np.concatenate(
        [
            _time_features(times, prev_times, hours, config.time_origin),
            (np.log1p(prev_minutes) / 5.0)[:, None],
        ],
        axis=1,
    )
    return SequenceTokens(
        prev_item=prev_item.astype(np.int64),
        prev_kind=prev_kind.astype(np.int64),
        device_id=np.asarray(devices, dtype=np.int64),
        surface_id=np.asarray(surfaces, dtype=np.int64),
        dense=dense.astype(np.float32),
        time=times.astype(np.float64),
        target=np.asarray(target, dtype=np.int64),
        target_kind=np.asarray(target_kind, dtype=np.int64),
        target_minutes=np.asarray(target_minutes, dtype=np.float32),
        sample_weight=np.asarray(weight, dtype=np.float32),
    )


@dataclass(frozen=True)
class TokenBatch:
    """Right-padded tokens of B sequences as tensors; (B, T) unless noted.

    Fields are those of ``SequenceTokens`` plus ``mask`` (True on real tokens). Padding has
    ``prev_item`` PREV_BOS, ids 0, features 0, time 0, target NO_TARGET and weight 0. Right
    padding keeps causal attention exact without a key mask: a real token never sees a pad.
    """

    prev_item: torch.Tensor
    prev_kind: torch.Tensor
    device_id: torch.Tensor
    surface_id: torch.Tensor
    dense: torch.Tensor  # (B, T, N_DENSE)
    time: torch.Tensor  # float64
    target: torch.Tensor
    target_kind: torch.Tensor
    target_minutes: torch.Tensor
    sample_weight: torch.Tensor
    mask: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        """(B,) number of real tokens per row."""
        return self.mask.sum(dim=1)

    def to(self, device: torch.device | str) -> TokenBatch:
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})


_PAD = {"prev_item": PREV_BOS, "target": NO_TARGET}


def collate(sequences: Sequence[SequenceTokens], *, max_len: int | None = None) -> TokenBatch:
    """Right-pad sequences into a TokenBatch, keeping each one's last ``max_len`` tokens."""
    if not sequences:
        raise ValueError("collate needs at least one sequence")
    if max_len is not None:
        sequences = [s.window(max(len(s) - max_len, 0), len(s)) for s in sequences]
    B, T = len(sequences), max(max(len(s) for s in sequences), 1)
    out: dict[str, torch.Tensor] = {}
    for f in fields(SequenceTokens):
        first = getattr(sequences[0], f.name)
        padded = np.full((B, T, *first.shape[1:]), _PAD.get(f.name, 0), dtype=first.dtype)
        for b, s in enumerate(sequences):
            padded[b, : len(s)] = getattr(s, f.name)
        out[f.name] = torch.from_numpy(padded)
    mask = np.zeros((B, T), dtype=bool)
    for b, s in enumerate(sequences):
        mask[b, : len(s)] = True
    return TokenBatch(**out, mask=torch.from_numpy(mask))


def sliding_windows(length: int, max_len: int, stride: int) -> list[tuple[int, int]]:
    """``(start, stop)`` windows of at most ``max_len`` tokens, every ``stride`` tokens, the last
    one ending at ``length``; every token is in at least one window."""
    if max_len < 1 or stride < 1:
        raise ValueError(f"max_len and stride must be >= 1; got {max_len} and {stride}")
    if length <= max_len:
        return [(0, length)] if length else []
    starts = list(range(0, length - max_len + 1, stride))
    if starts[-1] + max_len < length:
        starts.append(length - max_len)
    return [(s, s + max_len) for s in starts]


def training_windows(
    sequences: Sequence[SequenceTokens], *, max_len: int, stride: int
) -> list[SequenceTokens]:
    """Sliding windows over every training sequence (see ``sliding_windows``)."""
    return [
        s.window(start, stop)
        for s in sequences
        for start, stop in sliding_windows(len(s), max_len, stride)
    ]


def tokenize_histories(
    histories: Sequence[History],
    catalog: ItemCatalog,
    *,
    weights: Sequence[np.ndarray | None] | None = None,
    contexts: Sequence[EventContext | None] | None = None,
    config: TokenizerConfig = TokenizerConfig(),
) -> list[SequenceTokens]:
    """Training sequences: one token per rolled-up event of each history, all with targets."""
    n = len(histories)
    weights = weights if weights is not None else [None] * n
    contexts = contexts if contexts is not None else [None] * n
    return [
        tokens_of(rollup(h, window_s=config.rollup_window_s, weights=w, context=c), catalog,
                  config=config)
        for h, w, c in zip(histories, weights, contexts, strict=True)
    ]  # fmt: skip


def tokenize_requests(
    requests: Sequence[ScoreRequest],
    catalog: ItemCatalog,
    *,
    max_len: int,
    contexts: Sequence[EventContext | None] | None = None,
    config: TokenizerConfig = TokenizerConfig(),
) -> TokenBatch:
    """Inference tokens: each request's history and its request token, capped to the last
    ``max_len`` tokens. The prediction for request b sits at position ``lengths[b] - 1``."""
    contexts = contexts if contexts is not None else [None] * len(requests)
    sequences = [
        tokens_of(
            rollup(r.history, window_s=config.rollup_window_s, context=c),
            catalog,
            request=r,
            config=config,
        )
        for r, c in zip(requests, contexts, strict=True)
    ]
    return collate(sequences, max_len=max_len)
