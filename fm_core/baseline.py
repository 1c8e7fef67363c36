"""The baseline scorer: a logistic model over popularity, genre affinity and context lifts.

P(play | user u, item i, request x, position k) = σ(β·f(u, i, x, k)) with features

- log popularity: log((plays of i before t + 1) / (all plays before t + n)), point in time;
- genre affinity: log lift of the user's genre profile (smoothed toward the global mix) over
  the global mix, on the item's genres;
- daypart and device lifts: log P(genre | daypart) / P(genre), learned from played impressions;
- seen: the user has played i before;
- freshness: exp(−age / freshness_days), for cold-start items;
- position: log log2(k + 2), 0 at the top. Scores are served at k = 0, so they are calibrated
  P(play | shown at the top) with the position effect of the logs factored out.

It stands behind the Scorer interface until the transformer FM replaces it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fm_core.impressions import TrainingImpressions, plays_before
from fm_core.logistic import fit_logistic, sigmoid
from fm_core.model_archive import BASELINE_KIND, open_model_file, write_model_file
from fm_core.types import N_DAYPARTS, ItemCatalog, ScoreRequest

logger = logging.getLogger(__name__)

FEATURES = (
    "bias", "log_popularity", "genre_affinity", "daypart_lift", "device_lift", "seen",
    "freshness", "position",
)  # fmt: skip
_SECONDS_PER_DAY = 86400.0


_AFFINITY = FEATURES.index("genre_affinity")
_SEEN = FEATURES.index("seen")
_FRESHNESS = FEATURES.index("freshness")


@dataclass(frozen=True)
class _ServingTable:
    """The terms of a fitted model's logit that depend on the item alone, per catalog row, or on
    the item and one request field: what serving looks up instead of recomputing. Built from
    the model's arrays, which it keeps to tell when ``fit`` or ``load`` replaced one, and a copy
    of the coefficients, to tell when they were changed in place."""

    sources: tuple[np.ndarray, ...]
    coef: np.ndarray
    fixed: np.ndarray
    """(N,) bias + log-popularity terms (the position term is 0 at the top, where scores are
    served)."""
    daypart: np.ndarray
    """(N, dayparts) the daypart-lift term."""
    device: np.ndarray
    """(N, devices) the device-lift term."""
    prior_affinity: np.ndarray
    """(N,) the genre-affinity denominator: the item's share of the global mix, + 1e-9."""

    @staticmethod
    def _sources(model: PopularityAffinityScorer) -> tuple[np.ndarray, ...]:
        return (model.coef_, model.play_counts_, model.daypart_lift_, model.device_lift_,
                model.genre_prior_, model._share)  # fmt: skip

    def made_from(self, model: PopularityAffinityScorer) -> bool:
        return all(
            a is b for a, b in zip(self.sources, self._sources(model), strict=True)
        ) and np.array_equal(self.coef, model.coef_)

    @classmethod
    def of(cls, model: PopularityAffinityScorer) -> _ServingTable:
        coef, counts = model.coef_, model.play_counts_
        share = model._share
        log_popularity = np.log((counts + 1.0) / (counts.sum() + model.catalog.n_items))
        return cls(
            sources=cls._sources(model),
            coef=coef.copy(),
            fixed=coef[FEATURES.index("bias")]
            + coef[FEATURES.index("log_popularity")] * log_popularity,
            daypart=coef[FEATURES.index("daypart_lift")] * (share @ model.daypart_lift_),
            device=coef[FEATURES.index("device_lift")] * (share @ model.device_lift_),
            prior_affinity=share @ model.genre_prior_ + 1e-9,
        )


