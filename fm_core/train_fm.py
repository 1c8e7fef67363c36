"""Training of the foundation model: sliding windows over event histories, AdamW, rank-aware.

``train_fm`` takes (History, per-event sample weights) pairs, rolls up and tokenizes them,
cuts sliding windows of at most ``max_len`` tokens every ``stride`` tokens, and trains with
AdamW under the device's autocast (bf16 on CUDA, fp32 on the CPU).

**Distributed.** Started by ``torchrun``, the process reads ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` from the environment, joins the process group (gloo on the CPU, NCCL on GPUs)
unless one exists, wraps the model in DistributedDataParallel and shards the windows with a
DistributedSampler (the same shuffle on every rank, seeded by ``seed`` and the epoch; a single
process uses it too, so a run of R ranks with batch b sees the batches of one process with
batch R·b). The
model is initialized from ``seed`` on every rank (DDP also broadcasts rank 0's weights); the
random streams of dropout, ID drop-out and negative sampling are seeded with ``seed + rank``.
Metrics are summed over ranks; only rank 0 logs, shows the progress bar and checkpoints.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from fm_core.checkpoint import load_checkpoint, save_checkpoint
from fm_core.device import autocast_context, select_device
from fm_core.model import FMConfig, FoundationModel
from fm_core.objectives import top1_hits
from fm_core.tokenize import (
    EventContext,
    SequenceTokens,
    collate,
    tokenize_histories,
    training_windows,
)
from fm_core.types import History, ItemCatalog

__all__ = [
    "DistEnv", "EpochMetrics", "TrainConfig", "TrainResult", "dist_env", "load_checkpoint",
    "train_fm",
]  # fmt: skip

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """How to train; the model's shape is in FMConfig."""

    epochs: int = 5
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.01
    stride: int | None = None  # sliding-window stride; None is max_len // 2
    grad_clip: float = 1.0
    seed: int = 0
    progress: bool = True
    checkpoint_path: str | None = None  # written by rank 0 after every epoch


