"""The Vowpal Wabbit ``cb_adf`` text format: the one place that writes it.

A decision over n candidate actions is one multi-line example (VW's "action dependent features",
``--cb_adf`` / ``--cb_explore_adf``)::

    shared |c surface=home device=tv daypart=evening country=US |q star wars |u u0:0.12 u1:-0.4
    |a id=101 score:0.53 |e e0:0.8 e1:-0.1
    0:-1:0.25 |a id=205 score:0.31 |e e0:0.2 e1:0.7
    |a id=317 score:0.12 |e e0:-0.5 e1:0.3

Namespaces (VW keys a namespace by its first letter, which interactions such as ``-q ca`` use):

- ``c``: the request context as categorical features ``name=value`` (surface, device, daypart,
  country);
- ``q``: the query's lower-cased tokens;
- ``u``: the user embedding, ``u<j>:<value>``;
- ``a``: the action's item id as a hashed categorical feature ``id=<item>`` and the scorer's
  score ``score:<value>``;
- ``e``: the item embedding, ``e<j>:<value>``.

A learning example carries the label ``0:<cost>:<probability>`` on the chosen action's line only
(in ADF mode VW ignores the action number before the first colon; ``0`` is the convention). The
cost is the negated reward, and the probability is the one the logging policy used to choose that
action among the listed candidates. Feature names are sanitized: whitespace, ``|`` and ``:``
become ``_``. Values are written with 9 significant digits, which is exact for VW's 32-bit floats.

A slate of K positions is K such examples (:func:`slate_examples`): the example of position k lists
the candidates not shown above it, and its probability is the conditional propensity
π(a_k | a_1..a_{k-1}, x) of the logged record (DESIGN §3). The policy (``explore.vw_policy``) and
the export of the log (``proplog.export_vw``) both write through :func:`cb_adf_lines`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from vocab import DAYPARTS, daypart_of_hour

_UNSAFE = re.compile(r"[\s|:]+")


def feature_name(value: object) -> str:
    """``value`` as a VW feature name: whitespace, ``|`` and ``:`` replaced by ``_``."""
    return _UNSAFE.sub("_", str(value).strip())


def daypart_name(hour: float) -> str:
    """The name of a local hour's daypart (``vocab.daypart_of_hour``), as a feature value."""
    return DAYPARTS[daypart_of_hour(hour)]


def _number(value: float) -> str:
    return f"{value + 0.0:.9g}"  # + 0.0 writes a negated zero reward as 0, not -0


def _dense(prefix: str, values: np.ndarray) -> str:
    return " ".join(f"{prefix}{j}:{v:.9g}" for j, v in enumerate(values.tolist()))


def _finite_array(value: object, name: str, ndim: int, dtype: type = np.float64) -> np.ndarray:
    array = np.asarray(value, dtype=dtype)
    if array.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array; got shape {array.shape}")
    if dtype is np.float64 and not np.all(np.isfinite(array)):
        bad = np.argwhere(~np.isfinite(array))[0]
        raise ValueError(f"{name} must be finite; got {array[tuple(bad)]} at index {tuple(bad)}")
    return array


@dataclass(frozen=True)
class RequestContext:
    """The shared features of one decision: the request context and the user's embedding.

    Every field is optional; a missing one writes no feature. ``user_embedding`` is a 1-D array
    (the scorer's user vector).
    """

    surface: str | None = None
    device: str | None = None
    daypart: str | None = None
    country: str | None = None
    query: str | None = None
    user_embedding: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.user_embedding is not None:
            vector = _finite_array(self.user_embedding, "user_embedding", 1)
            object.__setattr__(self, "user_embedding", vector)

    def shared_line(self) -> str:
        """The ``shared`` line of the multi-line example."""
        categorical = [
            f"{name}={feature_name(value)}"
            for name, value in (
                ("surface", self.surface),
                ("device", self.device),
                ("daypart", self.daypart),
                ("country", self.country),
            )
            if value is not None and feature_name(value)
        ]
        parts = ["shared |c " + " ".join(categorical) if categorical else "shared |c"]
        if self.query:
            tokens = [feature_name(t) for t in self.query.lower().split()]
            tokens = [t for t in tokens if t]
            if tokens:
                parts.append("|q " + " ".join(tokens))
        if self.user_embedding is not None and self.user_embedding.size:
            parts.append("|u " + _dense("u", self.user_embedding))
        return " ".join(parts)


