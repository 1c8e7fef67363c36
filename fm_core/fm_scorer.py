"""The FM scorer: the foundation model and the ranker behind the Scorer interface.

``FMRankerScorer.score`` encodes the B requests' histories with one FM pass per batch of
requests, then runs the ranker over every (request, candidate) pair at position 0 and maps the
logits through the calibrator: calibrated P(play | shown at the top). ``retrieve`` returns the
top N available items by the FM's next-item logits (user embedding · item embedding + bias).

Its fit is ``fm_core.fm_scorer_fit``, its per-item tables ``fm_core.fm_scorer_items``. Its file
(``save``/``load``) is a model file of kind ``fm_ranker`` (``fm_core.model_archive``): the
configs, the calibrator and the play counts in ``meta``, the FM's and ranker's weights as
``fm/...`` and ``ranker/...`` entries. Probabilities come from the calibrator of the request's
surface where the fit gave that surface one (``surface_calibrators``,
``fm_core.surface_calibration``), else from the pooled ``calibrator``.
``fm_core.model_file.load_scorer_file`` opens either kind of model file (this one or the
baseline's).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from fm_core.calibration import Calibrator
from fm_core.device import select_device
from fm_core.fm_scorer_items import ItemSide
from fm_core.model import FMConfig, FoundationModel
from fm_core.model_archive import FM_RANKER_KIND, open_model_file, write_model_file
from fm_core.ranker import (
    LEXICAL_FEATURES,
    PAIR_FEATURES,
    Ranker,
    RankerConfig,
    RankerInputs,
    query_buckets,
    ranker_logits,
)
from fm_core.surface_calibration import calibrate, calibrators_from_dict, calibrators_to_dict
from fm_core.tokenize import DEVICE_VOCAB, SURFACE_VOCAB, tokenize_requests
from fm_core.types import ItemCatalog, ScoreRequest

_DAY = 86400.0
_FRESHNESS_DAYS = 14.0


class FMRankerScorer:
    """The FM + DCN-v2 ranker + calibrator behind the Scorer interface."""

    embedding_neighbours = True
    """Its item embeddings are learned: a title's nearest items by them are candidates worth
    retrieving (the decision side's ``loop.retrieval``)."""

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
        surface_calibrators: dict[str, Calibrator] | None = None,
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
        self.surface_calibrators: dict[str, Calibrator] = dict(surface_calibrators or {})
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
        self._items = ItemSide(self.fm, catalog)

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
            # the user is the hidden state at the request token, encoded with the cached table
            out.append(self.fm.user_embeddings(batch, self._items.table).float())
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
                dense[np.ix_(pairs, lexical)] = items.lexical(request.query, rows)
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
            surfaces = np.repeat(np.array([r.surface or "" for r in chunk], dtype=object), sizes)
            probabilities = calibrate(
                ranker_logits(self.ranker, inputs),
                surfaces,
                self.calibrator,
                self.surface_calibrators,
            )
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
        meta = {
            "model_version": self.model_version,
            "request_batch": self.request_batch,
            "fm_config": asdict(self.fm.cfg),
            "ranker_config": asdict(self.ranker.cfg),
            "calibrator": self.calibrator.to_dict(),
            "surface_calibrators": calibrators_to_dict(self.surface_calibrators),
            "play_counts": self.play_counts.tolist(),
        }
        arrays = {
            f"{prefix}/{key}": value.detach().cpu().numpy()
            for prefix, module in (("fm", self.fm), ("ranker", self.ranker))
            for key, value in module.state_dict().items()
        }
        return write_model_file(path, FM_RANKER_KIND, meta, self.catalog, arrays)

    @classmethod
    def load(cls, path: str | Path) -> FMRankerScorer:
        """Read a scorer written by ``save``; any other file raises ValueError naming it."""
        with open_model_file(path, FM_RANKER_KIND) as archive:
            meta, data = archive.meta, archive.data
            catalog = archive.catalog()
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
            surface_calibrators=calibrators_from_dict(meta.get("surface_calibrators", {})),
        )
