"""Item-embedding export aligned to the previous model version by an orthogonal Procrustes
rotation, so that downstream users (retrieval indexes, the ranker, analysts) see a stable space
from one version to the next.

Given the previous export's vectors B and the new model's vectors A on the items both share,

    R* = argmin_{RᵀR = I} ||A R − B||_F = U Vᵀ,   where U Σ Vᵀ = svd(Aᵀ B)

(Schönemann 1966, "A generalized solution of the orthogonal Procrustes problem"). The export
holds E R for every item of the new model, and the residual ||A R − B||_F / ||B||_F, beside the
same ratio before rotation, ||A − B||_F / ||B||_F. The rotation is kept in the export: scores are
dot products, u·e = (u R)·(e R) because R Rᵀ = I, so a consumer rotates the model's user vectors
by the same R and every score stays what the model computes. Only a rotation is allowed: a
translation or a scaling would change the scores.

Exports are chained: aligning to the previous *export* (itself aligned to its predecessor) keeps
all versions in the first version's frame. Exports are saved as ``.npz`` (written to a temporary
file and renamed).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fm_core.model import FoundationModel

__all__ = [
    "ItemEmbeddings",
    "align_embeddings",
    "export_item_embeddings",
    "load_item_embeddings",
    "procrustes_rotation",
    "relative_residual",
    "save_item_embeddings",
]

logger = logging.getLogger(__name__)

_FIELDS = ("item_ids", "vectors", "rotation", "residual", "residual_unaligned", "n_shared")


@dataclass(frozen=True)
class ItemEmbeddings:
    """One version's exported item vectors, in the aligned frame.

    Attributes:
        item_ids: (N,) int64, sorted and unique.
        vectors: (N, D) float32, the model's item vectors times ``rotation``.
        rotation: (D, D) float32 orthogonal; the identity when nothing was aligned. Rotate the
            model's user vectors by it (``rotate_users``) to keep scores unchanged.
        residual: ||A R − B|| / ||B|| on the shared items (NaN without a previous export).
        residual_unaligned: ||A − B|| / ||B|| on the shared items (NaN without one).
        n_shared: items shared with the previous export (0 without one).
    """

    item_ids: np.ndarray
    vectors: np.ndarray
    rotation: np.ndarray
    residual: float = math.nan
    residual_unaligned: float = math.nan
    n_shared: int = 0

    def __post_init__(self) -> None:
        ids, vectors, rotation = self.item_ids, self.vectors, self.rotation
        if ids.ndim != 1 or (ids.size > 1 and np.any(np.diff(ids) <= 0)):
            raise ValueError("item_ids must be a 1-D array of sorted, unique ids")
        if vectors.ndim != 2 or vectors.shape[0] != ids.size:
            raise ValueError(
                f"vectors must be (n_items, dim) with one row per item id ({ids.size}); "
                f"got shape {vectors.shape}"
            )
        dim = vectors.shape[1]
        if rotation.shape != (dim, dim):
            raise ValueError(f"rotation must be ({dim}, {dim}); got shape {rotation.shape}")
        if not np.isfinite(vectors).all():
            raise ValueError("vectors must be finite")

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def rotate_users(self, users: np.ndarray) -> np.ndarray:
        """(B, D) user vectors of the same model version carried into the aligned frame, so
        that ``rotate_users(u) @ vectors.T`` equals the model's ``u @ E.T``."""
        users = np.asarray(users, dtype=np.float32)
        if users.ndim != 2 or users.shape[1] != self.dim:
            raise ValueError(f"users must be (n_users, {self.dim}); got shape {users.shape}")
        return users @ self.rotation


def relative_residual(source: np.ndarray, target: np.ndarray) -> float:
    """||source − target||_F / ||target||_F."""
    norm = float(np.linalg.norm(target))
    if norm == 0.0:
        raise ValueError("the previous vectors of the shared items are all zero")
    return float(np.linalg.norm(source - target)) / norm


