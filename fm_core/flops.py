"""Model FLOPs of the foundation model and the device peaks they are measured against.

``forward_flops`` counts the matrix-multiply FLOPs (2·m·n·k per (m, k)·(k, n) product) of one
training forward pass, from the model's shapes and the batch's actual sizes; elementwise work,
layer norms, softmax and gathers are left out, as in the usual model-FLOPs accounting (Kaplan
et al. 2020, PaLM's MFU). ``training_flops`` is 3 × that: the backward pass multiplies each
weight matrix twice (the gradient of its input and of itself).

With B windows padded to T tokens (n = B·T tokens), d = d_model, r = mlp_ratio, L layers,
M valid targets, N catalog items, S sampled negatives, G genres, F = n_future:

    per layer        qkv 6·n·d² + out 2·n·d² + MLP 4·r·n·d²
                     + attention 4·B·T²·d (Q·Kᵀ and A·V over all T² pairs; causal kernels
                       skip about half, which the count does not credit)
    input            2·n·N_DENSE·d (the dense-feature projection)
    item table       with metadata: 2·N·G·d (genres) + 2·N·d (the age gate)
    next-item head   sampled: 2·n·S·d (the shared negatives against every query position,
                     padding included at weight 0, which spares the host a wait for the
                     number of valid targets; the positives are a dot product per position,
                     elementwise); full softmax: 2·M·N·d, or 2·n·N·d when the forward scores
                     every token (``score_all_tokens``)
    future heads     for k = 1..F-1, over n_k = B·(T-k) positions: 4·n_k·d² (the head's MLP,
                     with ``future_heads``) and the head's output as the next-item head's
                     (sampled: 2·n_k·S·d; full softmax: 2·M_k·N·d)
    genre head       2·M·d·G
    teachers         with distillation (``fm_core.model.Distillation``), each teacher's
                     forward pass without gradients (``teacher_flops``): its trunk and its
                     next-item head over the same candidates, no future or genre heads

``peak_flops`` returns the dense bf16 tensor-core peak of a known accelerator by its name, or
None (the CPU, or a card without a published figure here): a fraction of peak is then not
reported rather than guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from fm_core.model import Distillation, FMConfig
from fm_core.tokenize import N_DENSE

__all__ = ["StepShape", "forward_flops", "peak_flops", "teacher_flops", "training_flops"]

# Dense (no structured sparsity) BF16 tensor-core peaks, FLOP/s, from NVIDIA's data sheets:
# H100 SXM5 and H200 SXM 989.4 TFLOPS (the sheets list 1,979 "with sparsity", twice the dense
# figure; https://www.nvidia.com/en-us/data-center/h100/ and /h200/), H100 PCIe 756 TFLOPS
# (the H100 data sheet, PCIe column), A100 312 TFLOPS (A100 data sheet, SXM and PCIe alike;
# https://www.nvidia.com/en-us/data-center/a100/). Matched by substring of
# ``torch.cuda.get_device_name()``, most specific first.
BF16_DENSE_PEAKS: tuple[tuple[str, float], ...] = (
    ("H200", 989.4e12),
    ("H100 PCIe", 756.0e12),
    ("H100", 989.4e12),
    ("A100", 312.0e12),
)


@dataclass(frozen=True)
class StepShape:
    """The sizes of one training batch that its FLOPs depend on.

    ``targets`` holds the valid targets per objective: the next item first, then the items
    k = 1..n_future-1 steps ahead (shorter windows have fewer of them)."""

    batch: int  # B windows
    tokens: int  # T, the padded length
    targets: Sequence[int]
    score_all_tokens: bool = False  # the full-softmax forward scored all B·T tokens (top-1)


def forward_flops(cfg: FMConfig, step: StepShape) -> int:
    """Matrix-multiply FLOPs of one training forward pass (see the module docstring)."""
    B, T, d, N = step.batch, step.tokens, cfg.d_model, cfg.n_items
    n = B * T
    per_layer = 6 * n * d * d + 2 * n * d * d + 4 * cfg.mlp_ratio * n * d * d + 4 * B * T * T * d
    total = cfg.n_layers * per_layer + 2 * n * N_DENSE * d
    if cfg.item_metadata:
        total += 2 * N * cfg.n_genres * d + 2 * N * d
    sampled = cfg.n_sampled > 0
    m0 = step.targets[0] if step.targets else 0

    def output(positions: int, targets: int, *, all_tokens: bool = False) -> int:
        if sampled:  # every query position, at weight 0 where it has no target
            return 2 * positions * cfg.n_sampled * d
        return 2 * (positions if all_tokens else targets) * N * d

    total += output(n, m0, all_tokens=step.score_all_tokens)
    for k in range(1, min(cfg.n_future, T)):
        m_k = step.targets[k] if k < len(step.targets) else 0
        if cfg.future_heads:
            total += 4 * B * (T - k) * d * d
        total += output(B * (T - k), m_k)
    if cfg.genre_weight > 0:
        total += 2 * m0 * d * cfg.n_genres
    return total


def training_flops(cfg: FMConfig, step: StepShape) -> int:
    """FLOPs of one optimizer step: forward and backward, 3 × ``forward_flops``."""
    return 3 * forward_flops(cfg, step)


def teacher_flops(distill: Distillation | None, cfg: FMConfig, step: StepShape) -> int:
    """FLOPs of the teachers' forward passes in one step of a student of ``cfg`` (0 without
    teachers): each teacher's trunk and its next-item head over the student's candidates (its
    sampled negatives, or the catalog for the valid targets), which is all a teacher computes."""
    if distill is None:
        return 0
    scored = replace(step, score_all_tokens=False)
    return sum(
        forward_flops(replace(t.cfg, n_future=1, genre_weight=0.0, n_sampled=cfg.n_sampled), scored)
        for t in distill.teachers
    )


def peak_flops(device_name: str | None) -> float | None:
    """Dense bf16 peak FLOP/s of the named accelerator, or None where none is published here
    (the CPU included)."""
    if not device_name:
        return None
    for key, peak in BF16_DENSE_PEAKS:
        if key.casefold() in device_name.casefold():
            return peak
    return None
