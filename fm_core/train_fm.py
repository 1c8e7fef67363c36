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

**Global weight normalization.** Each objective is Σ w·ℓ / Σ w over the *global* batch: every
step all-reduces the ranks' per-objective weight sums (``FoundationModel.target_weight_sums``)
and each rank divides its Σ w·ℓ by (global Σ w) / world size. DDP's gradient average then
equals the one-process gradient exactly, even when the ranks' shares of the weight differ.

**Length buckets.** With ``length_buckets`` each epoch shuffles the windows, sorts them by
length within pools of 64 batches, cuts batches and shuffles the batches, so that a batch pads
little; under DDP rank r takes every world_size-th batch (the one-process equivalence above then
holds in distribution, not batch for batch). A bucketed batch's Σw follows its length (a batch
of 3-event windows holds a tenth of the targets of one of 50-event windows), so normalizing by
each batch's own Σw would weigh a target by the batch it lands in; bucketed training instead
divides every batch by the mean Σw per batch over all windows, a constant, and each target
weighs the same, as in randomly drawn batches.

**The step never waits for the device.** The windows are collated once into padded tensors
on the device (``fm_core.window_store``; ``resident_data=False`` collates each batch on the
host instead) and a batch is a gather by index; its target counts and FLOPs come from the host.
The losses and top-1 hits stay on the device and are read once an epoch (the progress bar
reads the last loss every ``log_every`` steps). ``compile`` compiles the transformer blocks
with ``torch.compile`` on CUDA (off on the CPU).

**Weight averaging.** With ``ema_decay`` > 0 an exponential moving average of the weights is
updated after every optimizer step (``fm_core.weight_average``, on the device, no wait), and
it is the average that is validated, kept as the best epoch and returned.

**Schedule and model selection.** The learning rate warms up linearly over ``warmup_steps``
and then stays (``schedule="constant"``) or follows a cosine to ``min_lr_ratio`` × lr
(``"cosine"``). With a ``validate`` callback (higher is better, e.g. validation NDCG@10), rank 0
scores the model after every epoch, the score is broadcast, the best epoch's weights are kept
and restored at the end, and training stops after ``patience`` epochs without improvement.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DistributedSampler, Sampler
from tqdm.auto import tqdm

from fm_core.checkpoint import load_checkpoint, save_checkpoint, unwrap
from fm_core.device import autocast_context, select_device
from fm_core.flops import StepShape, teacher_flops, training_flops
from fm_core.model import Distillation, FMConfig, FoundationModel, evaluating
from fm_core.tokenize import (
    EventContext,
    SequenceTokens,
    TokenBatch,
    collate,
    tokenize_histories,
    training_windows,
)
from fm_core.types import History, ItemCatalog
from fm_core.weight_average import WARMUPS, WeightAverage
from fm_core.window_store import WindowStore, window_target_counts

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
    warmup_steps: int = 0  # linear warm-up of the learning rate, in optimizer steps
    schedule: str = "constant"  # after warm-up: "constant" or "cosine"
    min_lr_ratio: float = 0.05  # the cosine's final learning rate, relative to lr
    patience: int | None = None  # with validate: stop after this many epochs without a gain
    train_top1: bool = True  # score the whole catalog at every step for the top-1 metric
    length_buckets: bool = False  # batch windows of similar length (less padding; see below)
    # sampled softmax: negatives drawn ∝ (target count + 1)^proposal_power; 0 draws uniformly
    proposal_power: float = 0.75
    # True: the windows are held as padded tensors on the device and batched by index
    # (fm_core.window_store); False: each batch is collated on the host and copied
    resident_data: bool = True
    compile: bool = False  # torch.compile the transformer blocks (CUDA only; off on the CPU)
    log_every: int = 50  # steps between progress-bar loss updates (each one reads the device)
    # > 0: validation, model selection and the returned model use an exponential moving
    # average of the weights with this decay (fm_core.weight_average); 0: the trained weights
    ema_decay: float = 0.0
    ema_warmup: str = "tensorflow"  # how the average's decay rises (fm_core.weight_average)

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}; got {self.schedule!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1); got {self.ema_decay}")
        if self.ema_warmup not in WARMUPS:
            raise ValueError(f"ema_warmup must be one of {WARMUPS}; got {self.ema_warmup!r}")
        if not 0.0 <= self.proposal_power <= 1.0:
            raise ValueError(f"proposal_power must be in [0, 1]; got {self.proposal_power}")
        if self.epochs < 0 or self.batch_size < 1 or self.warmup_steps < 0:
            raise ValueError("epochs and warmup_steps must be >= 0 and batch_size >= 1; got "
                             f"{self.epochs}, {self.warmup_steps}, {self.batch_size}")  # fmt: skip