@dataclass(frozen=True)
class DistEnv:
    """This process's place in a torchrun job (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_env() -> DistEnv:
    """The DDP environment set by torchrun (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
    return DistEnv(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


@dataclass(frozen=True)
class EpochMetrics:
    """Training metrics of one epoch, over all ranks; ``top1`` is NaN with sampled softmax."""

    epoch: int
    loss: float
    top1: float
    n_targets: int
    windows_per_s: float


@dataclass
class TrainResult:
    model: FoundationModel
    metrics: list[EpochMetrics]


def _windows(
    sequences: Sequence[tuple[History, np.ndarray | None]],
    catalog: ItemCatalog,
    cfg: FMConfig,
    *,
    stride: int,
    contexts: Sequence[EventContext | None] | None,
) -> list[SequenceTokens]:
    histories = [h for h, _ in sequences]
    weights = [w for _, w in sequences]
    tokens = tokenize_histories(
        histories, catalog, weights=weights, contexts=contexts, config=cfg.tokenizer()
    )
    windows = training_windows(tokens, max_len=cfg.max_len, stride=stride)
    return [w for w in windows if np.any((w.target >= 0) & (w.sample_weight > 0))]


def _optimizer(model: FoundationModel, train: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices and embeddings only, as nanoGPT."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": train.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=train.lr)


def train_fm(
    sequences: Sequence[tuple[History, np.ndarray | None]],
    catalog: ItemCatalog,
    cfg: FMConfig,
    train: TrainConfig | None = None,
    *,
    contexts: Sequence[EventContext | None] | None = None,
    model: FoundationModel | None = None,
) -> TrainResult:
    """Train a foundation model (a new one for ``catalog``, or ``model`` to continue).

    Args:
        sequences: per user, the History and its (n,) per-event sample weights (None for 1).
        catalog: the items; ``cfg`` must be sized for it (``FMConfig.with_catalog``).
        contexts: optional per-user EventContext (device, surface, local hour of each event).
    """
    train = train or TrainConfig()
    env = dist_env()
    device = select_device(env.local_rank)
    owns_group = env.distributed and not dist.is_initialized()
    if owns_group:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    stride = train.stride or max(cfg.max_len // 2, 1)
    windows = _windows(sequences, catalog, cfg, stride=stride, contexts=contexts)
    if not windows:
        raise ValueError("no training windows: the histories have no catalog items to predict")
    if model is None:
        torch.manual_seed(train.seed)
        last_event = max(float(np.max(h.times)) for h, _ in sequences if len(h))
        model = FoundationModel.from_catalog(cfg, catalog, age_reference=last_event)
        if cfg.n_sampled > 0:
            targets = np.concatenate([w.target[w.target >= 0] for w in windows])
            model.set_proposal(np.bincount(targets, minlength=cfg.n_items))
    model.to(device)
    net: torch.nn.Module = model
    if env.distributed:
        ids = [device.index] if device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=ids)
    # One sampler for every world size: rank r takes every world_size-th window of the same
    # shuffle, so the union of the ranks' batches of b is the one-process batch of world_size·b.
    sampler = DistributedSampler(
        windows,  # type: ignore[arg-type]  # a list is a map-style dataset
        num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=train.seed,
    )  # fmt: skip
    torch.manual_seed(train.seed + env.rank)
    loader = DataLoader(
        windows,  # type: ignore[arg-type]  # a list is a map-style dataset
        batch_size=train.batch_size,
        sampler=sampler,
        collate_fn=collate,
    )
    optimizer = _optimizer(model, train)
    if env.is_main:
        logger.info(
            "training FM: %d windows, %d items, world size %d, device %s",
            len(windows), cfg.n_items, env.world_size, device,
        )  # fmt: skip
    metrics: list[EpochMetrics] = []
    try:
        for epoch in range(train.epochs):
            metrics.append(_run_epoch(net, loader, optimizer, epoch, device, train, env))
            if env.is_main:
                m = metrics[-1]
                logger.info(
                    "epoch %d: loss %.4f top1 %.3f targets %d windows/s %.1f",
                    m.epoch, m.loss, m.top1, m.n_targets, m.windows_per_s,
                )  # fmt: skip
                if train.checkpoint_path:
                    save_checkpoint(
                        train.checkpoint_path, model, meta={"epoch": epoch, "loss": m.loss}
                    )
    finally:
        if owns_group:
            dist.destroy_process_group()
    model.eval()
    return TrainResult(model=model, metrics=metrics)


def _run_epoch(
    net: torch.nn.Module,
    loader: DataLoader[SequenceTokens],
    optimizer: torch.optim.Optimizer,
    epoch: int,
    device: torch.device,
    train: TrainConfig,
    env: DistEnv,
) -> EpochMetrics:
    """One pass over this rank's windows; the metrics are summed over ranks."""
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    net.train()
    # loss × targets, targets, top-1 hits, scored targets, windows
    totals = torch.zeros(5, dtype=torch.float64)
    start = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch}", disable=not (env.is_main and train.progress))
    for cpu_batch in bar:
        batch = cpu_batch.to(device)
        with autocast_context(device):
            logits, loss = net(batch)
        if loss is None:
            continue
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), train.grad_clip)
        optimizer.step()
        valid = batch.target >= 0
        n = int(valid.sum())
        hits, scored = (
            (0, 0) if logits is None else top1_hits(logits.detach()[valid], batch.target[valid])
        )
        value = float(loss.detach())
        totals += torch.tensor([value * n, n, hits, scored, batch.mask.shape[0]])
        bar.set_postfix(loss=f"{value:.3f}")
    if env.distributed:
        summed = totals.to(device)  # NCCL reduces device tensors only
        dist.all_reduce(summed)
        totals = summed.cpu()
    elapsed = max(time.perf_counter() - start, 1e-9)
    loss_sum, n, hits, scored, n_windows = totals.tolist()
    return EpochMetrics(
        epoch=epoch,
        loss=loss_sum / max(n, 1.0),
        top1=hits / scored if scored else float("nan"),
        n_targets=int(n),
        windows_per_s=n_windows / elapsed,
    )