def procrustes_rotation(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(D, D) orthogonal R minimizing ||source R − target||_F, for (M, D) matched rows.

    Computed in float64 from the SVD of sourceᵀ target; unique when sourceᵀ target has full rank
    (in particular M ≥ D rows in general position)."""
    a = np.asarray(source, dtype=np.float64)
    b = np.asarray(target, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"source and target must be matched (rows, dim) matrices of one shape; got "
            f"{a.shape} and {b.shape}"
        )
    if a.shape[0] == 0:
        raise ValueError("source and target have no rows to align")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("source and target must be finite")
    u, _, vt = np.linalg.svd(a.T @ b)
    return u @ vt


def align_embeddings(
    item_ids: np.ndarray, vectors: np.ndarray, *, previous: ItemEmbeddings | None
) -> ItemEmbeddings:
    """The export of ``vectors`` (N, D) for ``item_ids``, rotated onto ``previous`` on the
    shared ids (unrotated when ``previous`` is None)."""
    ids = np.asarray(item_ids, dtype=np.int64)
    current = np.asarray(vectors, dtype=np.float32)
    dim = current.shape[1] if current.ndim == 2 else -1
    if previous is None:
        return ItemEmbeddings(ids, current, np.eye(dim, dtype=np.float32))
    if previous.dim != dim:
        raise ValueError(
            f"previous export has dimension {previous.dim}; the new vectors have {dim}: "
            "Procrustes alignment needs the same embedding size"
        )
    shared, rows_new, rows_old = np.intersect1d(ids, previous.item_ids, return_indices=True)
    if shared.size == 0:
        raise ValueError("previous export shares no item id with the new one; cannot align")
    if shared.size < dim:
        logger.warning(
            "aligning on %d shared items in %d dimensions: the rotation is not unique",
            shared.size, dim,
        )  # fmt: skip
    a = current[rows_new].astype(np.float64)
    b = previous.vectors[rows_old].astype(np.float64)
    rotation = procrustes_rotation(a, b)
    export = ItemEmbeddings(
        item_ids=ids,
        vectors=(current.astype(np.float64) @ rotation).astype(np.float32),
        rotation=rotation.astype(np.float32),
        residual=relative_residual(a @ rotation, b),
        residual_unaligned=relative_residual(a, b),
        n_shared=int(shared.size),
    )
    logger.info(
        "aligned %d items on %d shared: residual %.4f (%.4f before rotation)",
        ids.size, export.n_shared, export.residual, export.residual_unaligned,
    )  # fmt: skip
    return export


def export_item_embeddings(
    model: FoundationModel, *, previous: ItemEmbeddings | None
) -> ItemEmbeddings:
    """The model's item vectors (ID and metadata mixed by the age gate, no drop-out), aligned to
    ``previous`` (the last version's export) when given."""
    vectors = model.item_embeddings().float().cpu().numpy()  # (N, D)
    return align_embeddings(model.items.item_ids.cpu().numpy(), vectors, previous=previous)


def save_item_embeddings(path: str | Path, export: ItemEmbeddings) -> Path:
    """Write ``export`` as ``.npz`` through a temporary file and a rename; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:  # a handle, so numpy does not append ".npz" to the name
        np.savez(
            handle,
            item_ids=export.item_ids,
            vectors=export.vectors,
            rotation=export.rotation,
            residual=np.float64(export.residual),
            residual_unaligned=np.float64(export.residual_unaligned),
            n_shared=np.int64(export.n_shared),
        )
    os.replace(tmp, path)
    return path


def load_item_embeddings(path: str | Path) -> ItemEmbeddings:
    """An export written by ``save_item_embeddings``."""
    with np.load(path, allow_pickle=False) as data:
        missing = [name for name in _FIELDS if name not in data.files]
        if missing:
            raise ValueError(f"{path} is not an item-embedding export: missing {missing}")
        return ItemEmbeddings(
            item_ids=data["item_ids"].astype(np.int64),
            vectors=data["vectors"].astype(np.float32),
            rotation=data["rotation"].astype(np.float32),
            residual=float(data["residual"]),
            residual_unaligned=float(data["residual_unaligned"]),
            n_shared=int(data["n_shared"]),
        )
