"""EASE, the closed-form item-item baseline of ``loopbreak bench fm`` (Steck, WWW 2019,
"Embarrassingly Shallow Autoencoders for Sparse Data").

With X the (users × items) binary interaction matrix and G = XᵀX,

    P = (G + λI)⁻¹,    B = I − P · diag(1 / diag(P))    (so diag(B) = 0),

and a user's scores are x_u · B. The inverse of an m × m matrix costs about m³ flops (Cholesky:
``potrf`` then ``potri``) and 4m² bytes in float32, so a large catalog is restricted to its
``max_items`` most popular items (by training interactions, ties by row); the other items get
no score (-inf) and can never be recommended by EASE. The benchmark's table says how many
items were kept and which share of the test targets they cover.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse

logger = logging.getLogger(__name__)


def interaction_matrix(rows: Sequence[np.ndarray], n_columns: int) -> scipy.sparse.csr_matrix:
    """(len(rows), n_columns) binary CSR matrix; row u has ones at the columns ``rows[u]``."""
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([np.unique(r).size for r in rows])
    indices = np.concatenate([np.unique(r) for r in rows]) if rows else np.zeros(0, np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= n_columns):
        raise ValueError(f"interaction columns must be in [0, {n_columns}); got "
                         f"{indices.min()}..{indices.max()}")  # fmt: skip
    data = np.ones(indices.size, dtype=np.float32)
    return scipy.sparse.csr_matrix((data, indices, indptr), shape=(len(rows), n_columns))


def ease_weights(gram: np.ndarray, lam: float) -> np.ndarray:
    """B = I − P·diag(1/diag(P)) with P = (G + λI)⁻¹, for a symmetric (m, m) Gram matrix."""
    if lam <= 0:
        raise ValueError(f"lam must be > 0; got {lam}")
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"gram must be a square matrix; got shape {gram.shape}")
    a = np.array(gram, dtype=np.float64 if gram.shape[0] <= 4000 else np.float32, order="F")
    a[np.diag_indices_from(a)] += lam
    potrf, potri = scipy.linalg.get_lapack_funcs(("potrf", "potri"), (a,))
    factor, info = potrf(a, lower=False, overwrite_a=True, clean=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"G + λI is not positive definite (potrf info {info})")
    inverse, info = potri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"inverting G + λI failed (potri info {info})")
    p = np.triu(inverse) + np.triu(inverse, 1).T  # potri fills the upper triangle only
    b = -p / np.diag(p)[None, :]
    b[np.diag_indices_from(b)] = 0.0
    return b.astype(np.float32)


@dataclass
class EASE:
    """EASE over the ``max_items`` most popular of ``n_items`` catalog rows (see the module
    docstring); learned attributes end in ``_``."""

    n_items: int
    lam: float = 200.0
    max_items: int | None = None

    def fit(self, train_rows: Sequence[np.ndarray]) -> EASE:
        """Fit on the training interactions: per user, the catalog rows of their items."""
        counts = np.zeros(self.n_items, dtype=np.int64)
        for rows in train_rows:
            counts[np.unique(rows)] += 1
        keep = self.n_items if self.max_items is None else min(self.max_items, self.n_items)
        order = np.lexsort((np.arange(self.n_items), -counts))
        self.items_ = np.sort(order[:keep])  # (m,) kept catalog rows
        self.column_ = np.full(self.n_items, -1, dtype=np.int64)
        self.column_[self.items_] = np.arange(keep)
        x = self._matrix(train_rows)
        self.gram_ = (x.T @ x).toarray().astype(np.float32)  # (m, m)
        self.set_lambda(self.lam)
        return self

    def set_lambda(self, lam: float) -> EASE:
        """Refit B for another λ from the stored Gram matrix."""
        self.lam = lam
        self.weights_ = ease_weights(self.gram_, lam)  # (m, m)
        logger.info("EASE: %d items, lambda %g", self.items_.size, lam)
        return self

    def _matrix(self, rows: Sequence[np.ndarray]) -> scipy.sparse.csr_matrix:
        kept = [self.column_[r][self.column_[r] >= 0] for r in rows]
        return interaction_matrix(kept, self.items_.size)

    def scores(self, input_rows: Sequence[np.ndarray]) -> np.ndarray:
        """(U, n_items) float32 scores x_u·B of each input row set; -inf where not kept."""
        out = np.full((len(input_rows), self.n_items), -np.inf, dtype=np.float32)
        out[:, self.items_] = self._matrix(input_rows) @ self.weights_
        return out
