"""Evaluation of the foundation model's next-item predictions.

The metrics are pure functions over tensors; ``evaluate_next_item`` runs the model in eval mode
over token windows and applies them at every position with a target (teacher forcing).
``ranking_metrics`` is the full-catalog protocol of the benchmarks: per target, HR@k and NDCG@k
with excluded items (those the user has seen) removed from the ranking and ties broken in a
uniformly random order, in expectation, so that a model with coarse scores (popularity counts,
unscored items at -inf) gains nothing from ties.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from fm_core.model import FoundationModel
from fm_core.objectives import engagement_weight, full_softmax_loss, top1_hits, unreleased
from fm_core.tokenize import SequenceTokens, collate


def hit_rate_and_ndcg(scores: torch.Tensor, target: torch.Tensor, k: int) -> tuple[float, float]:
    """HR@k and NDCG@k of (M, N) scores against (M,) target rows (one relevant item each)."""
    if target.numel() == 0:
        return math.nan, math.nan
    target_score = scores.gather(1, target[:, None])  # (M, 1)
    rank = (scores > target_score).sum(dim=1)  # (M,) 0 = best; ties count in the target's favour
    hit = rank < k
    ndcg = torch.where(
        hit, 1.0 / torch.log2(rank.double() + 2.0), torch.zeros((), dtype=torch.float64)
    )
    return float(hit.double().mean()), float(ndcg.mean())


def ranking_metrics(
    scores: torch.Tensor,
    target: torch.Tensor,
    k: int,
    *,
    excluded: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-target HR@k and NDCG@k (two (M,) float64 tensors) of (M, N) scores.

    Args:
        scores: (M, N) scores of all N items; -inf for items that cannot be recommended.
        target: (M,) the relevant item's column, one per row.
        excluded: (M, N) True for items removed from the ranking (the user's seen items); the
            target itself is never removed.

    With g eligible items scored above the target and t eligible items (the target included)
    tied with it, the target's rank is g + J with J uniform on {0..t-1}, so
    HR = |{j < t : g + j < k}| / t and NDCG = (1/t) Σ_{j < t, g + j < k} 1 / log2(g + j + 2).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    if scores.ndim != 2 or target.shape != (scores.shape[0],):
        raise ValueError(f"scores must be (M, N) and target (M,); got {tuple(scores.shape)} "
                         f"and {tuple(target.shape)}")  # fmt: skip
    rows = torch.arange(target.numel(), device=scores.device)
    target_score = scores[rows, target][:, None]  # (M, 1)
    # A NaN target score is never a hit; NaN scores elsewhere never outrank the target.
    target_score = torch.nan_to_num(target_score, nan=float("-inf"), posinf=float("inf"))
    above = scores > target_score  # (M, N)
    level = scores == target_score  # (M, N)
    if excluded is not None:
        keep = ~excluded
        keep[rows, target] = True
        above &= keep
        level &= keep
    greater = above.sum(dim=1).double()  # (M,)
    tied = level.sum(dim=1).double().clamp(min=1.0)  # (M,) the target included
    hr = torch.zeros_like(greater)
    ndcg = torch.zeros_like(greater)
    for j in range(k):
        counted = (j < tied) & (greater + j < k)
        hr += counted.double()
        ndcg += counted.double() / torch.log2(greater + j + 2.0)
    return hr / tied, ndcg / tied


@torch.no_grad()
def evaluate_next_item(
    model: FoundationModel, windows: Sequence[SequenceTokens], *, batch_size: int = 64, k: int = 10
) -> dict[str, float]:
    """Weighted loss, top-1 accuracy, HR@k and NDCG@k of the next-item head over ``windows``."""
    model.eval()
    device = next(model.parameters()).device
    table = model.item_embeddings()
    scores, targets, weights, times = [], [], [], []
    for start in range(0, len(windows), batch_size):
        batch = collate(windows[start : start + batch_size]).to(device)
        logits = model.item_logits(model.encode(batch, table), table, time=batch.time)  # (B, T, N)
        valid = batch.target >= 0
        scores.append(logits[valid].float())
        targets.append(batch.target[valid])
        weights.append(engagement_weight(batch.target_kind[valid], batch.target_minutes[valid]))
        times.append(batch.time[valid])
    score, target = torch.cat(scores), torch.cat(targets)
    if model.cfg.mask_unreleased:
        blocked = unreleased(model.items.release_time, torch.cat(times))  # (M, N)
        blocked[torch.arange(target.numel(), device=target.device), target] = False
        score = score.masked_fill(blocked, float("-inf"))
    hits, count = top1_hits(score, target)
    hr, ndcg = hit_rate_and_ndcg(score, target, k)
    loss = full_softmax_loss(score, target, torch.cat(weights))
    return {"loss": float(loss), "top1": hits / max(count, 1), f"hr@{k}": hr, f"ndcg@{k}": ndcg,
            "n_targets": float(count)}  # fmt: skip