@dataclass(frozen=True)
class ActionFeatures:
    """Per-candidate features of one decision, row i for candidate i.

    Attributes:
        scores: (n,) the scorer's scores (for example calibrated P(play)).
        item_ids: (n,) int item ids, written as hashed categorical features; optional.
        item_embeddings: (n, d) the scorer's item vectors; optional.
    """

    scores: np.ndarray
    item_ids: np.ndarray | None = None
    item_embeddings: np.ndarray | None = None
    _lines: list[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        scores = _finite_array(self.scores, "scores", 1)
        if scores.size == 0:
            raise ValueError("scores must list at least one candidate; got 0")
        object.__setattr__(self, "scores", scores)
        n = scores.size
        if self.item_ids is not None:
            ids = np.asarray(self.item_ids)
            if ids.shape != (n,) or not np.issubdtype(ids.dtype, np.integer):
                raise ValueError(
                    f"item_ids must be ({n},) integers, one per score; got shape {ids.shape} "
                    f"of {ids.dtype}"
                )
            object.__setattr__(self, "item_ids", ids.astype(np.int64))
        if self.item_embeddings is not None:
            emb = _finite_array(self.item_embeddings, "item_embeddings", 2)
            if emb.shape[0] != n:
                raise ValueError(
                    f"item_embeddings must have one row per score ({n}); got shape {emb.shape}"
                )
            object.__setattr__(self, "item_embeddings", emb)
        object.__setattr__(self, "_lines", [])

    def __len__(self) -> int:
        return int(self.scores.size)

    def action_lines(self) -> list[str]:
        """One unlabelled line per candidate (computed once and kept)."""
        if not self._lines:
            ids = self.item_ids.tolist() if self.item_ids is not None else None
            scores = self.scores.tolist()
            lines = []
            for i in range(len(scores)):
                head = f"|a score:{scores[i]:.9g}"
                if ids is not None:
                    head = f"|a id={ids[i]} score:{scores[i]:.9g}"
                if self.item_embeddings is not None and self.item_embeddings.shape[1]:
                    head += " |e " + _dense("e", self.item_embeddings[i])
                lines.append(head)
            self._lines.extend(lines)
        return self._lines


@dataclass(frozen=True)
class CbLabel:
    """The logged outcome of one choice: ``action`` indexes the listed candidates."""

    action: int
    cost: float
    probability: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.cost):
            raise ValueError(f"cost must be finite; got {self.cost}")
        if not 0.0 < self.probability <= 1.0:
            raise ValueError(f"probability must be in (0, 1]; got {self.probability}")

    def text(self) -> str:
        return f"0:{_number(self.cost)}:{_number(self.probability)}"


def cb_adf_lines(
    context: RequestContext,
    actions: ActionFeatures,
    *,
    candidates: np.ndarray | None = None,
    label: CbLabel | None = None,
) -> list[str]:
    """The ``cb_adf`` multi-line example of one choice: the shared line, then one line per listed
    candidate (``candidates``, indices into ``actions``, in that order; all when None).

    ``label.action`` indexes the listed candidates; its line gets ``0:cost:probability``.
    """
    lines = actions.action_lines()
    if candidates is None:
        listed = list(lines)
    else:
        idx = np.asarray(candidates, dtype=np.int64)
        if idx.ndim != 1 or idx.size == 0 or idx.min() < 0 or idx.max() >= len(lines):
            raise ValueError(
                f"candidates must be a non-empty 1-D array of indices in [0, {len(lines)}); "
                f"got {idx.tolist()[:10]}"
            )
        listed = [lines[i] for i in idx.tolist()]
    if label is not None:
        if not 0 <= label.action < len(listed):
            raise ValueError(
                f"label.action must index the {len(listed)} listed candidates; got {label.action}"
            )
        listed[label.action] = f"{label.text()} {listed[label.action]}"
    return [context.shared_line(), *listed]


@dataclass(frozen=True)
class LoggedSlate:
    """A logged decision joined with its rewards, ready to learn from or export.

    Attributes:
        context: the request's shared features.
        actions: the candidates' features, in the logged candidate order.
        chosen: (K,) indices into ``actions`` of the items shown at positions 0..K-1.
        cond_propensity: (K,) π(a_k | a_1..a_{k-1}, x) as logged.
        reward: (K,) the reward at each position (for example 1 if played); cost = −reward.
        decision_id: the decision, for error messages and tracing.
    """

    context: RequestContext
    actions: ActionFeatures
    chosen: np.ndarray
    cond_propensity: np.ndarray
    reward: np.ndarray
    decision_id: str = ""

    def __post_init__(self) -> None:
        where = f" (decision {self.decision_id})" if self.decision_id else ""
        chosen = np.asarray(self.chosen, dtype=np.int64)
        if chosen.ndim != 1 or chosen.size == 0:
            raise ValueError(f"chosen must be a non-empty 1-D array{where}; got {chosen.shape}")
        n = len(self.actions)
        if chosen.min() < 0 or chosen.max() >= n or np.unique(chosen).size != chosen.size:
            raise ValueError(
                f"chosen must be distinct indices in [0, {n}){where}; got {chosen.tolist()}"
            )
        for name in ("cond_propensity", "reward"):
            values = _finite_array(getattr(self, name), name, 1)
            if values.shape != chosen.shape:
                raise ValueError(
                    f"{name} must have one entry per position ({chosen.size}){where}; "
                    f"got shape {values.shape}"
                )
            object.__setattr__(self, name, values)
        bad = np.flatnonzero(~((self.cond_propensity > 0) & (self.cond_propensity <= 1)))
        if bad.size:
            raise ValueError(
                f"cond_propensity must be in (0, 1]{where}; got {self.cond_propensity[bad[0]]} "
                f"at position {bad[0]}"
            )
        object.__setattr__(self, "chosen", chosen)


def slate_examples(logged: LoggedSlate, *, all_positions: bool = False) -> Iterator[list[str]]:
    """The labelled ``cb_adf`` examples of a logged slate: position 0 only, or every position.

    The example of position k lists the candidates not shown at positions < k (in candidate
    order), labels the item shown at k with cost −reward[k] and probability cond_propensity[k].
    """
    remaining = np.ones(len(logged.actions), dtype=bool)
    positions = logged.chosen.size if all_positions else 1
    for k in range(positions):
        listed = np.flatnonzero(remaining)
        chosen = int(logged.chosen[k])
        label = CbLabel(
            action=int(np.searchsorted(listed, chosen)),
            cost=-float(logged.reward[k]),
            probability=float(logged.cond_propensity[k]),
        )
        yield cb_adf_lines(logged.context, logged.actions, candidates=listed, label=label)
        remaining[chosen] = False
