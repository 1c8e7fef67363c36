"""The ranker: one model for home, search and title-to-title (as Netflix's UniCoRn), scoring
P(play | request, candidate, shown at the top) from the foundation model's representations.

Inputs of one (request, candidate) pair (see ``RankerInputs``):

- the FM user embedding u of the request (its history and request token), the FM item embedding
  e of the candidate and, for title-to-title, the embedding s of the source item — each projected
  to ``d_embed`` (items and sources share the projection) — with the products u ⊙ e and s ⊙ e;
- the request context: surface, device, daypart and country (hashed), one embedding each;
- the query, a hashed bag of its tokens (mean of token embeddings);
- dense pair features ``PAIR_FEATURES``: the FM's own logit u·e + b and item bias b; the
  candidate's log popularity log((plays + 1) / (all plays + n_items)), counted strictly before
  each training row's request and over all training plays at serving; how the
  candidate resembles the user's past plays (mean cosine of FM item embeddings over the last
  ``HISTORY_SIMILARITY_CAP`` plays, and the log lift of the user's smoothed genre profile on the
  candidate's genres, as the baseline computes it) with the history's length; the cosine of
  source and candidate; lexical matches of the query against the candidate's metadata tokens
  (share of query tokens found, share of the item's title words covered, all query tokens
  found, exact title); whether the user played the candidate before; and the candidate's
  freshness. They are
  standardized with the training rows' mean and deviation (buffers, saved with the weights).

The concatenation x0 (B, d0) feeds, in parallel, a DCN-v2 cross network of full-rank layers
(Wang et al., WWW 2021)

    x_{l+1} = x0 ⊙ (W_l x_l + b_l) + x_l

and a deep tower (MLP with ReLU and dropout); a linear head reads both outputs
(``CrossDeepNetwork``, which the OPE reward model ``fm_core.reward_classifier`` shares).

**Position** is a training-only input: the logit gets a learned bias β_k for the logged slate
position k (positions past ``n_positions − 1`` share the last), with β_0 = 0 fixed. Serving uses
k = 0, so the output is the logit of P(play | shown at the top) with the examination effect of
the logs factored out, as the baseline does. Calibration (``fm_core.calibration``) maps it to a
probability.

Training (``train_ranker``): weighted binary cross-entropy, AdamW, minibatches of pairs, the
device's autocast (bf16 on CUDA, fp32 on the CPU), a tqdm bar and per-epoch metrics through
``logging``; with validation rows it keeps the weights of the epoch with the lowest validation
loss.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the PyTorch convention
from torch import nn
from tqdm.auto import tqdm

from fm_core.device import autocast_context, select_device
from fm_core.item_embedding import hash_token
from fm_core.types import query_tokens  # torch-free, so that retrieval shares it

logger = logging.getLogger(__name__)

LEXICAL_FEATURES: tuple[str, ...] = (
    "has_query", "query_share", "title_share", "all_query_tokens", "exact_title",
)  # fmt: skip  # filled only for requests with a query
PAIR_FEATURES: tuple[str, ...] = (
    "fm_logit", "fm_item_bias", "log_popularity", "history_cosine", "genre_affinity",
    "log_history_length", "source_cosine", "has_source", *LEXICAL_FEATURES, "seen", "freshness",
    "log_age_days",
)  # fmt: skip
N_PAIR_FEATURES = len(PAIR_FEATURES)
CONTEXT_FIELDS: tuple[str, ...] = ("surface", "device", "daypart", "country")
HISTORY_SIMILARITY_CAP = 50


def query_buckets(query: str | None, *, n_buckets: int, max_tokens: int) -> np.ndarray:
    """(max_tokens,) hashed buckets of the query's first tokens, 0-padded."""
    buckets = np.zeros(max_tokens, dtype=np.int64)
    tokens = [hash_token(t, n_buckets) for t in query_tokens(query)[:max_tokens]]
    buckets[: len(tokens)] = tokens
    return buckets