class PopularityAffinityScorer:
    """Popularity × genre-affinity baseline behind the Scorer interface."""

    def __init__(
        self,
        catalog: ItemCatalog,
        *,
        l2: float = 1.0,
        freshness_days: float = 14.0,
        genre_smoothing: float = 2.0,
        model_version: str = "baseline-untrained",
    ) -> None:
        self.catalog = catalog
        self.l2 = l2
        self.freshness_days = freshness_days
        self.genre_smoothing = genre_smoothing
        self.model_version = model_version
        n_genres = catalog.genres.shape[1]
        self._share = catalog.genres / np.maximum(catalog.genres.sum(axis=1, keepdims=True), 1)
        self.genre_prior_ = np.full(n_genres, 1.0 / n_genres)
        self.play_counts_ = np.zeros(catalog.n_items)
        self.daypart_lift_ = np.zeros((n_genres, N_DAYPARTS))
        self.devices_: tuple[str, ...] = ()
        self.device_lift_ = np.zeros((n_genres, 0))
        self.coef_ = np.zeros(len(FEATURES))
        self.coef_[FEATURES.index("log_popularity")] = 1.0
        self._serving: _ServingTable | None = None

    # ---- features -------------------------------------------------------------------------

    def _genre_profile(self, request: ScoreRequest) -> np.ndarray:
        """The user's genre profile: shares of their plays, smoothed toward the global mix."""
        plays = request.history.plays()
        if not plays.size:  # the general expression below with no plays, to the same bits
            return (self.genre_smoothing * self.genre_prior_) / self.genre_smoothing
        plays = plays[self.catalog.known(plays)]
        counts = self._share[self.catalog.rows(plays)].sum(axis=0) if plays.size else 0.0
        return (counts + self.genre_smoothing * self.genre_prior_) / (
            plays.size + self.genre_smoothing
        )

    def _genre_affinity(self, request: ScoreRequest, rows: np.ndarray) -> np.ndarray:
        share = self._share[rows]
        profile = self._genre_profile(request)
        return np.log((share @ profile + 1e-9) / (share @ self.genre_prior_ + 1e-9))

    def features(
        self,
        request: ScoreRequest,
        items: np.ndarray,
        *,
        positions: np.ndarray | None = None,
        popularity: np.ndarray | None = None,
        total_plays: float | None = None,
    ) -> np.ndarray:
        """(n, F) design matrix for ``items`` under ``request``.

        ``popularity`` and ``total_plays`` default to the counts learned at fit time; training
        passes point-in-time counts instead.
        """
        rows = self.catalog.rows(items)
        n = rows.size
        counts = self.play_counts_[rows] if popularity is None else popularity
        total = self.play_counts_.sum() if total_plays is None else total_plays
        X = np.empty((n, len(FEATURES)))
        X[:, 0] = 1.0
        X[:, 1] = np.log((counts + 1.0) / (total + self.catalog.n_items))
        X[:, 2] = self._genre_affinity(request, rows)
        share = self._share[rows]
        X[:, 3] = share @ self.daypart_lift_[:, request.daypart]
        if request.device in self.devices_:
            X[:, 4] = share @ self.device_lift_[:, self.devices_.index(request.device)]
        else:
            X[:, 4] = 0.0
        X[:, 5] = np.isin(items, request.history.plays())
        age_days = (request.time - self.catalog.release_time[rows]) / _SECONDS_PER_DAY
        X[:, 6] = np.exp(-np.maximum(age_days, 0.0) / self.freshness_days)
        X[:, 7] = 0.0 if positions is None else np.log(np.log2(positions + 2.0))
        return X

    # ---- training -------------------------------------------------------------------------

    def _context_lifts(self, data: TrainingImpressions) -> None:
        played = data.labels > 0
        share = self._share[self.catalog.rows(data.item_ids[played])]
        requests = [data.requests[j] for j in data.request_index[played]]
        n_genres = share.shape[1]
        total = share.sum(axis=0) + 1.0
        self.genre_prior_ = total / total.sum()
        dayparts = np.array([r.daypart for r in requests], dtype=np.int64)
        self.daypart_lift_ = self._lift(share, dayparts, N_DAYPARTS)
        devices = sorted({r.device for r in requests if r.device is not None})
        self.devices_ = tuple(devices)
        device_index = np.array(
            [devices.index(r.device) if r.device in devices else -1 for r in requests],
            dtype=np.int64,
        )
        keep = device_index >= 0
        self.device_lift_ = (
            self._lift(share[keep], device_index[keep], len(devices))
            if devices
            else np.zeros((n_genres, 0))
        )

    def _lift(self, share: np.ndarray, column: np.ndarray, n_columns: int) -> np.ndarray:
        """log P(genre | column) / P(genre), smoothed toward 0 with 5 pseudo-plays."""
        onehot = np.zeros((column.size, n_columns))
        onehot[np.arange(column.size), column] = 1.0
        joint = share.T @ onehot + 5.0 * self.genre_prior_[:, None] / n_columns
        p_genre_given_column = joint / joint.sum(axis=0, keepdims=True)
        return np.log(p_genre_given_column / self.genre_prior_[:, None])

    def _point_in_time_popularity(self, data: TrainingImpressions) -> tuple[np.ndarray, np.ndarray]:
        """Plays of each row's item, and of all items, strictly before the row's request."""
        known = self.catalog.known(data.play_item_ids)
        play_rows = self.catalog.rows(data.play_item_ids[known])
        play_times = np.asarray(data.play_times, dtype=np.float64)[known]
        row_times = np.array([data.requests[j].time for j in data.request_index], dtype=np.float64)
        return plays_before(play_rows, play_times, self.catalog.rows(data.item_ids), row_times)

    def fit(self, data: TrainingImpressions, *, model_version: str | None = None) -> None:
        """Learn the context lifts, the popularity counts and the coefficients."""
        if data.labels.size == 0:
            raise ValueError("no impressions to learn from")
        self._context_lifts(data)
        popularity, totals = self._point_in_time_popularity(data)
        X = np.empty((data.labels.size, len(FEATURES)))
        order = np.argsort(data.request_index, kind="stable")
        bounds = np.searchsorted(data.request_index[order], np.arange(len(data.requests) + 1))
        for j, request in enumerate(data.requests):
            rows = order[bounds[j] : bounds[j + 1]]
            if rows.size == 0:
                continue
            X[rows] = self.features(
                request,
                data.item_ids[rows],
                positions=data.positions[rows],
                popularity=popularity[rows],
                total_plays=float(totals[rows[0]]),
            )
        self.coef_ = fit_logistic(
            X, data.labels.astype(np.float64), sample_weight=data.weights, l2=self.l2
        )
        known = self.catalog.known(data.play_item_ids)
        self.play_counts_ = np.bincount(
            self.catalog.rows(data.play_item_ids[known]), minlength=self.catalog.n_items
        ).astype(np.float64)
        if model_version is not None:
            self.model_version = model_version
        logger.info(
            "fitted %s on %d impressions: %s",
            self.model_version,
            data.labels.size,
            dict(zip(FEATURES, np.round(self.coef_, 3), strict=True)),
        )

    # ---- serving --------------------------------------------------------------------------

    def score(
        self, requests: Sequence[ScoreRequest], candidates: Sequence[np.ndarray]
    ) -> list[np.ndarray]:
        if len(requests) != len(candidates):
            raise ValueError(
                f"requests and candidates must have the same length; got {len(requests)} "
                f"and {len(candidates)}"
            )
        table = self._serving_table()
        return [
            self._serve_one(table, r, np.asarray(c, dtype=np.int64))
            for r, c in zip(requests, candidates, strict=True)
        ]

    def _serving_table(self) -> _ServingTable:
        """The fitted model's per-item terms, rebuilt when ``fit`` or ``load`` replaced a part."""
        table = self._serving
        if table is None or not table.made_from(self):
            table = self._serving = _ServingTable.of(self)
        return table

    def _serve_one(
        self, table: _ServingTable, request: ScoreRequest, items: np.ndarray
    ) -> np.ndarray:
        """``predict_logistic(self.features(request, items), self.coef_)`` (equal to rounding:
        the sum runs in another order), from the per-item terms of ``table``, so that a request
        costs one gather per term rather than the design matrix's products and logarithms."""
        rows = self.catalog.rows(items)
        coef = self.coef_
        logit = table.fixed[rows] + table.daypart[rows, request.daypart]
        if request.device in self.devices_:
            logit += table.device[rows, self.devices_.index(request.device)]
        profile = self._genre_profile(request)
        # Every item's match with the profile and then the candidates' (one pass over the share
        # matrix) unless the candidates are few, where copying their rows out is less work.
        if 4 * rows.size >= self.catalog.n_items:
            match = (self._share @ profile)[rows]
        else:
            match = self._share[rows] @ profile
        affinity = np.log((match + 1e-9) / table.prior_affinity[rows])
        logit += coef[_AFFINITY] * affinity
        plays = request.history.plays()
        if plays.size:  # a mask over the catalog: np.isin sorts both lists on every request
            seen = np.zeros(self.catalog.n_items, dtype=bool)
            seen[self.catalog.rows(plays[self.catalog.known(plays)])] = True
            logit += coef[_SEEN] * seen[rows]
        age_days = (request.time - self.catalog.release_time[rows]) / _SECONDS_PER_DAY
        logit += coef[_FRESHNESS] * np.exp(-np.maximum(age_days, 0.0) / self.freshness_days)
        return sigmoid(logit)

    def user_embeddings(self, requests: Sequence[ScoreRequest]) -> np.ndarray:
        """The users' smoothed genre profiles, (B, G)."""
        out = []
        for request in requests:
            plays = request.history.plays()
            plays = plays[self.catalog.known(plays)]
            counts = self._share[self.catalog.rows(plays)].sum(axis=0) if plays.size else 0.0
            out.append(
                (counts + self.genre_smoothing * self.genre_prior_)
                / (plays.size + self.genre_smoothing)
            )
        return np.vstack(out) if out else np.empty((0, self.genre_prior_.size))

    def item_embeddings(self, items: np.ndarray) -> np.ndarray:
        """The items' genre shares, (N, G)."""
        return self._share[self.catalog.rows(items)]

    def retrieve(self, request: ScoreRequest, n: int, *, exclude_seen: bool = False) -> np.ndarray:
        items = self.catalog.available(request.time)
        if exclude_seen:
            items = items[~np.isin(items, request.history.plays())]
        scores = self.score([request], [items])[0]
        order = np.lexsort((items, -scores))
        return items[order][:n]

    # ---- persistence ------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the model (catalog included) to ``path`` (.npz) atomically."""
        meta = {
            "model_version": self.model_version,
            "l2": self.l2,
            "freshness_days": self.freshness_days,
            "genre_smoothing": self.genre_smoothing,
            "devices": list(self.devices_),
            "features": list(FEATURES),
        }
        arrays = {
            "genre_prior": self.genre_prior_,
            "play_counts": self.play_counts_,
            "daypart_lift": self.daypart_lift_,
            "device_lift": self.device_lift_,
            "coef": self.coef_,
        }
        return write_model_file(path, BASELINE_KIND, meta, self.catalog, arrays)

    @classmethod
    def load(cls, path: str | Path) -> PopularityAffinityScorer:
        """Read a model written by ``save``; any other file raises ValueError naming it."""
        with open_model_file(path, BASELINE_KIND) as archive:
            meta, data = archive.meta, archive.data
            model = cls(
                archive.catalog(),
                l2=meta["l2"],
                freshness_days=meta["freshness_days"],
                genre_smoothing=meta["genre_smoothing"],
                model_version=meta["model_version"],
            )
            model.genre_prior_ = data["genre_prior"]
            model.play_counts_ = data["play_counts"]
            model.daypart_lift_ = data["daypart_lift"]
            model.device_lift_ = data["device_lift"]
            model.devices_ = tuple(meta["devices"])
            model.coef_ = data["coef"]
        return model
