"""The foundation model and the ranker behind the Scorer interface, its fit, and its file.

``FMRankerScorer.score`` encodes the B requests' histories with one FM pass per batch of
requests, then runs the ranker over every (request, candidate) pair at position 0 and maps the
logits through the calibrator: calibrated P(play | shown at the top). ``retrieve`` returns the
top N available items by the FM's next-item logits (user embedding · item embedding + bias).

``fit_fm_scorer`` builds one from ``TrainingImpressions``:

1. the decisions are cut by time: the last ``holdout_share`` of them are held out;
2. the FM trains on every user's events strictly before the cut (the union of the decisions'
   point-in-time histories), each event weighted by its source: a recommendation play gets the
   sample weight of its played impression when the impressions carry weights, a search play
   ``search_weight``, anything else 1 (the FM never sees a held-out event, so the held-out
   decisions measure the whole model out of time);
3. the ranker trains on the impressions before the cut, keeping the epoch with the lowest
   held-out loss;
4. the calibrator is fitted on the held-out impressions' logits (at their logged positions), and
   the reported ECE and reliability table come from two-fold cross-fitting on those rows, so they
   are out of sample.

The file (``save``/``load``) is one ``.npz`` archive: a JSON ``meta`` entry (kind ``fm_ranker``,
version, both configs, the calibrator, the catalog's tokens) and the catalog, FM and ranker
arrays; it is written to a temporary file and renamed, so a crash never leaves half a model.
``fm_core.model_file.load_scorer_file`` opens either kind of model file (this one or the
baseline's).
"""

from __future__ import annotations

import json
import logging
import os
import time
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fm_core.baseline import TrainingImpressions
from fm_core.calibration import (
    Calibrator,
    cross_fitted,
    expected_calibration_error,
    fit_calibrator,
    log_loss,
    reliability_table,
)
from fm_core.device import select_device
from fm_core.model import FMConfig, FoundationModel
from fm_core.model_file import FM_RANKER_KIND, open_model_file
from fm_core.ranker import (
    HISTORY_SIMILARITY_CAP,
    LEXICAL_FEATURES,
    PAIR_FEATURES,
    Ranker,
    RankerConfig,
    RankerInputs,
    RankerTrainConfig,
    query_buckets,
    query_tokens,
    ranker_logits,
    train_ranker,
)
from fm_core.tokenize import DEVICE_VOCAB, SURFACE_VOCAB, tokenize_requests
from fm_core.train_fm import TrainConfig, train_fm
from fm_core.types import History, ItemCatalog, ScoreRequest

logger = logging.getLogger(__name__)

KIND = FM_RANKER_KIND
_DAY = 86400.0
_FRESHNESS_DAYS = 14.0


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


# ---- item side --------------------------------------------------------------------------------


def _title_words(tokens: Sequence[str]) -> frozenset[str]:
    """The item's title words: its tokens without a ``namespace:`` prefix, casefolded."""
    return frozenset(t.casefold() for t in tokens if ":" not in t)


