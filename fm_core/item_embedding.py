"""Item representation of the foundation model: an ID embedding and a metadata embedding mixed
by a gate on the item's age, so that a brand-new item is represented by its metadata alone.

    meta_i = W_g · genres_i / |genres_i|  +  mean_{tok ∈ tokens_i} E_tok[hash(tok)]
    g_i    = σ(a · log1p(age_days_i) + b)                 (per dimension; a = 1, b = -3 at init)
    e_i    = g_i ⊙ id_i + (1 − g_i) ⊙ meta_i

``age_days_i`` is measured at the model's ``age_reference`` (the end of its training data, set by
the trainer; serving may move it to the request time), clipped at 0. At init an item of age 0
takes 95 % of its embedding from metadata, one of a year 95 % from its ID. In training, each
item's ID part is dropped (g_i = 0) with probability ``id_dropout`` per step, which makes the
metadata path learn to stand alone. Tokens are hashed with CRC-32 (stable across processes)
into ``n_token_buckets - 1`` buckets; bucket 0 is padding.

With ``FMConfig.item_metadata`` False (a catalog without metadata, such as a bare ID dataset)
e_i = id_i, with neither gate nor ID drop-out.

The catalog's metadata lives in buffers, so a checkpoint's state rebuilds the items without the
catalog.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from fm_core.types import ItemCatalog

if TYPE_CHECKING:
    from fm_core.model import FMConfig

_DAY = 86400.0


def hash_token(token: str, n_buckets: int) -> int:
    """Bucket in [1, n_buckets) of a metadata token, case-insensitive and process-stable."""
    return 1 + zlib.crc32(token.casefold().encode("utf-8")) % (n_buckets - 1)


def item_token_ids(catalog: ItemCatalog, *, n_buckets: int, max_tokens: int) -> np.ndarray:
    """(n_items, max_tokens) hashed token buckets per item, 0-padded (extra tokens dropped)."""
    ids = np.zeros((catalog.n_items, max_tokens), dtype=np.int64)
    for row, tokens in enumerate(catalog.tokens[: catalog.n_items]):
        buckets = [hash_token(t, n_buckets) for t in tokens[:max_tokens]]
        ids[row, : len(buckets)] = buckets
    return ids


class ItemEncoder(nn.Module):
    """The (N, D) table of item representations, used for model inputs and the tied output."""

    def __init__(self, cfg: FMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        N, G, D = cfg.n_items, cfg.n_genres, cfg.d_model
        self.register_buffer("item_ids", torch.arange(N, dtype=torch.int64))
        self.register_buffer("genres", torch.zeros(N, G))
        self.register_buffer("token_ids", torch.zeros(N, cfg.max_item_tokens, dtype=torch.int64))
        self.register_buffer("release_time", torch.zeros(N, dtype=torch.float64))
        self.register_buffer("age_reference", torch.zeros((), dtype=torch.float64))
        self.id_emb = nn.Embedding(N, D)
        self.genre_proj = nn.Linear(G, D, bias=False)
        self.token_emb = nn.Embedding(cfg.n_token_buckets, D, padding_idx=0)
        self.gate = nn.Linear(1, D)
        nn.init.normal_(self.id_emb.weight, std=0.02)
        nn.init.normal_(self.genre_proj.weight, std=0.02)
        nn.init.normal_(self.token_emb.weight, std=0.02)
        with torch.no_grad():
            self.token_emb.weight[0].zero_()
            self.gate.weight.fill_(1.0)
            self.gate.bias.fill_(cfg.gate_init_bias)

    @torch.no_grad()
    def load_catalog(self, catalog: ItemCatalog, *, age_reference: float) -> None:
        """Copy the catalog's metadata into the buffers; ages are measured at ``age_reference``."""
        cfg = self.cfg
        if catalog.n_items != cfg.n_items or catalog.genres.shape[1] != cfg.n_genres:
            raise ValueError(
                f"catalog has {catalog.n_items} items and {catalog.genres.shape[1]} genres; "
                f"the config expects {cfg.n_items} and {cfg.n_genres}"
            )
        self.item_ids.copy_(torch.from_numpy(np.asarray(catalog.item_ids, dtype=np.int64)))
        self.genres.copy_(torch.from_numpy(np.asarray(catalog.genres, dtype=np.float32)))
        tokens = item_token_ids(
            catalog, n_buckets=cfg.n_token_buckets, max_tokens=cfg.max_item_tokens
        )
        self.token_ids.copy_(torch.from_numpy(tokens))
        self.release_time.copy_(torch.from_numpy(np.asarray(catalog.release_time, np.float64)))
        self.age_reference.fill_(float(age_reference))

    def metadata(self) -> torch.Tensor:
        """(N, D) metadata embeddings: genres and hashed tokens."""
        n_genres = self.genres.sum(dim=1, keepdim=True).clamp(min=1.0)
        genre = self.genre_proj(self.genres / n_genres)  # (N, D)
        present = (self.token_ids > 0).float()  # (N, L)
        tokens = (self.token_emb(self.token_ids) * present[..., None]).sum(dim=1)  # (N, D)
        return genre + tokens / present.sum(dim=1, keepdim=True).clamp(min=1.0)

    def id_gate(self) -> torch.Tensor:
        """(N, D) share of each item's embedding that comes from its ID."""
        age_days = ((self.age_reference - self.release_time) / _DAY).clamp(min=0.0)  # (N,)
        return torch.sigmoid(self.gate(torch.log1p(age_days).float()[:, None]))  # (N, D)

    def forward(self) -> torch.Tensor:
        if not self.cfg.item_metadata:  # no metadata: the ID embedding alone
            return self.id_emb.weight
        g = self.id_gate()  # (N, D)
        if self.training and self.cfg.id_dropout > 0:
            keep = torch.rand(g.shape[0], device=g.device) >= self.cfg.id_dropout  # (N,)
            g = g * keep[:, None]
        return g * self.id_emb.weight + (1.0 - g) * self.metadata()  # (N, D)