@dataclass
class RankerConfig:
    """The ranker's shape; saved with its weights."""

    d_fm: int = 64  # size of the FM's embeddings
    d_embed: int = 32
    d_context: int = 8
    n_surfaces: int = 8
    n_devices: int = 8
    n_dayparts: int = 4
    n_country_buckets: int = 64
    n_query_buckets: int = 4096
    max_query_tokens: int = 8
    d_query: int = 16
    n_cross: int = 2
    hidden: tuple[int, ...] = (128, 64)
    dropout: float = 0.1
    n_positions: int = 20

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        for name in ("d_fm", "d_embed", "d_context", "d_query", "n_positions"):
            if getattr(self, name) < 1:
                raise ValueError(f"RankerConfig.{name} must be >= 1; got {getattr(self, name)}")
        if self.n_cross < 0 or any(h < 1 for h in self.hidden):
            raise ValueError("n_cross must be >= 0 and every hidden size >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"RankerConfig.dropout must be in [0, 1); got {self.dropout}")

    @property
    def d_input(self) -> int:
        """Width of x0."""
        return 5 * self.d_embed + 4 * self.d_context + self.d_query + N_PAIR_FEATURES


@dataclass(frozen=True)
class RankerInputs:
    """Features of M (request, candidate) pairs over B requests.

    Request level (B, ...): ``user`` (B, d_fm), ``source`` (B, d_fm) zero without a source item,
    ``context`` (B, 4) ids of CONTEXT_FIELDS, ``query`` (B, max_query_tokens) buckets.
    Pair level (M, ...): ``request_index`` (M,) the request of each pair, ``item`` (M, d_fm),
    ``dense`` (M, N_PAIR_FEATURES) raw PAIR_FEATURES, ``position`` (M,) slate position (0 at
    serving).
    """

    user: torch.Tensor
    source: torch.Tensor
    context: torch.Tensor
    query: torch.Tensor
    request_index: torch.Tensor
    item: torch.Tensor
    dense: torch.Tensor
    position: torch.Tensor

    @property
    def n_pairs(self) -> int:
        return int(self.request_index.shape[0])

    def pairs(self, rows: torch.Tensor) -> RankerInputs:
        """The pairs ``rows`` (request-level tensors are shared, not copied)."""
        return replace(
            self,
            request_index=self.request_index[rows],
            item=self.item[rows],
            dense=self.dense[rows],
            position=self.position[rows],
        )

    def to(self, device: torch.device | str) -> RankerInputs:
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})


class CrossLayer(nn.Module):
    """x_{l+1} = x0 ⊙ (W x_l + b) + x_l with a full-rank W (DCN-v2)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)
        nn.init.normal_(self.linear.weight, std=0.5 / width**0.5)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x0 * self.linear(x) + x  # (B, d0)


class CrossDeepNetwork(nn.Module):
    """DCN-v2 in its parallel form over an input x0 (B, width): a cross network of full-rank
    ``CrossLayer``s beside a deep tower (Linear, ReLU, Dropout per hidden size), and a linear
    head reading both outputs. Shared by the ranker and the OPE reward model
    (``fm_core.reward_classifier``)."""

    def __init__(
        self, width: int, *, n_cross: int, hidden: tuple[int, ...], dropout: float
    ) -> None:
        super().__init__()
        if width < 1 or n_cross < 0 or any(h < 1 for h in hidden):
            raise ValueError(
                f"width must be >= 1, n_cross >= 0 and every hidden size >= 1; got width "
                f"{width}, n_cross {n_cross}, hidden {hidden}"
            )
        self.cross = nn.ModuleList(CrossLayer(width) for _ in range(n_cross))
        layers: list[nn.Module] = []
        tower = width
        for size in hidden:
            layers += [nn.Linear(tower, size), nn.ReLU(), nn.Dropout(dropout)]
            tower = size
        self.deep = nn.Sequential(*layers)
        self.head = nn.Linear(width + tower, 1)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """(B,) logits of the inputs x0 (B, width)."""
        x = x0
        for layer in self.cross:
            x = layer(x0, x)
        return self.head(torch.cat([x, self.deep(x0)], dim=1)).squeeze(1)


_NETWORK_PARTS = ("cross.", "deep.", "head.")


def _rename_flat_network_keys(
    module: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str, *args: object
) -> None:
    """Ranker files written before ``CrossDeepNetwork`` held ``cross.*``, ``deep.*`` and
    ``head.*`` at the ranker's top level; they now live under ``network.``."""
    for key in [k for k in state_dict if k.startswith(tuple(prefix + p for p in _NETWORK_PARTS))]:
        state_dict[f"{prefix}network.{key[len(prefix) :]}"] = state_dict.pop(key)


