"""The foundation model (FM): a decoder-only causal transformer over event tokens.

Reads top-down, as nanoGPT: the config, the attention and the block, then the model.

- **Inputs** (B, T): each token is the item representation of the previous item (or a BOS /
  unknown-item vector), plus embeddings of the previous kind, this step's device and surface,
  a projection of the dense features (continuous time, previous duration) and a learned position
  (see ``fm_core.tokenize``). With ``scale_item_input`` the previous-item part enters × √d, as
  the Transformer and SASRec scale their input embeddings: every part starts at std 0.02, and
  unscaled the item is one voice among six (on Amazon Beauty the scale alone lifted the test
  NDCG@10 from 0.0221 to 0.0268).
- **Trunk**: pre-LayerNorm blocks with causal self-attention through
  ``F.scaled_dot_product_attention(is_causal=True)``; ``attention="reference"`` selects the
  plain PyTorch path that the tests hold the fast one to. Batches are right-padded, so a real
  token never attends to padding and no key mask is needed.
- **Heads**, all on the final hidden state h (B, T, D):
  - next item: logits = h · Eᵀ + b over the whole catalog, tied to the item representation E
    (``fm_core.item_embedding``); full softmax, or sampled softmax with the log-Q correction
    when ``n_sampled > 0`` (training only; evaluation always scores the full catalog);
  - multi-token prediction: for k = 1..n_future-1 a small residual MLP head maps h_t to a query
    for the item at t + k (shifted targets, same tied output); its losses weigh
    ``future_weight`` in total; serving uses the next-item head only. With
    ``future_heads=False`` the next-item query h_t itself scores the items ahead (a dense
    all-action loss, as PinnerFormer's: one user state that ranks what the user plays over the
    next n_future steps, for logs whose order within a short span carries little signal);
  - freshness (``freshness_buckets > 0``): every item's score at a step gets a learned bonus
    f(⌊log2(1 + age_days)⌋) of its age at that step's time, so that the model can learn that
    new titles draw plays (the next-item and future heads use the querying step's own time);
  - genres: a linear head predicts the next item's genres (multi-label BCE), weight
    ``genre_weight``.
- **Loss**: see ``fm_core.objectives`` for the per-target engagement × sample weights. With
  ``mask_seen`` (logs where a user consumes an item once, as the benchmarks' sim and MovieLens)
  each query's softmax leaves out the items its window has already shown it, as the evaluation
  removes seen items from the ranking; the target itself is never left out. Under sampled
  softmax the window's items are left out of its negatives instead (``fm_core.objectives``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the PyTorch convention
from torch import nn

from fm_core.item_embedding import ItemEncoder
from fm_core.objectives import (
    candidate_logits,
    engagement_weight,
    full_softmax_loss,
    genre_loss,
    sampled_softmax_loss,
    unreleased,
)
from fm_core.tokenize import (
    DEFAULT_ROLLUP_WINDOW_S,
    DEFAULT_TIME_ORIGIN,
    DEVICE_VOCAB,
    KIND_VOCAB,
    N_DENSE,
    N_TIME_FEATURES,
    SURFACE_VOCAB,
    TokenBatch,
    TokenizerConfig,
)
from fm_core.types import ItemCatalog

ATTENTION_PATHS = ("sdpa", "reference")


@contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    """``module`` in eval mode (no dropout) inside the block, then back in the mode it was in."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


