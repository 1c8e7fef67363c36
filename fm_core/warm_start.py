"""Warm start of the foundation model onto a grown catalog: the next model version begins where
the previous one ended instead of from random weights.

``warm_start_from(previous, catalog)`` builds a model with the previous config except ``n_items``:

- every parameter and buffer that does not depend on the catalog (the transformer, the heads,
  the metadata encoders, the age gate, the special-item vectors) is copied;
- per-item state (the ID embedding row, the item bias, the sampled-softmax proposal log q) is
  copied **by item id**, so old and new ids may interleave in any order;
- the catalog's metadata buffers (genres, hashed tokens, release times, item ids) come from the
  new catalog;
- a new item's ID row and bias are the similarity-weighted mean of its ``neighbours`` most similar
  old items, with similarity the cosine of the previous model's own metadata embedding
  (``ItemEncoder.metadata``: the learned genre projection plus the learned token vectors):

      s_ij = cos(meta_i, meta_j),  N_i = top-k old j by s_ij,  w_ij = max(s_ij, 0) / Σ max(s_ij, 0)
      id_i = Σ_j w_ij id_j,  b_i = Σ_j w_ij b_j       (uniform weights if no s_ij > 0)

  This similarity is the one the model learned: tokens and genres that behaved alike in training
  point the same way, while a raw overlap (Jaccard of genres and tokens) would count a language
  token shared by most of the catalog as much as a rare title word. The neighbours are drawn
  from the old items already released at the previous model's age reference (their ID rows saw
  training); all old items when none was.

A new item's proposal probability is its neighbours' weighted mean; the proposal is then
renormalized, which leaves the scores untouched (it only steers negative sampling).

With the same ``age_reference`` (the default keeps the previous one) and unchanged metadata, an
old item's next-item logit for any history of old items is exactly what the previous model gave:
the encoder, the item table rows and the biases are the same. Moving ``age_reference`` ages every
item, moves its age gate, and so changes scores by design.

Items missing from the new catalog raise a ValueError naming them, unless ``allow_removed=True``
(a title leaving the service); their rows are then dropped, and a history that mentions them
tokenizes them as unknown items.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import torch

from fm_core.model import FoundationModel
from fm_core.types import ItemCatalog

__all__ = ["ITEM_ROW_STATE", "WarmStartReport", "warm_start_from"]

logger = logging.getLogger(__name__)

# State entries with one row per catalog item (dim 0), carried by item id.
ITEM_ROW_STATE = ("items.id_emb.weight", "item_bias", "item_log_q")
# State entries that describe the catalog; they are loaded from the new catalog.
CATALOG_STATE = (
    "items.item_ids",
    "items.genres",
    "items.token_ids",
    "items.release_time",
    "items.age_reference",
)
_SHOWN_IDS = 10
_COSINE_BLOCK_CELLS = 1 << 24  # 64 MB of float32 cosines per block of new items


@dataclass(frozen=True)
class WarmStartReport:
    """What a warm start did.

    Attributes:
        n_kept: old items carried over by id. n_added: new items, initialized from neighbours.
        n_removed: old items dropped (only with ``allow_removed``).
        n_metadata_changed: kept items whose genres, tokens or release time differ in the new
            catalog (their scores move even before training).
        neighbours: neighbours used per new item (``min(neighbours, candidates)``).
        mean_neighbour_similarity: mean cosine between a new item's metadata embedding and its
            neighbours' (NaN when nothing was added).
    """

    n_kept: int
    n_added: int
    n_removed: int
    n_metadata_changed: int
    neighbours: int
    mean_neighbour_similarity: float


def _ids_text(ids: np.ndarray) -> str:
    shown = ", ".join(str(int(i)) for i in ids[:_SHOWN_IDS])
    more = f" and {ids.size - _SHOWN_IDS} more" if ids.size > _SHOWN_IDS else ""
    return f"[{shown}]{more}"


def _validate(previous: FoundationModel, catalog: ItemCatalog, neighbours: int) -> None:
    if not isinstance(previous, FoundationModel):
        raise TypeError(f"previous must be a FoundationModel; got {type(previous).__name__}")
    if neighbours < 1:
        raise ValueError(f"neighbours must be >= 1; got {neighbours}")
    n_genres = int(catalog.genres.shape[1]) if catalog.genres.ndim == 2 else -1
    if n_genres != previous.cfg.n_genres:
        raise ValueError(
            f"catalog.genres must have {previous.cfg.n_genres} genre columns, as the previous "
            f"model; got {n_genres}"
        )
    if catalog.n_items < 1:
        raise ValueError("catalog must hold at least one item")


@torch.no_grad()
def warm_start_from(
    previous: FoundationModel,
    catalog: ItemCatalog,
    *,
    age_reference: float | None = None,
    neighbours: int = 10,
    allow_removed: bool = False,
) -> tuple[FoundationModel, WarmStartReport]:
    """The previous model carried onto ``catalog`` (see the module docstring), in eval mode on
    the previous model's device, and a report of what was kept and added.

    Args:
        previous: the trained model of the previous version (unchanged by this call).
        catalog: the new catalog, normally the old one grown.
        age_reference: POSIX seconds at which item ages are measured; None keeps the previous
            (scores of old items unchanged). A retraining job passes the end of its new
            training data, as ``train_fm`` does for a fresh model.
        neighbours: how many metadata-similar old items initialize each new item.
        allow_removed: drop old items missing from ``catalog`` instead of raising.
    """
    _validate(previous, catalog, neighbours)
    old_ids = previous.items.item_ids.cpu().numpy()
    new_ids = np.asarray(catalog.item_ids, dtype=np.int64)
    removed = np.setdiff1d(old_ids, new_ids)
    if removed.size and not allow_removed:
        raise ValueError(
            f"catalog is missing {removed.size} item id(s) of the previous model: "
            f"{_ids_text(removed)}; a warm start expects the old catalog grown "
            "(pass allow_removed=True to drop them)"
        )
    # Rows of the kept items in both catalogs (ids are sorted in both).
    kept_ids, kept_old, kept_new = np.intersect1d(old_ids, new_ids, return_indices=True)
    added_new = np.setdiff1d(np.arange(new_ids.size), kept_new)
    if kept_ids.size == 0:
        raise ValueError("catalog shares no item id with the previous model; nothing to carry")

    device = previous.items.item_ids.device
    reference = (
        float(previous.items.age_reference) if age_reference is None else float(age_reference)
    )
    # Every initial value is overwritten below; forking keeps the caller's random stream as is.
    with torch.random.fork_rng(devices=[]):
        model = FoundationModel(replace(previous.cfg, n_items=catalog.n_items))
    model.items.load_catalog(catalog, age_reference=reference)
    model.to(device)
    _copy_shared_state(previous, model)

    old_state = previous.state_dict()
    new_state = model.state_dict()
    kept_old_t = torch.as_tensor(kept_old, device=device)
    kept_new_t = torch.as_tensor(kept_new, device=device)
    for key in ITEM_ROW_STATE:
        new_state[key][kept_new_t] = old_state[key][kept_old_t]

    similarity = float("nan")
    k = 0
    if added_new.size:
        candidates = _trained_rows(previous, kept_old)
        k = min(neighbours, candidates.size)
        similarity = _init_new_rows(
            previous, model, old_rows=kept_old[candidates], new_rows_of_old=kept_new[candidates],
            added=added_new, k=k,
        )  # fmt: skip
    _renormalize_proposal(model)

    report = WarmStartReport(
        n_kept=int(kept_ids.size),
        n_added=int(added_new.size),
        n_removed=int(removed.size),
        n_metadata_changed=_metadata_changed(previous, model, kept_old, kept_new),
        neighbours=k,
        mean_neighbour_similarity=similarity,
    )
    logger.info(
        "warm start: %d items kept, %d added (mean neighbour cosine %.3f), %d removed, "
        "%d with changed metadata",
        report.n_kept, report.n_added, report.mean_neighbour_similarity, report.n_removed,
        report.n_metadata_changed,
    )  # fmt: skip
    model.eval()
    return model, report


def _copy_shared_state(previous: FoundationModel, model: FoundationModel) -> None:
    """Copy every state entry that is neither per item nor catalog metadata; an entry of
    another shape is per-item state this module does not know, and raises."""
    old_state = previous.state_dict()
    new_state = model.state_dict()
    if set(old_state) != set(new_state):
        raise ValueError(
            "previous model's state does not match its own config: "
            f"{sorted(set(old_state) ^ set(new_state))}"
        )
    for key, value in new_state.items():
        if key in ITEM_ROW_STATE or key in CATALOG_STATE:
            continue
        if value.shape != old_state[key].shape:
            raise ValueError(
                f"state entry {key!r} changes shape with the catalog "
                f"({tuple(old_state[key].shape)} -> {tuple(value.shape)}); warm_start must "
                "list it in ITEM_ROW_STATE to carry it by item id"
            )
        value.copy_(old_state[key])


def _trained_rows(previous: FoundationModel, kept_old: np.ndarray) -> np.ndarray:
    """Indices into ``kept_old`` of the items released by the previous age reference (all of
    them when none was)."""
    release = previous.items.release_time.cpu().numpy()[kept_old]
    released = np.flatnonzero(release <= float(previous.items.age_reference))
    return released if released.size else np.arange(kept_old.size)


def _init_new_rows(
    previous: FoundationModel,
    model: FoundationModel,
    *,
    old_rows: np.ndarray,
    new_rows_of_old: np.ndarray,
    added: np.ndarray,
    k: int,
) -> float:
    """Fill the added items' ID rows, biases and proposal from their top-``k`` metadata
    neighbours; returns the mean cosine of the neighbours used."""
    device = model.items.item_ids.device
    meta = model.items.metadata()  # (N_new, D), the previous model's metadata encoders
    cand = meta[torch.as_tensor(new_rows_of_old, device=device)]  # (C, D)
    new = torch.nn.functional.normalize(meta[torch.as_tensor(added, device=device)], dim=1)
    cand = torch.nn.functional.normalize(cand, dim=1)
    # Blocks of new items keep the (block, C) cosine matrix near _COSINE_BLOCK_CELLS floats.
    block = max(1, _COSINE_BLOCK_CELLS // cand.shape[0])
    tops = [(new[i : i + block] @ cand.T).topk(k, dim=1) for i in range(0, new.shape[0], block)]
    top = torch.cat([t.values for t in tops])  # (A, k)
    index = torch.cat([t.indices for t in tops])  # (A, k)
    positive = top.clamp(min=0.0)
    total = positive.sum(dim=1, keepdim=True)
    weights = torch.where(total > 0, positive / total.clamp(min=1e-12), 1.0 / k)  # (A, k)
    source = torch.as_tensor(old_rows, device=device)[index]  # (A, k) rows of the old model
    added_t = torch.as_tensor(added, device=device)
    old_id = previous.items.id_emb.weight
    model.items.id_emb.weight[added_t] = (weights[..., None] * old_id[source]).sum(dim=1)
    model.item_bias[added_t] = (weights * previous.item_bias[source]).sum(dim=1)
    q = (weights * previous.item_log_q[source].exp()).sum(dim=1)
    model.item_log_q[added_t] = q.clamp(min=1e-30).log()
    return float(top.mean())


def _renormalize_proposal(model: FoundationModel) -> None:
    log_q = model.item_log_q
    log_q -= torch.logsumexp(log_q, dim=0)


def _metadata_changed(
    previous: FoundationModel, model: FoundationModel, kept_old: np.ndarray, kept_new: np.ndarray
) -> int:
    """How many kept items have different genres, tokens or release time in the new catalog."""
    old, new = previous.items, model.items
    o = torch.as_tensor(kept_old, device=old.item_ids.device)
    n = torch.as_tensor(kept_new, device=new.item_ids.device)
    changed = (
        (old.genres[o] != new.genres[n]).any(dim=1)
        | (old.token_ids[o] != new.token_ids[n]).any(dim=1)
        | (old.release_time[o] != new.release_time[n])
    )
    return int(changed.sum())