class Ranker(nn.Module):
    def __init__(self, cfg: RankerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.user_proj = nn.Linear(cfg.d_fm, cfg.d_embed)
        self.item_proj = nn.Linear(cfg.d_fm, cfg.d_embed)  # items and source items
        sizes = (cfg.n_surfaces, cfg.n_devices, cfg.n_dayparts, cfg.n_country_buckets)
        self.context_emb = nn.ModuleList(nn.Embedding(n, cfg.d_context) for n in sizes)
        self.query_emb = nn.Embedding(cfg.n_query_buckets, cfg.d_query, padding_idx=0)
        self.register_buffer("dense_mean", torch.zeros(N_PAIR_FEATURES))
        self.register_buffer("dense_std", torch.ones(N_PAIR_FEATURES))
        d0 = cfg.d_input
        self.input_norm = nn.LayerNorm(d0)
        self.network = CrossDeepNetwork(
            d0, n_cross=cfg.n_cross, hidden=cfg.hidden, dropout=cfg.dropout
        )
        self.register_load_state_dict_pre_hook(_rename_flat_network_keys)
        # β_1.. (β_0 = 0), starting from the examination prior log θ_k = −log log2(k + 2)
        k = torch.arange(1, cfg.n_positions, dtype=torch.float32)
        self.position_bias = nn.Parameter(-torch.log(torch.log2(k + 2.0)))

    @torch.no_grad()
    def set_dense_scaling(self, dense: torch.Tensor) -> None:
        """Standardize the dense features with these (training) rows' mean and deviation."""
        self.dense_mean.copy_(dense.float().mean(dim=0))
        self.dense_std.copy_(dense.float().std(dim=0).clamp(min=1e-3))

    def x0(self, inputs: RankerInputs) -> torch.Tensor:
        """(M, d0) input of the cross network and the deep tower."""
        # Request-level parts are computed once per request present among the pairs, so a
        # minibatch never pays for every request of the training set.
        present, r = torch.unique(inputs.request_index, return_inverse=True)  # (U,), (M,)
        user = self.user_proj(inputs.user[present])[r]  # (M, E)
        item = self.item_proj(inputs.item)  # (M, E)
        raw_source = inputs.source[present]  # (U, d_fm)
        has_source = (raw_source.abs().sum(dim=1, keepdim=True) > 0).float()  # (U, 1)
        source = (self.item_proj(raw_source) * has_source)[r]  # (M, E)
        context_ids = inputs.context[present]  # (U, 4)
        context = torch.cat(
            [emb(context_ids[:, j]) for j, emb in enumerate(self.context_emb)], dim=1
        )[r]  # (M, 4·C)
        query_ids = inputs.query[present]  # (U, L)
        mask = (query_ids > 0).float()
        query = (self.query_emb(query_ids) * mask[..., None]).sum(dim=1)  # (U, Q)
        query = (query / mask.sum(dim=1, keepdim=True).clamp(min=1.0))[r]  # (M, Q)
        dense = (inputs.dense.float() - self.dense_mean) / self.dense_std  # (M, F)
        parts = [user, item, user * item, source, source * item, context, query, dense]
        return self.input_norm(torch.cat(parts, dim=1))

    def forward(self, inputs: RankerInputs) -> torch.Tensor:
        """(M,) logits of P(play | pair, shown at its position)."""
        logit = self.network(self.x0(inputs))  # (M,)
        return logit + self.position_logit(inputs.position)

    def position_logit(self, position: torch.Tensor) -> torch.Tensor:
        """β_k of each position (β_0 = 0)."""
        betas = torch.cat([self.position_bias.new_zeros(1), self.position_bias])
        return betas[position.clamp(min=0, max=self.cfg.n_positions - 1)]


# ---- training ---------------------------------------------------------------------------------


@dataclass
class RankerTrainConfig:
    epochs: int = 6
    batch_size: int = 1024
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    progress: bool = True


@dataclass(frozen=True)
class RankerEpoch:
    """Metrics of one epoch: weighted mean log loss on the training and validation rows."""

    epoch: int
    train_loss: float
    valid_loss: float | None
    pairs_per_s: float


@dataclass
class RankerTrainResult:
    ranker: Ranker
    epochs: list[RankerEpoch] = field(default_factory=list)
    best_epoch: int = -1


def _check_labels(inputs: RankerInputs, labels: np.ndarray, weights: np.ndarray | None) -> None:
    if labels.shape != (inputs.n_pairs,):
        raise ValueError(f"labels must have one value per pair ({inputs.n_pairs}); "
                         f"got shape {labels.shape}")  # fmt: skip
    if np.any((labels < 0) | (labels > 1)):
        raise ValueError("labels must be in [0, 1]")
    if weights is not None and (weights.shape != labels.shape or np.any(weights < 0)):
        raise ValueError("weights must be non-negative, one per pair")


@torch.no_grad()
def ranker_logits(ranker: Ranker, inputs: RankerInputs, *, batch_size: int = 8192) -> np.ndarray:
    """(M,) logits in eval mode, in batches on the ranker's device."""
    ranker.eval()
    device = next(ranker.parameters()).device
    on_device = inputs.to(device)
    out = []
    for start in range(0, inputs.n_pairs, batch_size):
        rows = torch.arange(start, min(start + batch_size, inputs.n_pairs), device=device)
        with autocast_context(device):
            out.append(ranker(on_device.pairs(rows)).float().cpu())
    return torch.cat(out).numpy().astype(np.float64) if out else np.empty(0)


def _weighted_loss(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    losses = np.logaddexp(0.0, logits) - labels * logits
    return float(np.sum(weights * losses) / max(weights.sum(), 1e-12))


def train_ranker(
    ranker: Ranker,
    inputs: RankerInputs,
    labels: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    valid: tuple[RankerInputs, np.ndarray, np.ndarray | None] | None = None,
    config: RankerTrainConfig | None = None,
) -> RankerTrainResult:
    """Train ``ranker`` on the pairs of ``inputs``; keep the best epoch on ``valid`` if given."""
    config = config or RankerTrainConfig()
    labels = np.asarray(labels, dtype=np.float64)
    weights = None if weights is None else np.asarray(weights, dtype=np.float64)
    _check_labels(inputs, labels, weights)
    if inputs.n_pairs == 0:
        raise ValueError("no pairs to train the ranker on")
    device = select_device()
    torch.manual_seed(config.seed)
    ranker.to(device)
    ranker.set_dense_scaling(inputs.dense)
    on_device = inputs.to(device)
    y = torch.as_tensor(labels, dtype=torch.float32, device=device)
    w = torch.ones_like(y) if weights is None else torch.as_tensor(weights, device=device).float()
    w = w / w.mean().clamp(min=1e-12)
    decay = [p for p in ranker.parameters() if p.dim() >= 2]
    no_decay = [p for p in ranker.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
    )
    generator = torch.Generator().manual_seed(config.seed)
    result = RankerTrainResult(ranker=ranker)
    best_loss, best_state = float("inf"), None
    for epoch in range(config.epochs):
        ranker.train()
        start = time.perf_counter()
        order = torch.randperm(inputs.n_pairs, generator=generator).to(device)
        total = torch.zeros((), dtype=torch.float64)
        batches = range(0, inputs.n_pairs, config.batch_size)
        bar = tqdm(
            batches,
            desc=f"ranker epoch {epoch}",
            disable=None if config.progress else True,  # None: off when not a terminal
            leave=False,
        )
        for first in bar:
            rows = order[first : first + config.batch_size]
            with autocast_context(device):
                logits = ranker(on_device.pairs(rows))
            losses = F.binary_cross_entropy_with_logits(logits.float(), y[rows], reduction="none")
            loss = (losses * w[rows]).sum() / w[rows].sum().clamp(min=1e-12)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * rows.numel()
        train_loss = float(total) / inputs.n_pairs
        valid_loss = None
        if valid is not None:
            v_inputs, v_labels, v_weights = valid
            v_labels = np.asarray(v_labels, dtype=np.float64)
            v_w = np.ones_like(v_labels) if v_weights is None else np.asarray(v_weights, float)
            valid_loss = _weighted_loss(ranker_logits(ranker, v_inputs), v_labels, v_w)
            if valid_loss < best_loss:
                best_loss, best_state = valid_loss, copy.deepcopy(ranker.state_dict())
                result.best_epoch = epoch
        pairs_per_s = inputs.n_pairs / max(time.perf_counter() - start, 1e-9)
        result.epochs.append(RankerEpoch(epoch, train_loss, valid_loss, pairs_per_s))
        logger.info(
            "ranker epoch %d: train loss %.4f valid loss %s, %.0f pairs/s",
            epoch, train_loss, "-" if valid_loss is None else f"{valid_loss:.4f}", pairs_per_s,
        )  # fmt: skip
    if best_state is not None:
        ranker.load_state_dict(best_state)
    else:
        result.best_epoch = config.epochs - 1
    ranker.eval()
    return result