@dataclass
class FMConfig:
    """Everything that shapes the model; a checkpoint stores it with the weights."""

    # catalog shape (set by with_catalog)
    n_items: int = 1
    n_genres: int = 1
    max_item_tokens: int = 8
    n_token_buckets: int = 4096
    # tokenization
    rollup_window_s: float = DEFAULT_ROLLUP_WINDOW_S
    time_origin: float = DEFAULT_TIME_ORIGIN
    use_time_features: bool = True  # False zeroes the continuous time features (ablation)
    # > 0: a learned score bonus by the item's age at the step, in log2-day buckets (freshness);
    # it is time-dependent, so use_time_features=False turns it off too
    freshness_buckets: int = 0
    # transformer
    max_len: int = 64
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.1
    attention: str = "sdpa"
    mlp_ratio: int = 4  # the feed-forward width is mlp_ratio × d_model
    # True: the previous item's representation enters the token × √d_model, as the Transformer
    # and SASRec scale their input embeddings, so that the item outweighs the position and the
    # context embeddings that are added to it (they all start at std 0.02)
    scale_item_input: bool = False
    # item representation
    id_dropout: float = 0.1
    gate_init_bias: float = -3.0
    # False: the catalog has no metadata and each item is its ID embedding alone (no gate, no
    # metadata encoders in the forward), which saves two (N, D) passes a step on large catalogs
    item_metadata: bool = True
    # objectives
    n_future: int = 1  # items predicted per step: 1 = next item only
    future_weight: float = 0.5
    future_heads: bool = True  # False: h_t itself scores the items ahead (no head per k)
    genre_weight: float = 0.1
    n_sampled: int = 0  # > 0: sampled softmax with that many negatives in training
    mask_unreleased: bool = True
    # True: the training softmax leaves out the items the sequence has already shown the model
    # (its previous items up to the querying step), for logs where a user consumes an item once;
    # with sampled softmax, the window's items are left out of its negatives
    # (fm_core.objectives)
    mask_seen: bool = False

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model must be a multiple of n_heads; got {self.d_model}, "
                             f"{self.n_heads}")  # fmt: skip
        if self.attention not in ATTENTION_PATHS:
            raise ValueError(f"attention must be one of {ATTENTION_PATHS}; got {self.attention!r}")
        if self.n_future < 1 or self.n_items < 1 or self.n_genres < 1 or self.max_len < 1:
            raise ValueError("n_future, n_items, n_genres and max_len must be >= 1")
        if self.mlp_ratio < 1:
            raise ValueError(f"mlp_ratio must be >= 1; got {self.mlp_ratio}")
        if self.n_token_buckets < 2:
            raise ValueError(f"n_token_buckets must be >= 2; got {self.n_token_buckets}")

    def with_catalog(self, catalog: ItemCatalog, *, max_item_tokens: int = 16) -> FMConfig:
        """This config sized for ``catalog`` (items, genres, tokens per item up to a cap)."""
        longest = max((len(t) for t in catalog.tokens), default=0)
        return replace(
            self,
            n_items=catalog.n_items,
            n_genres=int(catalog.genres.shape[1]),
            max_item_tokens=max(1, min(longest, max_item_tokens)),
        )

    def tokenizer(self) -> TokenizerConfig:
        return TokenizerConfig(rollup_window_s=self.rollup_window_s, time_origin=self.time_origin)


def causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, dropout_p: float, reference: bool
) -> torch.Tensor:
    """Causal attention of (B, H, T, hd) tensors: SDPA, or the plain reference path."""
    if not reference:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
    T = q.size(-2)
    att = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))  # (B, H, T, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    att = F.dropout(att.masked_fill(~causal, float("-inf")).softmax(dim=-1), p=dropout_p)
    return att @ v  # (B, H, T, hd)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: FMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.proj.residual = True  # type: ignore[assignment]  # scaled init, as nanoGPT's c_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        H = self.cfg.n_heads
        q, k, v = self.qkv(x).split(D, dim=2)  # 3 × (B, T, D)
        q, k, v = (t.view(B, T, H, D // H).transpose(1, 2) for t in (q, k, v))  # (B, H, T, hd)
        y = causal_attention(
            q,
            k,
            v,
            dropout_p=self.cfg.dropout if self.training else 0.0,
            reference=self.cfg.attention == "reference",
        )
        return self.proj(y.transpose(1, 2).reshape(B, T, D))  # (B, T, D)


class MLP(nn.Module):
    def __init__(self, cfg: FMConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model)
        self.proj = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model)
        self.proj.residual = True  # type: ignore[assignment]
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: FMConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class FutureHead(nn.Module):
    """q_k = h + W₂·gelu(W₁·LN(h)): the query for the item k steps ahead (k ≥ 1)."""

    def __init__(self, cfg: FMConfig) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(cfg.d_model)
        self.fc = nn.Linear(cfg.d_model, cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.proj(F.gelu(self.fc(self.ln(h))))


class FoundationModel(nn.Module):
    def __init__(self, cfg: FMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D = cfg.d_model
        self.items = ItemEncoder(cfg)
        self.item_bias = nn.Parameter(torch.zeros(cfg.n_items))
        self.register_buffer("item_log_q", torch.full((cfg.n_items,), -math.log(cfg.n_items)))
        time_mask = torch.ones(N_DENSE)
        if not cfg.use_time_features:
            time_mask[:N_TIME_FEATURES] = 0.0
        self.register_buffer("dense_mask", time_mask, persistent=False)
        self.special_items = nn.Embedding(2, D)  # previous item: 0 BOS, 1 unknown
        self.kind_emb = nn.Embedding(len(KIND_VOCAB), D)
        self.device_emb = nn.Embedding(len(DEVICE_VOCAB), D)
        self.surface_emb = nn.Embedding(len(SURFACE_VOCAB), D)
        self.dense_proj = nn.Linear(N_DENSE, D)
        self.pos_emb = nn.Embedding(cfg.max_len, D)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(D)
        n_heads = cfg.n_future - 1 if cfg.future_heads else 0
        self.future_heads = nn.ModuleList(FutureHead(cfg) for _ in range(n_heads))
        # Only built when weighted: DDP rejects parameters that get no gradient.
        self.genre_head = nn.Linear(D, cfg.n_genres) if cfg.genre_weight > 0 else None
        fresh = cfg.freshness_buckets if cfg.use_time_features else 0
        self.freshness = nn.Parameter(torch.zeros(fresh)) if fresh else None
        for name, child in self.named_children():
            if name != "items":  # the item encoder initializes itself
                child.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            std = 0.02 / math.sqrt(2 * self.cfg.n_layers) if hasattr(module, "residual") else 0.02
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    @classmethod
    def from_catalog(
        cls, cfg: FMConfig, catalog: ItemCatalog, *, age_reference: float
    ) -> FoundationModel:
        """A new model for ``catalog``; item ages are measured at ``age_reference``."""
        model = cls(cfg)
        model.items.load_catalog(catalog, age_reference=age_reference)
        return model

    # ---- forward ---------------------------------------------------------------------------

    def forward(
        self,
        batch: TokenBatch,
        *,
        weight_sums: torch.Tensor | None = None,
        return_logits: bool = True,
        has_targets: bool | None = None,
        distill: Distillation | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Next-item logits (B, T, N), unreleased items at -inf, and the loss (None when the
        batch has no targets).

        Logits are None in sampled-softmax training, which never scores the whole catalog, and
        when ``return_logits`` is False (training on the CPU then scores the valid targets only,
        which saves the padding's share of the (B, T, N) product; see ``every_position``).
        ``weight_sums`` (n_objectives,) replaces each objective's own Σw as its normalizer (see
        ``target_weight_sums``).
        ``has_targets`` given by a caller that knows it (the trainer, from its host-side counts)
        saves asking the device, which would wait for it. ``distill``: teachers whose
        next-item softmax the loss also learns (``Distillation``)."""
        table = self.items()  # (N, D)
        h = self.encode(batch, table)  # (B, T, D)
        sampled = self.samples_negatives
        raw = (
            None if sampled or not return_logits else self.item_logits(h, table, time=batch.time)
        )  # (B, T, N)
        if has_targets is None:
            has_targets = bool((batch.target >= 0).any())
        loss = (
            self.loss(h, table, batch, raw, weight_sums=weight_sums, distill=distill)
            if has_targets
            else None
        )
        if raw is None or not self.cfg.mask_unreleased:
            return raw, loss
        blocked = unreleased(self.items.release_time, batch.time.flatten()).view(raw.shape)
        return raw.masked_fill(blocked & batch.mask[..., None], float("-inf")), loss

    def encode(self, batch: TokenBatch, table: torch.Tensor) -> torch.Tensor:
        """Final hidden states (B, T, D) of the tokens, given the item table (N, D)."""
        T = batch.prev_item.shape[1]
        if self.cfg.max_len < T:
            raise ValueError(f"batch has {T} tokens; the model's max_len is {self.cfg.max_len}")
        prev = batch.prev_item
        known = (prev >= 0)[..., None]  # (B, T, 1); else PREV_BOS (-1) or PREV_UNKNOWN (-2)
        special = self.special_items.weight[(-1 - prev).clamp(0, 1)]  # (B, T, D)
        item = torch.where(known, table[prev.clamp(min=0)], special)  # (B, T, D)
        if self.cfg.scale_item_input:
            item = item * math.sqrt(self.cfg.d_model)
        x = (
            item
            + self.kind_emb(batch.prev_kind)
            + self.device_emb(batch.device_id)
            + self.surface_emb(batch.surface_id)
            + self.dense_proj(batch.dense * self.dense_mask)
            + self.pos_emb(torch.arange(T, device=prev.device))
        )
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)  # (B, T, D)

    def item_logits(
        self, h: torch.Tensor, table: torch.Tensor, *, time: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(..., N) tied output scores of hidden states (..., D); with the steps' times (...)
        and freshness on, plus each item's freshness bonus at that time."""
        scores = h @ table.T + self.item_bias
        if time is None or self.freshness is None:
            return scores
        return scores + self.freshness_bonus(time[..., None], self.items.release_time)

    def freshness_bonus(self, time: torch.Tensor, release_time: torch.Tensor) -> torch.Tensor:
        """Learned bonus of items released at ``release_time`` seen at ``time`` (broadcast)."""
        if self.freshness is None:
            return torch.zeros((), device=release_time.device)
        age_days = ((time - release_time) / 86400.0).clamp(min=0.0)
        bucket = torch.log2(1.0 + age_days).floor().long().clamp(max=self.freshness.numel() - 1)
        return self.freshness[bucket]

    # ---- loss ------------------------------------------------------------------------------

    @property
    def samples_negatives(self) -> bool:
        """Whether the loss is the sampled softmax: in training, with ``n_sampled`` > 0."""
        return self.training and self.cfg.n_sampled > 0

    @property
    def n_objectives(self) -> int:
        """Weighted objectives: next item, one per future head, and the genre head if any."""
        return self.cfg.n_future + (self.genre_head is not None)

    @torch.no_grad()
    def target_weight_sums(self, batch: TokenBatch) -> torch.Tensor:
        """(n_objectives,) Σw of each objective's valid targets in ``batch`` (float64): the
        next item, the items k = 1..n_future-1 steps ahead, then the genres (same targets as
        the next item). A DDP trainer all-reduces these and passes the global sums divided by
        the world size back as ``weight_sums``, so that the ranks' averaged gradients equal the
        one-process gradient of Σ w·ℓ / Σ w over the whole global batch."""
        T = batch.target.shape[1]
        sums = []
        for shift in range(self.cfg.n_future):
            if shift >= T:
                sums.append(torch.zeros((), dtype=torch.float64, device=batch.target.device))
                continue
            # every position, at weight 0 without a target: no boolean gather to wait for
            sums.append(self._position_weight(batch, shift=shift).double().sum())
        if self.genre_head is not None:
            sums.append(sums[0])
        return torch.stack(sums)

    def loss(
        self,
        h: torch.Tensor,
        table: torch.Tensor,
        batch: TokenBatch,
        logits: torch.Tensor | None = None,
        *,
        weight_sums: torch.Tensor | None = None,
        distill: Distillation | None = None,
    ) -> torch.Tensor:
        """Next item + multi-token + genre objectives; ``logits`` (B, T, N) reuses the forward's
        full-catalog scores; ``weight_sums`` (n_objectives,) are the normalizers (default: each
        objective's Σw over this batch); ``distill``: teachers for the next-item loss."""
        cfg = self.cfg

        def norm(index: int) -> torch.Tensor | None:
            return None if weight_sums is None else weight_sums[index]

        # sampled softmax masks the window's items itself
        seen = (
            self.seen_items(batch) if cfg.mask_seen and not self.samples_negatives else None
        )  # (B, T, N)
        total = self._item_loss(
            h, table, batch, shift=0, logits=logits, weight_sum=norm(0), seen=seen, distill=distill
        )
        T = h.shape[1]
        for k in range(1, min(cfg.n_future, T)):
            query = h[:, : T - k]  # (B, T-k, D)
            query = self.future_heads[k - 1](query) if cfg.future_heads else query
            future = self._item_loss(query, table, batch, shift=k, weight_sum=norm(k), seen=seen)
            total = total + cfg.future_weight / (cfg.n_future - 1) * future
        if self.genre_head is not None:
            rows = self._query_rows(h, batch.target >= 0)
            weight = rows(self._position_weight(batch, shift=0))
            genres = self.items.genres[rows(batch.target.clamp(min=0))]  # (M, G)
            genre = genre_loss(self.genre_head(rows(h)), genres, weight, total=norm(cfg.n_future))
            total = total + cfg.genre_weight * genre
        return total

    @staticmethod
    def _position_weight(batch: TokenBatch, *, shift: int) -> torch.Tensor:
        """(B, T - shift) engagement × sample weight of the target ``shift`` steps ahead of
        every position, 0 where there is none."""
        return (
            engagement_weight(batch.target_kind[:, shift:], batch.target_minutes[:, shift:])
            * batch.sample_weight[:, shift:]
            * (batch.target[:, shift:] >= 0)
        )

    @staticmethod
    def every_position(h: torch.Tensor) -> bool:
        """Whether the full-softmax and genre losses score every query position (weight 0
        where there is no target) rather than gather the valid targets: on CUDA, where a
        boolean gather makes the host wait for the device to learn its size; on the CPU the
        gather waits for nothing and saves the padding's arithmetic."""
        return h.is_cuda

    def _query_rows(
        self, h: torch.Tensor, valid: torch.Tensor
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """Takes (B, T', ...) tensors of the query positions to (M, ...) rows: every position
        where ``every_position`` (a position without a target weighs 0, and its target is
        read as row 0), else the ``valid`` (B, T') ones."""
        if self.every_position(h):
            return lambda x: x.flatten(0, 1)
        return lambda x: x[valid]

    def _item_loss(
        self,
        h: torch.Tensor,
        table: torch.Tensor,
        batch: TokenBatch,
        *,
        shift: int,
        logits: torch.Tensor | None = None,
        weight_sum: torch.Tensor | None = None,
        seen: torch.Tensor | None = None,
        distill: Distillation | None = None,
    ) -> torch.Tensor:
        """Loss of queries h (B, T - shift, D) against the targets ``shift`` steps ahead;
        ``seen`` (B, T, N) are the items each query knows (left out of its softmax);
        ``distill`` (next item only, shift 0): teachers whose softmax the loss also learns."""
        target = batch.target[:, shift:]  # (B, Tq), Tq = T - shift
        if self.samples_negatives:
            return self._sampled_loss(
                h, table, batch, shift=shift, weight_sum=weight_sum, distill=distill
            )
        Tq = target.shape[1]
        rows = self._query_rows(h, target >= 0)
        weight = rows(self._position_weight(batch, shift=shift))  # (M,)
        time = rows(batch.time[:, shift:])  # (M,) the targets' times
        asked = rows(batch.time[:, :Tq])  # (M,) the queries' times
        # (M, N): the rows' scores against the catalog
        scores = (
            rows(logits)
            if logits is not None and shift == 0
            else self.item_logits(rows(h), table, time=asked)
        )
        blocked = unreleased(self.items.release_time, time) if self.cfg.mask_unreleased else None
        if seen is not None:
            known = rows(seen[:, :Tq])  # (M, N) items the query has seen
            blocked = known if blocked is None else blocked | known
        taught = None  # (K, M, N): the teachers' scores of the same rows
        if distill is not None:
            encoded = distill.encode(batch)
            taught = torch.stack([t.item_logits(rows(q), e, time=asked) for t, q, e in encoded])
        # the target is never blocked, so a row without one (weight 0) has a finite loss
        return full_softmax_loss(
            scores, rows(target.clamp(min=0)), weight, blocked, total=weight_sum, teacher=taught,
            teacher_weight=0.0 if distill is None else distill.weight,
        )  # fmt: skip

    def _sampled_loss(
        self,
        h: torch.Tensor,
        table: torch.Tensor,
        batch: TokenBatch,
        *,
        shift: int,
        weight_sum: torch.Tensor | None,
        distill: Distillation | None = None,
    ) -> torch.Tensor:
        """Sampled-softmax loss of queries h (B, T - shift, D) at every position: padding and
        steps without a target take part at weight 0. A boolean gather of the valid targets
        would size its output from the data, and the host would wait for the device to learn
        it; at weight 0 a position adds nothing to Σ w·ℓ nor to Σ w, so the loss is the same."""
        B, Tq, D = h.shape
        target = batch.target[:, shift:]  # (B, Tq)
        weight = self._position_weight(batch, shift=shift).reshape(-1)  # (B·Tq,)
        time = batch.time[:, shift:].reshape(-1)  # the targets' times
        asked = batch.time[:, :Tq].reshape(-1)  # the queries' times
        release = self.items.release_time
        # the window's items: its inputs and its last target (the others are inputs too)
        seen = torch.cat([batch.prev_item, batch.target], dim=1) if self.cfg.mask_seen else None
        teacher = None
        if distill is not None:
            encoded = distill.encode(batch)

            def teacher(rows: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
                """(K, M, 1 + S): each teacher scores the same candidates, corrected by the
                student's proposal."""
                scores = []
                for model, query, model_table in encoded:
                    pos, neg = candidate_logits(
                        query[:, :Tq].reshape(B * Tq, -1), model_table, model.item_bias, rows,
                        negatives, log_q=self.item_log_q, bonus=model.candidate_bonus(asked),
                    )  # fmt: skip
                    scores.append(torch.cat([pos[:, None], neg], dim=1))
                return torch.stack(scores)

        return sampled_softmax_loss(
            h.reshape(B * Tq, D), table, self.item_bias, target.clamp(min=0).reshape(-1), weight,
            log_q=self.item_log_q, n_sampled=self.cfg.n_sampled,
            release_time=release if self.cfg.mask_unreleased else None, time=time,
            total=weight_sum, seen=seen, bonus=self.candidate_bonus(asked), teacher=teacher,
            teacher_weight=0.0 if distill is None else distill.weight,
        )  # fmt: skip

    def candidate_bonus(self, asked: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The freshness bonus of candidate item rows for queries asked at ``asked`` (M,), as
        ``sampled_softmax_loss`` takes it; None without freshness."""
        if self.freshness is None:
            return None
        release = self.items.release_time
        return lambda rows: self.freshness_bonus(
            asked.view(-1, *[1] * (rows.dim() - 1)), release[rows]
        )

    def seen_items(self, batch: TokenBatch) -> torch.Tensor:
        """(B, T, N) True where item n is the previous item of a token at or before t: the
        items that token t's query has already seen in its window."""
        prev = batch.prev_item
        B, T = prev.shape
        shown = torch.zeros(B, T, self.cfg.n_items, dtype=torch.int32, device=prev.device)
        # one write per token (a 0 where there is no previous item): no data-sized index
        shown.scatter_(2, prev.clamp(min=0)[..., None], (prev >= 0).to(torch.int32)[..., None])
        return shown.cumsum(dim=1) > 0

    # ---- serving ---------------------------------------------------------------------------

    @torch.no_grad()
    def item_embeddings(self) -> torch.Tensor:
        """(N, D) item representations, without ID drop-out."""
        with evaluating(self):
            return self.items()

    @torch.no_grad()
    def user_embeddings(self, batch: TokenBatch, table: torch.Tensor | None = None) -> torch.Tensor:
        """(B, D) hidden state at each row's last real token (the request token at serving);
        ``table``: the (N, D) item table a server keeps between model versions (default:
        computed here). Encoded in eval mode (no dropout), whatever mode the model is in."""
        with evaluating(self):
            h = self.encode(batch, self.item_embeddings() if table is None else table)  # (B, T, D)
        return h[torch.arange(h.shape[0], device=h.device), batch.lengths - 1]

    @torch.no_grad()
    def next_item_scores(self, batch: TokenBatch) -> torch.Tensor:
        """(B, N) next-item logits at each row's last real token, unreleased items at -inf;
        in eval mode, whatever mode the model is in."""
        table = self.item_embeddings()  # (N, D), once for the encoder and the logits
        user = self.user_embeddings(batch, table)  # (B, D)
        rows = torch.arange(user.shape[0], device=user.device)
        last = batch.time[rows, batch.lengths - 1]  # (B,)
        scores = self.item_logits(user, table, time=last)  # (B, N)
        if self.cfg.mask_unreleased:
            scores = scores.masked_fill(unreleased(self.items.release_time, last), float("-inf"))
        return scores

    @torch.no_grad()
    def set_proposal(self, counts: np.ndarray, *, power: float = 0.75) -> None:
        """Sampled-softmax proposal q ∝ (count + 1)^power over catalog rows."""
        q = torch.as_tensor(np.asarray(counts, dtype=np.float64) + 1.0) ** power
        self.item_log_q.copy_(torch.log(q / q.sum()).float())

    def catalog_view(self) -> ItemCatalog:
        """The catalog held in the model's buffers (ids, genres, release times; no tokens),
        enough to tokenize requests from a checkpoint alone."""
        enc = self.items
        return ItemCatalog(
            item_ids=enc.item_ids.cpu().numpy(),
            genres=enc.genres.cpu().numpy() > 0,
            release_time=enc.release_time.cpu().numpy(),
        )


@dataclass(frozen=True)
class Distillation:
    """Teachers whose next-item softmax a training model also learns, with weight ``weight``
    (``fm_core.objectives``: α of the distillation term, 1 − α for the targets). The teachers
    are trained FMs of the same catalog and context length; they are frozen and score in eval
    mode (no dropout)."""

    teachers: tuple[FoundationModel, ...]
    weight: float = 0.5

    def __post_init__(self) -> None:
        if not self.teachers:
            raise ValueError("distillation needs at least one teacher")
        if not 0.0 < self.weight <= 1.0:
            raise ValueError(f"distillation weight must be in (0, 1]; got {self.weight}")
        for teacher in self.teachers:
            teacher.eval().requires_grad_(False)

    def check(self, cfg: FMConfig) -> None:
        """Raises unless every teacher scores ``cfg``'s catalog and context length."""
        for index, teacher in enumerate(self.teachers):
            if teacher.cfg.n_items != cfg.n_items or teacher.cfg.max_len < cfg.max_len:
                raise ValueError(
                    f"teacher {index} has {teacher.cfg.n_items} items and max_len "
                    f"{teacher.cfg.max_len}; the student needs {cfg.n_items} items and max_len "
                    f">= {cfg.max_len}"
                )

    def to(self, device: torch.device) -> Distillation:
        for teacher in self.teachers:
            teacher.to(device)
        return self

    @torch.no_grad()
    def encode(self, batch: TokenBatch) -> list[tuple[FoundationModel, torch.Tensor, torch.Tensor]]:
        """Each teacher with its hidden states (B, T, D_k) of ``batch`` and its item table."""
        encoded = []
        for teacher in self.teachers:
            table = teacher.items()
            encoded.append((teacher, teacher.encode(batch, table), table))
        return encoded