class _ItemSide:
    """Item representations and metadata the scorer needs, computed once per model."""

    def __init__(self, fm: FoundationModel, catalog: ItemCatalog) -> None:
        self.table = fm.item_embeddings().float()  # (N, D) on the FM's device
        self.bias = fm.item_bias.detach().float()  # (N,)
        self.table_np = self.table.cpu().numpy()
        self.bias_np = self.bias.cpu().numpy()
        self.norms = np.linalg.norm(self.table_np, axis=1) + 1e-9
        self.release_time = np.asarray(catalog.release_time, dtype=np.float64)
        tokens = catalog.tokens or tuple(() for _ in range(catalog.n_items))
        self.titles = [_title_words(t) for t in tokens]
        self.n_tokens = np.array([max(len(t), 1) for t in self.titles], dtype=np.float64)
        rows_of: dict[str, list[int]] = defaultdict(list)
        for row, item_tokens in enumerate(tokens):
            for token in {t.casefold() for t in item_tokens}:
                rows_of[token].append(row)
        self.rows_of = {t: np.array(r, dtype=np.int64) for t, r in rows_of.items()}
        self.title_rows_of = {
            t: rows for t, rows in self.rows_of.items() if ":" not in t
        }  # title words only
        genres = np.asarray(catalog.genres, dtype=np.float64)
        self.genre_share = genres / np.maximum(genres.sum(axis=1, keepdims=True), 1.0)  # (N, G)
        prior = self.genre_share.sum(axis=0) + 1.0
        self.genre_prior = prior / prior.sum()  # (G,)
        self.unit = self.table_np / self.norms[:, None]  # (N, D) unit vectors

    def genre_affinity(
        self, played_rows: np.ndarray, rows: np.ndarray, *, smoothing: float = 2.0
    ) -> np.ndarray:
        """log (share_i · profile) / (share_i · prior): the user's genre profile (plays smoothed
        toward the catalog's genre mix) against the mix, on each candidate's genres."""
        counts = self.genre_share[played_rows].sum(axis=0) if played_rows.size else 0.0
        profile = (counts + smoothing * self.genre_prior) / (played_rows.size + smoothing)
        share = self.genre_share[rows]
        return np.log((share @ profile + 1e-9) / (share @ self.genre_prior + 1e-9))

    def history_cosine(self, played_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Mean cosine of each candidate with the user's last plays (0 without plays)."""
        recent = played_rows[-HISTORY_SIMILARITY_CAP:]
        if recent.size == 0:
            return np.zeros(rows.size)
        return (self.unit[rows] @ self.unit[recent].T).mean(axis=1)


# ---- the scorer -------------------------------------------------------------------------------


class FMRankerScorer:
    """The FM + DCN-v2 ranker + calibrator behind the Scorer interface."""

    def __init__(
        self,
        *,
        catalog: ItemCatalog,
        fm: FoundationModel,
        ranker: Ranker,
        calibrator: Calibrator,
        model_version: str = "fm-untrained",
        request_batch: int = 256,
        play_counts: np.ndarray | None = None,
    ) -> None:
        if fm.cfg.n_items != catalog.n_items:
            raise ValueError(
                f"the FM has {fm.cfg.n_items} items; the catalog has {catalog.n_items}"
            )
        if ranker.cfg.d_fm != fm.cfg.d_model:
            raise ValueError(f"ranker d_fm {ranker.cfg.d_fm} != the FM's d_model {fm.cfg.d_model}")
        self.catalog = catalog
        self.model_version = model_version
        self.request_batch = request_batch
        self.device = next(fm.parameters()).device
        self.fm = fm.eval()
        self.ranker = ranker.to(self.device).eval()
        self.calibrator = calibrator
        self.play_counts = (
            np.zeros(catalog.n_items)
            if play_counts is None
            else np.asarray(play_counts, dtype=np.float64)
        )
        if self.play_counts.shape != (catalog.n_items,):
            raise ValueError(
                f"play_counts must have one count per catalog item ({catalog.n_items}); "
                f"got shape {self.play_counts.shape}"
            )
        self._items = _ItemSide(self.fm, catalog)

    # ---- validation -------------------------------------------------------------------------

    def _candidate_rows(
        self, candidates: Sequence[np.ndarray], n_requests: int
    ) -> list[np.ndarray]:
        if len(candidates) != n_requests:
            raise ValueError(
                f"requests and candidates must have the same length; got {n_requests} "
                f"and {len(candidates)}"
            )
        rows = []
        for j, given in enumerate(candidates):
            items = np.asarray(given)
            if items.ndim != 1 or items.size == 0:
                raise ValueError(
                    f"candidates[{j}] must be a non-empty 1-D array of item ids; got shape "
                    f"{items.shape}"
                )
            if not np.issubdtype(items.dtype, np.integer):
                raise ValueError(f"candidates[{j}] must hold integer item ids; got {items.dtype}")
            known = self.catalog.known(items)
            if not known.all():
                raise ValueError(
                    f"candidates[{j}] holds item ids the catalog does not know: "
                    f"{[int(i) for i in items[~known][:10]]}"
                )
            rows.append(self.catalog.rows(items))
        return rows

    # ---- features ---------------------------------------------------------------------------

    @torch.no_grad()
    def _user_table(self, requests: Sequence[ScoreRequest]) -> torch.Tensor:
        """(B, D) FM user embeddings, one FM pass per ``request_batch`` requests."""
        out = []
        cfg = self.fm.cfg
        for start in range(0, len(requests), self.request_batch):
            chunk = requests[start : start + self.request_batch]
            batch = tokenize_requests(
                chunk, self.catalog, max_len=cfg.max_len, config=cfg.tokenizer()
            )
            batch = batch.to(self.device)
            # encode with the cached item table (FoundationModel.user_embeddings would rebuild
            # it on every call); the user is the hidden state at the request token
            h = self.fm.encode(batch, self._items.table)  # (b, T, D)
            last = batch.lengths - 1
            out.append(h[torch.arange(h.shape[0], device=h.device), last].float())
        if not out:
            return torch.empty(0, cfg.d_model, device=self.device)
        return torch.cat(out)

    def _source_rows(self, requests: Sequence[ScoreRequest]) -> np.ndarray:
        """Catalog row of each request's source item, or -1 (none, or not in the catalog)."""
        rows = np.full(len(requests), -1, dtype=np.int64)
        for b, request in enumerate(requests):
            source = request.source_item
            if source is not None and bool(self.catalog.known(np.array([source]))[0]):
                rows[b] = int(self.catalog.rows(np.array([source]))[0])
        return rows

    def _context(self, requests: Sequence[ScoreRequest]) -> np.ndarray:
        cfg = self.ranker.cfg
        context = np.zeros((len(requests), 4), dtype=np.int64)
        for b, r in enumerate(requests):
            country = 0
            if r.country:
                country = 1 + zlib.crc32(r.country.casefold().encode()) % (
                    cfg.n_country_buckets - 1
                )
            context[b] = (
                min(SURFACE_VOCAB.get(r.surface or "", 0), cfg.n_surfaces - 1),
                min(DEVICE_VOCAB.get(r.device or "", 0), cfg.n_devices - 1),
                min(r.daypart, cfg.n_dayparts - 1),
                country,
            )
        return context

    def _lexical(self, query: str | None, rows: np.ndarray) -> np.ndarray:
        """(n, 5) LEXICAL_FEATURES: has_query, query_share, title_share, all_query_tokens,
        exact_title."""
        out = np.zeros((rows.size, 5))
        words = list(dict.fromkeys(query_tokens(query)))
        if not words:
            return out
        found = np.zeros(rows.size)
        title_found = np.zeros(rows.size)
        for word in words:
            found += np.isin(rows, self._items.rows_of.get(word, np.empty(0, np.int64)))
            title_found += np.isin(rows, self._items.title_rows_of.get(word, np.empty(0, np.int64)))
        query_set = frozenset(words)
        out[:, 0] = 1.0
        out[:, 1] = found / len(words)
        out[:, 2] = title_found / self._items.n_tokens[rows]
        out[:, 3] = found == len(words)
        out[:, 4] = [self._items.titles[r] == query_set for r in rows]
        return out

    def inputs(
        self,
        requests: Sequence[ScoreRequest],
        request_index: np.ndarray,
        item_rows: np.ndarray,
        positions: np.ndarray | None = None,
        *,
        users: torch.Tensor | None = None,
        popularity: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> RankerInputs:
        """Ranker inputs of the pairs (requests[request_index[m]], catalog row item_rows[m]).

        ``popularity`` is (plays of each pair's item, all plays), both (M,), counted before each
        pair's request (training); by default the counts of the training plays (serving).
        """
        request_index = np.array(request_index, dtype=np.int64)  # writable, for torch
        item_rows = np.asarray(item_rows, dtype=np.int64)
        users = self._user_table(requests) if users is None else users
        items = self._items
        source_rows = self._source_rows(requests)
        source = np.zeros((len(requests), items.table_np.shape[1]), dtype=np.float32)
        has_source = source_rows >= 0
        source[has_source] = items.table_np[source_rows[has_source]]

        user_np = users.cpu().numpy()
        dense = np.zeros((item_rows.size, len(PAIR_FEATURES)))
        column = {name: j for j, name in enumerate(PAIR_FEATURES)}
        item_vectors = items.table_np[item_rows]
        dense[:, column["fm_item_bias"]] = items.bias_np[item_rows]
        if popularity is None:
            counts, totals = self.play_counts[item_rows], self.play_counts.sum()
        else:
            counts, totals = popularity
        dense[:, column["log_popularity"]] = np.log(
            (counts + 1.0) / (totals + self.catalog.n_items)
        )
        dense[:, column["fm_logit"]] = (
            np.sum(user_np[request_index] * item_vectors, axis=1) + items.bias_np[item_rows]
        )
        source_pair = source[request_index]
        dense[:, column["source_cosine"]] = np.sum(source_pair * item_vectors, axis=1) / (
            (np.linalg.norm(source_pair, axis=1) + 1e-9) * items.norms[item_rows]
        )
        dense[:, column["has_source"]] = has_source[request_index]
        times = np.array([r.time for r in requests], dtype=np.float64)
        age_days = np.maximum(times[request_index] - items.release_time[item_rows], 0.0) / _DAY
        dense[:, column["freshness"]] = np.exp(-age_days / _FRESHNESS_DAYS)
        dense[:, column["log_age_days"]] = np.log1p(age_days) / 5.0
        lexical = [column[name] for name in LEXICAL_FEATURES]
        order = np.argsort(request_index, kind="stable")
        bounds = np.searchsorted(request_index[order], np.arange(len(requests) + 1))
        for b, request in enumerate(requests):
            pairs = order[bounds[b] : bounds[b + 1]]
            if pairs.size == 0:
                continue
            rows = item_rows[pairs]
            plays = request.history.plays()
            played_rows = self.catalog.rows(plays[self.catalog.known(plays)])
            dense[pairs, column["seen"]] = np.isin(rows, played_rows)
            dense[pairs, column["log_history_length"]] = np.log1p(played_rows.size) / 5.0
            dense[pairs, column["genre_affinity"]] = items.genre_affinity(played_rows, rows)
            dense[pairs, column["history_cosine"]] = items.history_cosine(played_rows, rows)
            if request.query:
                dense[np.ix_(pairs, lexical)] = self._lexical(request.query, rows)
        cfg = self.ranker.cfg
        query = np.stack(
            [query_buckets(r.query, n_buckets=cfg.n_query_buckets,
                           max_tokens=cfg.max_query_tokens) for r in requests]
        ) if requests else np.zeros((0, cfg.max_query_tokens), dtype=np.int64)  # fmt: skip
        return RankerInputs(
            user=users.float().cpu(),
            source=torch.from_numpy(source),
            context=torch.from_numpy(self._context(requests)),
            query=torch.from_numpy(query),
            request_index=torch.from_numpy(request_index),
            item=torch.from_numpy(item_vectors.astype(np.float32)),
            dense=torch.from_numpy(dense.astype(np.float32)),
            position=torch.from_numpy(
                np.zeros(item_rows.size, np.int64)
                if positions is None
                else np.array(positions, dtype=np.int64)  # a writable copy
            ),
        )

    # ---- the Scorer interface -----------------------------------------------------------------

    def score(
        self, requests: Sequence[ScoreRequest], candidates: Sequence[np.ndarray]
    ) -> list[np.ndarray]:
        """Calibrated P(play | shown at the top) for each request's candidate item ids."""
        rows = self._candidate_rows(candidates, len(requests))
        out: list[np.ndarray] = []
        for start in range(0, len(requests), self.request_batch):
            chunk = list(requests[start : start + self.request_batch])
            chunk_rows = rows[start : start + self.request_batch]
            sizes = [r.size for r in chunk_rows]
            index = np.repeat(np.arange(len(chunk)), sizes)
            inputs = self.inputs(chunk, index, np.concatenate(chunk_rows))
            probabilities = self.calibrator.predict(ranker_logits(self.ranker, inputs))
            out.extend(np.split(probabilities, np.cumsum(sizes)[:-1]))
        return out

    def user_embeddings(self, requests: Sequence[ScoreRequest]) -> np.ndarray:
        """(B, D) FM user embeddings at each request (its history and request token)."""
        return self._user_table(requests).cpu().numpy()

    def item_embeddings(self, items: np.ndarray) -> np.ndarray:
        """(N, D) FM item embeddings; unknown ids raise ValueError naming them."""
        items = np.asarray(items)
        rows = self._candidate_rows([items], 1)[0] if items.size else np.empty(0, np.int64)
        return self._items.table_np[rows]

    @torch.no_grad()
    def retrieve(self, request: ScoreRequest, n: int, *, exclude_seen: bool = False) -> np.ndarray:
        """The top ``n`` released item ids by FM logit, best first (ties by id); the user's
        played items are left out when ``exclude_seen``."""
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise ValueError(f"n must be a positive int; got {n!r}")
        users = self._user_table([request])  # (1, D)
        logits = (users @ self._items.table.T + self._items.bias)[0].cpu().numpy()  # (N,)
        keep = self._items.release_time <= request.time
        if exclude_seen:
            plays = request.history.plays()
            plays = plays[self.catalog.known(plays)]
            keep[self.catalog.rows(plays)] = False
        rows = np.flatnonzero(keep)
        items = self.catalog.item_ids[rows]
        order = np.lexsort((items, -logits[rows]))
        return items[order][: int(n)]

    # ---- persistence ------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the whole scorer to ``path`` (.npz) atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "kind": KIND,
            "model_version": self.model_version,
            "request_batch": self.request_batch,
            "fm_config": asdict(self.fm.cfg),
            "ranker_config": asdict(self.ranker.cfg),
            "calibrator": self.calibrator.to_dict(),
            "play_counts": self.play_counts.tolist(),
            "genre_names": list(self.catalog.genre_names),
            "tokens": [list(t) for t in self.catalog.tokens],
        }
        arrays = {
            "item_ids": self.catalog.item_ids,
            "genres": self.catalog.genres,
            "release_time": self.catalog.release_time,
        }
        for prefix, module in (("fm", self.fm), ("ranker", self.ranker)):
            for key, value in module.state_dict().items():
                arrays[f"{prefix}/{key}"] = value.detach().cpu().numpy()
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as handle:
            np.savez(handle, meta=np.array(json.dumps(meta)), **arrays)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> FMRankerScorer:
        """Read a scorer written by ``save``; any other file raises ValueError naming it."""
        with open_model_file(path) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("kind") != KIND:
                raise ValueError(f"{path} is not an {KIND} model (kind {meta.get('kind')!r})")
            catalog = ItemCatalog(
                item_ids=data["item_ids"],
                genres=data["genres"],
                release_time=data["release_time"],
                tokens=tuple(tuple(t) for t in meta["tokens"]),
                genre_names=tuple(meta["genre_names"]),
            )
            states: dict[str, dict[str, torch.Tensor]] = {"fm": {}, "ranker": {}}
            for name in data.files:
                prefix, _, key = name.partition("/")
                if prefix in states and key:
                    states[prefix][key] = torch.from_numpy(np.array(data[name]))
        device = select_device()
        fm = FoundationModel(FMConfig(**meta["fm_config"]))
        fm.load_state_dict(states["fm"])
        ranker = Ranker(RankerConfig(**meta["ranker_config"]))
        ranker.load_state_dict(states["ranker"])
        return cls(
            catalog=catalog,
            fm=fm.to(device),
            ranker=ranker,
            calibrator=Calibrator.from_dict(meta["calibrator"]),
            model_version=meta["model_version"],
            request_batch=int(meta["request_batch"]),
            play_counts=np.asarray(meta["play_counts"], dtype=np.float64),
        )


# ---- fitting ----------------------------------------------------------------------------------


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


def _holdout_cut(data: TrainingImpressions, share: float) -> float:
    times = np.sort([r.time for r in data.requests])
    return float(times[min(int(np.floor((1.0 - share) * times.size)), times.size - 1)])


def fit_fm_scorer(
    data: TrainingImpressions,
    catalog: ItemCatalog,
    config: FMScorerConfig | None = None,
    *,
    model_version: str = "fm",
) -> tuple[FMRankerScorer, FitReport]:
    """Train the FM on the users' histories and the ranker on the impressions, calibrate on
    the held-out decisions, and return the scorer with its training report."""
    config = config or FMScorerConfig()
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
    fm_cfg = config.fm.with_catalog(catalog)
    fm_result = train_fm(sequences, catalog, fm_cfg, config.fm_train)
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
    train_rows = torch.from_numpy(np.flatnonzero(~held))
    held_rows = torch.from_numpy(np.flatnonzero(held))
    held_weights = None if weights is None else weights[held]
    ranker_result = train_ranker(
        ranker,
        all_inputs.pairs(train_rows),
        labels[~held],
        None if weights is None else weights[~held],
        valid=(all_inputs.pairs(held_rows), labels[held], held_weights),
        config=config.ranker_train,
    )
    scorer.ranker = ranker_result.ranker.to(scorer.device).eval()
    logits = ranker_logits(scorer.ranker, all_inputs.pairs(held_rows))
    y = labels[held]
    scorer.calibrator = fit_calibrator(logits, y, held_weights, method=config.calibration)
    method = scorer.calibrator.method
    raw = np.clip(1.0 / (1.0 + np.exp(-logits)), 1e-6, 1 - 1e-6)
    calibrated = cross_fitted(logits, y, held_weights, method=method)
    report = FitReport(
        cut_time=cut,
        train_pairs=int((~held).sum()),
        holdout_pairs=int(held.sum()),
        holdout_plays=int(y.sum()),
        fm_sequences=len(sequences),
        fm_epochs=[asdict(m) for m in fm_result.metrics],
        ranker_epochs=[asdict(e) for e in ranker_result.epochs],
        ranker_best_epoch=ranker_result.best_epoch,
        calibration=method,
        log_loss_raw=log_loss(raw, y, held_weights),
        log_loss=log_loss(calibrated, y, held_weights),
        ece_raw=expected_calibration_error(raw, y, held_weights),
        ece=expected_calibration_error(calibrated, y, held_weights),
        reliability=[asdict(b) for b in reliability_table(calibrated, y, held_weights)],
        seconds=time.perf_counter() - started,
    )
    logger.info(
        "fitted %s: %d training and %d held-out pairs, calibration %s, ECE %.4f (raw %.4f), "
        "%.1f s",
        model_version, report.train_pairs, report.holdout_pairs, method, report.ece,
        report.ece_raw, report.seconds,
    )  # fmt: skip
    return scorer, report
