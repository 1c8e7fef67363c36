"""EASE, the closed-form item-item baseline of ``loopbreak bench fm`` (Steck, WWW 2019,
"Embarrassingly Shallow Autoencoders for Sparse Data").

With X the (users × items) binary interaction matrix and G = XᵀX,

    P = (G + λI)⁻¹,    B = I − P · diag(1 / diag(P))    (so diag(B) = 0),

and a user's scores are x_u · B. The inverse of an m × m matrix costs about m³ flops (Cholesky:
``potrf`` then ``potri``) and 4m² bytes in float32, so a large catalog is restricted to its
``max_items`` most popular items (by training interactions, ties by row); the other items get
no score (-inf) and can never be recommended by EASE. The benchmark's table says how many
items were kept and which share of the test targets they cover.

**On a device.** With ``device`` set (the benchmark passes its CUDA device), the Gram matrix,
the inverse (``torch.linalg.cholesky`` then ``torch.cholesky_inverse``), the weights and the
scores stay on that device and ``scores`` returns a tensor there, so EASE neither runs in numpy
on the host nor copies a (users × items) score matrix back. Without one it is the LAPACK path
above, which on two CPU cores measured as fast as torch's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.linalg
import scipy.sparse

if TYPE_CHECKING:
    import torch

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


def _check(shape: tuple[int, ...], lam: float) -> None:
    if lam <= 0:
        raise ValueError(f"lam must be > 0; got {lam}")
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"gram must be a square matrix; got shape {tuple(shape)}")


def _precision(m: int) -> str:
    """float64 up to 4,000 items, float32 above (the inverse's memory and time)."""
    return "float64" if m <= 4000 else "float32"


def ease_weights(gram: np.ndarray, lam: float) -> np.ndarray:
    """B = I − P·diag(1/diag(P)) with P = (G + λI)⁻¹, for a symmetric (m, m) Gram matrix."""
    _check(gram.shape, lam)
    a = np.array(gram, dtype=_precision(gram.shape[0]), order="F")
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


def ease_weights_torch(gram: torch.Tensor, lam: float) -> torch.Tensor:
    """``ease_weights`` on the Gram matrix's own device: (m, m) float32 B."""
    import torch

    _check(tuple(gram.shape), lam)
    a = gram.to(getattr(torch, _precision(gram.shape[0])), copy=True)
    a.diagonal().add_(lam)
    factor, info = torch.linalg.cholesky_ex(a)
    if int(info) != 0:
        raise np.linalg.LinAlgError(f"G + λI is not positive definite (cholesky info {int(info)})")
    del a
    p = torch.cholesky_inverse(factor)
    del factor
    b = p.div_(-p.diagonal()[None, :].clone())
    b.diagonal().zero_()
    return b.float()


@dataclass
class EASE:
    """EASE over the ``max_items`` most popular of ``n_items`` catalog rows (see the module
    docstring); learned attributes end in ``_``."""

    n_items: int
    lam: float = 200.0
    max_items: int | None = None
    device: torch.device | str | None = None  # None: numpy on the host; else torch there

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
        gram = (x.T @ x).toarray().astype(np.float32)  # (m, m)
        self.gram_ = gram if self.device is None else _tensor(gram, self.device)
        self.set_lambda(self.lam)
        return self

    def set_lambda(self, lam: float) -> EASE:
        """Refit B for another λ from the stored Gram matrix."""
        self.lam = lam
        if self.device is None:
            self.weights_ = ease_weights(self.gram_, lam)  # (m, m)
        else:
            self.weights_ = None  # free the old B before the new inverse needs room
            self.weights_ = ease_weights_torch(self.gram_, lam)
        logger.info("EASE: %d items, lambda %g", self.items_.size, lam)
        return self

    def _matrix(self, rows: Sequence[np.ndarray]) -> scipy.sparse.csr_matrix:
        kept = [self.column_[r][self.column_[r] >= 0] for r in rows]
        return interaction_matrix(kept, self.items_.size)

    def scores(self, input_rows: Sequence[np.ndarray]) -> np.ndarray | torch.Tensor:
        """(U, n_items) float32 scores x_u·B of each input row set; -inf where not kept. A
        numpy array on the host, or a tensor on ``device`` when one is set."""
        if self.device is None:
            out = np.full((len(input_rows), self.n_items), -np.inf, dtype=np.float32)
            out[:, self.items_] = self._matrix(input_rows) @ self.weights_
            return out
        import torch

        device = self.weights_.device
        x = self._matrix(input_rows).tocoo()
        dense = torch.zeros((len(input_rows), self.items_.size), device=device)  # (U, m)
        dense[_tensor(x.row, device), _tensor(x.col, device)] = 1.0
        out = torch.full((len(input_rows), self.n_items), -torch.inf, device=device)
        out[:, _tensor(self.items_, device)] = dense @ self.weights_
        return out


def ease_device(device: torch.device | None) -> torch.device | None:
    """EASE's ``device`` for a run on ``device``: a CUDA device itself, anything else None
    (numpy on the host)."""
    return device if getattr(device, "type", None) == "cuda" else None


def _tensor(array: np.ndarray, device: torch.device | str) -> torch.Tensor:
    import torch

    return torch.as_tensor(np.ascontiguousarray(array)).to(device)