SCHEDULES = ("constant", "cosine")
FUSED_ADAM_DEVICES = ("cpu", "cuda")


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
    valid: float = math.nan  # the validate callback's score, NaN without one
    steps: int = 0  # optimizer steps over all ranks
    seconds: float = 0.0  # the epoch's training time, validation excluded
    flops: float = 0.0  # model FLOPs of the epoch's steps over all ranks (fm_core.flops)
    step_losses: tuple[float, ...] = ()  # this rank's loss at every step, read once an epoch


def lr_factor(step: int, *, total_steps: int, train: TrainConfig) -> float:
    """Learning-rate multiplier at optimizer step ``step`` (0-based): warm-up, then the
    schedule."""
    if step < train.warmup_steps:
        return (step + 1) / train.warmup_steps
    if train.schedule == "constant":
        return 1.0
    span = max(total_steps - train.warmup_steps, 1)
    progress = min((step - train.warmup_steps) / span, 1.0)
    return train.min_lr_ratio + (1 - train.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class TrainResult:
    model: FoundationModel
    metrics: list[EpochMetrics]
    best_epoch: int | None = None  # the epoch whose weights were kept (with validate)


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


class LengthBucketBatches(Sampler[list[int]]):
    """Batches of window indices of similar length for one rank (see the module docstring)."""

    POOL_BATCHES = 64

    def __init__(
        self, lengths: Sequence[int], *, batch_size: int, seed: int, rank: int, world_size: int
    ) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _all_batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(self.lengths.size)
        pool = self.batch_size * self.POOL_BATCHES
        batches = []
        for start in range(0, order.size, pool):
            part = order[start : start + pool]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches += [part[i : i + self.batch_size] for i in range(0, part.size, self.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def __len__(self) -> int:
        return math.ceil(self.lengths.size / self.batch_size) // self.world_size

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()[self.rank :: self.world_size][: len(self)]
        return iter([b.tolist() for b in batches])


def _batches(windows: list[SequenceTokens], train: TrainConfig, env: DistEnv) -> Sampler:
    """Batches of window indices for this rank: DistributedSampler shards, or length buckets."""
    if train.length_buckets:
        return LengthBucketBatches(
            [len(w) for w in windows], batch_size=train.batch_size, seed=train.seed,
            rank=env.rank, world_size=env.world_size,
        )  # fmt: skip
    # One sampler for every world size: rank r takes every world_size-th window of the same
    # shuffle, so the union of the ranks' batches of b is the one-process batch of world_size·b.
    sampler = DistributedSampler(
        windows,  # type: ignore[arg-type]  # a list is a map-style dataset
        num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=train.seed,
    )  # fmt: skip
    return BatchSampler(sampler, batch_size=train.batch_size, drop_last=False)


class _Batcher:
    """This rank's batches of one epoch as TokenBatches on the device: gathered from a
    ``WindowStore`` (resident) or collated on the host and copied. Both give the same batches;
    the host-side target counts come with each one, so the step never asks the device."""

    def __init__(
        self, windows: list[SequenceTokens], sampler: Sampler, device: torch.device, *,
        resident: bool, max_shift: int,
    ) -> None:  # fmt: skip
        self.windows, self.sampler, self.device = windows, sampler, device
        self.store = WindowStore(windows, device, max_shift=max_shift) if resident else None
        self.counts = (
            self.store.target_counts if self.store else window_target_counts(windows, max_shift)
        )
        self.lengths = np.array([len(w) for w in windows], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        inner = getattr(self.sampler, "sampler", self.sampler)
        if isinstance(inner, DistributedSampler | LengthBucketBatches):
            inner.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[TokenBatch, StepShape]]:
        for indices in self.sampler:
            rows = np.asarray(indices, dtype=np.int64)
            shape = StepShape(
                batch=int(rows.size),
                tokens=max(int(self.lengths[rows].max()), 1),
                targets=self.counts[rows].sum(axis=0).tolist(),
            )
            if self.store is not None:
                yield self.store.batch(rows), shape
            else:
                yield collate([self.windows[i] for i in rows]).to(self.device), shape


def _optimizer(model: FoundationModel, train: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices and embeddings only, as nanoGPT. The fused kernel
    (one pass over all parameters; on a 54k-item table about 15× faster than the per-tensor
    loop on the CPU) where the device has one."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": train.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = all(p.device.type in FUSED_ADAM_DEVICES for p in params)
    return torch.optim.AdamW(groups, lr=train.lr, fused=fused or None)


def train_fm(
    sequences: Sequence[tuple[History, np.ndarray | None]],
    catalog: ItemCatalog,
    cfg: FMConfig,
    train: TrainConfig | None = None,
    *,
    contexts: Sequence[EventContext | None] | None = None,
    model: FoundationModel | None = None,
    validate: Callable[[FoundationModel], float] | None = None,
    distill: Distillation | None = None,
) -> TrainResult:
    """Train a foundation model (a new one for ``catalog``, or ``model`` to continue).

    Args:
        sequences: per user, the History and its (n,) per-event sample weights (None for 1).
        catalog: the items; ``cfg`` must be sized for it (``FMConfig.with_catalog``).
        contexts: optional per-user EventContext (device, surface, local hour of each event).
        validate: optional score of the model after each epoch, higher is better; the best
            epoch's weights are returned (see the module docstring).
        distill: optional teachers whose next-item softmax the model also learns
            (``fm_core.model.Distillation``); they move to the training device.
    """
    train = train or TrainConfig()
    env = dist_env()
    device = select_device(env.local_rank)
    owns_group = env.distributed and not dist.is_initialized()
    if device.type == "cuda":
        # NCCL's collectives and barrier run on the current device: make it this rank's GPU
        torch.cuda.set_device(device)
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
            model.set_proposal(
                np.bincount(targets, minlength=cfg.n_items), power=train.proposal_power
            )
    model.to(device)
    if distill is not None:
        distill.check(model.cfg)
        distill.to(device)
    average = (
        WeightAverage(model, train.ema_decay, warmup=train.ema_warmup)
        if train.ema_decay > 0
        else None
    )
    net: torch.nn.Module = model
    if env.distributed:
        ids = [device.index] if device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=ids)
    if train.compile:
        if device.type == "cuda":
            for block in model.blocks:
                block.compile(dynamic=True)
        else:
            logger.info("compile is for CUDA; the CPU trains uncompiled")
    torch.manual_seed(train.seed + env.rank)
    resident = train.resident_data
    loader = _Batcher(
        windows, _batches(windows, train, env), device, resident=resident,
        max_shift=cfg.n_future,
    )  # fmt: skip
    fixed_sums = (
        _mean_weight_sums(model, windows, train).to(device) if train.length_buckets else None
    )
    optimizer = _optimizer(model, train)
    total_steps = train.epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps=total_steps, train=train)
    )
    if env.is_main:
        logger.info(
            "training FM: %d windows, %d items, world size %d, device %s, windows %s",
            len(windows), cfg.n_items, env.world_size, device,
            "resident on the device" if resident else "collated per batch",
        )  # fmt: skip
    metrics: list[EpochMetrics] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    try:
        for epoch in range(train.epochs):
            m = _run_epoch(
                net, loader, optimizer, scheduler, epoch, device, train, env, fixed_sums, average,
                distill,
            )  # fmt: skip
            scored = model if average is None else average.module
            if validate is not None:
                m = EpochMetrics(**(vars(m) | {"valid": _validation_score(scored, validate, env)}))
                if best is None or m.valid > best[0]:
                    best = (m.valid, epoch, copy.deepcopy(scored.state_dict()))
            metrics.append(m)
            if env.is_main:
                logger.info(
                    "epoch %d/%d: loss %.4f top1 %.3f targets %d windows/s %.1f%s",
                    m.epoch + 1, train.epochs, m.loss, m.top1, m.n_targets, m.windows_per_s,
                    "" if validate is None else f" valid {m.valid:.4f}",
                )  # fmt: skip
                if train.checkpoint_path:
                    save_checkpoint(
                        train.checkpoint_path, model, meta={"epoch": epoch, "loss": m.loss}
                    )
            stalled = best is not None and epoch - best[1] >= (train.patience or train.epochs)
            if stalled:
                break
        if owns_group:
            # Every rank done (rank 0 writes the last checkpoint after the others' last
            # collective) before any tears gloo down: a rank that destroyed the group and exited
            # while another still worked was seen to abort in a clean-clone test run.
            dist.barrier()
    finally:
        if owns_group:
            dist.destroy_process_group()
    if best is not None:
        model.load_state_dict(best[2])
    elif average is not None:
        model.load_state_dict(average.module.state_dict())
    model.eval()
    return TrainResult(model=model, metrics=metrics, best_epoch=None if best is None else best[1])


def _mean_weight_sums(
    model: FoundationModel, windows: Sequence[SequenceTokens], train: TrainConfig
) -> torch.Tensor:
    """(n_objectives,) each objective's Σw over all windows divided by the number of batches
    of one epoch in one process: the constant normalizer of bucketed batches."""
    size = train.batch_size
    chunks = (collate(list(windows[i : i + size])) for i in range(0, len(windows), size))
    total = sum(model.target_weight_sums(chunk) for chunk in chunks)
    return torch.as_tensor(total, dtype=torch.float64) / math.ceil(len(windows) / size)


def _validation_score(
    model: FoundationModel, validate: Callable[[FoundationModel], float], env: DistEnv
) -> float:
    """The callback's score on rank 0, broadcast so that every rank keeps the same epoch. The
    model is scored in eval mode (no dropout), as it will serve, and returned to training."""
    with evaluating(model):
        score = torch.tensor([validate(model) if env.is_main else 0.0], dtype=torch.float64)
    if env.distributed:
        device = next(model.parameters()).device
        shared = score.to(device)
        dist.broadcast(shared, src=0)
        score = shared.cpu()
    return float(score[0])


def _run_epoch(
    net: torch.nn.Module,
    loader: _Batcher,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    epoch: int,
    device: torch.device,
    train: TrainConfig,
    env: DistEnv,
    fixed_sums: torch.Tensor | None = None,
    average: WeightAverage | None = None,
    distill: Distillation | None = None,
) -> EpochMetrics:
    """One pass over this rank's windows; the metrics are summed over ranks. ``fixed_sums``
    (n_objectives,) replace the batches' own weight sums as the normalizers; ``average`` is
    updated after every optimizer step; ``distill`` holds the teachers, if any.

    The step never waits for the device: the losses and top-1 hits stay on the device and are
    read once at the end of the epoch (and every ``log_every`` steps for the progress bar);
    the batch's target counts and FLOPs come from the host (``_Batcher``).

    The epoch's loss is the mean over steps of the global batch's loss: with the global
    normalizers the global loss is the sum of the ranks' losses divided by the world size."""
    loader.set_epoch(epoch)
    # Two draws from the global generator per epoch, as a DataLoader's iterator makes (its
    # workers' base seed): a seed gives the same dropout and negatives as trainers that batched
    # through one.
    torch.empty(2, dtype=torch.int64).random_()
    model = unwrap(net)
    net.train()
    sampled = model.cfg.n_sampled > 0
    return_logits = train.train_top1 and not sampled
    losses: list[torch.Tensor] = []
    hits = torch.zeros((), dtype=torch.float64, device=device)
    # steps / world size, targets, scored targets, windows, FLOPs
    counts = np.zeros(5, dtype=np.float64)
    start = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch}", disable=not (env.is_main and train.progress))
    for batch, shape in bar:
        n = shape.targets[0]
        if n == 0:
            continue
        if fixed_sums is not None:
            weight_sums = fixed_sums
        else:
            weight_sums = model.target_weight_sums(batch)  # (n_objectives,)
            if env.distributed:
                dist.all_reduce(weight_sums)
                weight_sums /= env.world_size
        with autocast_context(device):
            logits, loss = net(
                batch, weight_sums=weight_sums, return_logits=return_logits, has_targets=True,
                distill=distill,
            )  # fmt: skip
        assert loss is not None  # the batch has targets
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), train.grad_clip)
        optimizer.step()
        scheduler.step()
        if average is not None:
            average.update(model)
        losses.append(loss.detach())
        if logits is not None:
            valid = batch.target >= 0
            hits += ((logits.detach().argmax(dim=-1) == batch.target) & valid).sum()
        step = replace(shape, score_all_tokens=return_logits)
        scored = n if logits is not None else 0
        flops = training_flops(model.cfg, step) + teacher_flops(distill, model.cfg, step)
        counts += (1.0 / env.world_size, n, scored, shape.batch, flops)
        if len(losses) % max(train.log_every, 1) == 0 and not bar.disable:
            bar.set_postfix(loss=f"{float(losses[-1]):.3f}")
    step_losses = (
        torch.stack(losses).double()
        if losses
        else torch.zeros(0, dtype=torch.float64, device=device)
    )
    totals = torch.cat(
        [step_losses.sum()[None] / env.world_size, hits[None].to(step_losses.dtype)]
    ).to(device, torch.float64)
    if env.distributed:
        dist.all_reduce(totals)  # NCCL reduces device tensors only
        summed = torch.as_tensor(counts, device=device)
        dist.all_reduce(summed)
        counts = summed.cpu().numpy()
    loss_sum, hit_sum = totals.tolist()  # the epoch's one wait for the device
    elapsed = max(time.perf_counter() - start, 1e-9)
    steps, n_targets, scored, n_windows, flops = counts.tolist()
    return EpochMetrics(
        epoch=epoch,
        loss=loss_sum / max(steps, 1e-9),
        top1=hit_sum / scored if scored else float("nan"),
        n_targets=int(n_targets),
        windows_per_s=n_windows / elapsed,
        steps=round(steps * env.world_size),
        seconds=elapsed,
        flops=flops,
        step_losses=tuple(step_losses.tolist()),
    )
