"""Training objectives of the foundation model, as pure functions over tensors.

**Per-target weight.** w = engagement(kind, minutes) × sample_weight, where

    engagement = KIND_WEIGHT[kind] + [kind = play] · log1p(minutes)

so a 2-hour watch (5.8) counts about twice a 5-minute trailer play (2.8), a click 0.5, and a
thumb-down 0: it remains an input but is not a positive target. ``sample_weight`` comes from the
training table (inverse propensity for recommendation plays, a tuned weight for search plays).
Every objective is the weighted mean Σ w·ℓ / Σ w over its targets, i.e. self-normalized within a
batch, so the scale of the sample weights does not change the learning rate. Under DDP the
denominator is the *global* batch's Σ w (all-reduced by the trainer) divided by the world size,
so that the ranks' averaged gradients are exactly the one-process gradient, however unequal the
ranks' weight sums.

**Next item, full softmax.** ℓ = −log softmax(h·Eᵀ + b)[target] over the whole catalog, with
items not yet released at the step's time masked out (never the target itself).

**Sampled softmax with the log-Q correction** (Bengio & Senécal 2008; Yi et al., RecSys 2019).
S negatives are drawn with replacement from a proposal q over items, shared by the batch, and
every candidate's logit is corrected by −log q_j so that the sampled softmax is an unbiased-in-
the-limit estimate of the full one (the common −log S cancels). Negatives equal to the target
("accidental hits") and unreleased ones are masked.

**Seen items left out of the negatives** (``seen``). In logs where a member takes an item once
(the benchmarks' evaluation removes seen items too), an item of the member's own window is not
a negative: it is masked for every query of that window, like an accidental hit. The whole
window's items are masked, later ones included: those are the member's positives too. The match
is a sort of the S negatives and a binary search of the window's items, so it costs
O(S log S + W) per batch for W window items, not O(S·W).

**Distillation** (``teacher``). Each next-item row may also learn the softmax of teacher
models over the same candidates (Hinton et al. 2015; Furlanello et al. 2018, "born-again"
networks of the teacher's own size): its loss is (1 − α) × the cross-entropy of its target plus
α × the cross-entropy against the teachers' normalized geometric mean (``distillation_loss``).
Under sampled softmax the teachers score the batch's own negatives with the same log-Q
correction, so a step costs K teacher forward passes and no full-catalog product.

**Genres.** Multi-label BCE between the genre head and the target item's multi-hot genres, mean
over genres.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F  # noqa: N812 - the PyTorch convention

from fm_core.tokenize import KIND_VOCAB

KIND_WEIGHT: dict[str, float] = {
    "<none>": 0.0, "thumb_down": 0.0, "click": 0.5, "thumb_up": 1.0, "list_add": 1.0, "play": 1.0,
}  # fmt: skip
_PLAY = KIND_VOCAB["play"]


def engagement_weight(kind: torch.Tensor, minutes: torch.Tensor) -> torch.Tensor:
    """Engagement weight of each target; same shape as ``kind``."""
    base = torch.zeros(len(KIND_VOCAB), device=kind.device)
    for name, index in KIND_VOCAB.items():
        base[index] = KIND_WEIGHT[name]
    watched = torch.log1p(minutes.float().clamp(min=0.0))
    return base[kind] + (kind == _PLAY).float() * watched


def weighted_mean(
    losses: torch.Tensor, weights: torch.Tensor, total: torch.Tensor | None = None
) -> torch.Tensor:
    """Σ w·ℓ / Σ w, and 0 (with a gradient path) when every weight is 0. ``total`` replaces the
    denominator Σ w (a data-parallel trainer passes the global batch's Σ w / world size)."""
    denominator = weights.sum() if total is None else total.to(weights.dtype)
    return (losses * weights).sum() / denominator.clamp(min=1e-8)


def unreleased(release_time: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
    """(M, N) True where item n is released after step m's time."""
    return release_time[None, :] > time[:, None]


def full_softmax_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    blocked: torch.Tensor | None = None,
    *,
    total: torch.Tensor | None = None,
    teacher: torch.Tensor | None = None,
    teacher_weight: float = 0.0,
) -> torch.Tensor:
    """Weighted next-item cross-entropy over the catalog.

    Args:
        logits: (M, N) scores of M targets against all N items.
        target: (M,) item rows. weight: (M,) per-target weights.
        blocked: (M, N) items that cannot be the answer (unreleased); the target never is.
        total: the normalizer instead of Σ weight (see ``weighted_mean``).
        teacher: optional (K, M, N) logits of K teachers; each row's loss is then
            (1 − teacher_weight) × its cross-entropy + teacher_weight × ``distillation_loss``.
    """
    if blocked is not None:
        blocked = blocked.clone()
        blocked[torch.arange(target.numel(), device=target.device), target] = False
        logits = logits.masked_fill(blocked, float("-inf"))
    losses = F.cross_entropy(logits.float(), target, reduction="none")  # (M,)
    if teacher is not None:
        losses = taught_losses(losses, logits, teacher, teacher_weight)
    return weighted_mean(losses, weight, total)


def sampled_softmax_loss(
    h: torch.Tensor,
    table: torch.Tensor,
    bias: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    *,
    log_q: torch.Tensor,
    n_sampled: int,
    release_time: torch.Tensor | None = None,
    time: torch.Tensor | None = None,
    total: torch.Tensor | None = None,
    bonus: Callable[[torch.Tensor], torch.Tensor] | None = None,
    seen: torch.Tensor | None = None,
    teacher: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    teacher_weight: float = 0.0,
) -> torch.Tensor:
    """Weighted sampled-softmax cross-entropy with the log-Q correction.

    Args:
        h: (M, D) outputs at the targets' steps. table: (N, D) items. bias: (N,).
        target: (M,) item rows. weight: (M,).
        log_q: (N,) log proposal probabilities (normalized). n_sampled: S negatives.
        release_time, time: (N,) and (M,) to mask negatives not yet released at the step.
        total: the normalizer instead of Σ weight (see ``weighted_mean``).
        bonus: optional score bonus of item rows for the queries (freshness): rows (M,), one
            per query, give (M,); rows (1, S) give (M, S).
        seen: optional (G, L) item rows of G windows (negative: none), whose queries are the
            M = G·(M / G) rows of ``h`` in order; a window's items are not its negatives.
        teacher: optional (target (M,), negatives (S,)) → (K, M, 1 + S) logits of K teachers
            for the same candidates (``candidate_logits``); each row's loss is then
            (1 − teacher_weight) × its cross-entropy + teacher_weight × ``distillation_loss``.
    """
    negatives = torch.multinomial(log_q.exp(), n_sampled, replacement=True)  # (S,)
    pos, neg = candidate_logits(h, table, bias, target, negatives, log_q=log_q, bonus=bonus)
    blocked = negatives[None, :] == target[:, None]  # (M, S) accidental hits
    if seen is not None:
        known = negatives_seen(seen, negatives)  # (G, S)
        groups = known.shape[0]
        blocked = (blocked.view(groups, -1, n_sampled) | known[:, None, :]).view(-1, n_sampled)
    if release_time is not None and time is not None:
        blocked = blocked | unreleased(release_time[negatives], time)
    neg = neg.float().masked_fill_(blocked, float("-inf"))
    # −log softmax of the positive (column 0) over (positive, negatives): the fused
    # cross-entropy's backward is one softmax pass, cheaper than logsumexp's autograd chain.
    logits = torch.cat([pos.float()[:, None], neg], dim=1)  # (M, 1 + S)
    first = torch.zeros(target.numel(), dtype=torch.long, device=target.device)
    losses = F.cross_entropy(logits, first, reduction="none")  # (M,)
    if teacher is not None:
        losses = taught_losses(losses, logits, teacher(target, negatives), teacher_weight)
    return weighted_mean(losses, weight, total)


def candidate_logits(
    h: torch.Tensor,
    table: torch.Tensor,
    bias: torch.Tensor,
    target: torch.Tensor,
    negatives: torch.Tensor,
    *,
    log_q: torch.Tensor,
    bonus: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-Q corrected scores of queries h (M, D) against their own targets (M,) and the
    shared negatives (S,): (pos (M,), neg (M, S)). ``bonus`` as in ``sampled_softmax_loss``."""
    rows = table[torch.cat([target, negatives])]  # one gather: one (N, D) gradient scatter
    pos = (h * rows[: target.numel()]).sum(-1) + bias[target] - log_q[target]  # (M,)
    neg = torch.addmm((bias - log_q)[negatives][None, :], h, rows[target.numel() :].T)  # (M, S)
    if bonus is not None:
        pos = pos + bonus(target)  # (M,): each query's own target
        neg = neg + bonus(negatives[None, :])  # (M, S)
    return pos, neg


def taught_losses(
    losses: torch.Tensor, student: torch.Tensor, teachers: torch.Tensor, weight: float
) -> torch.Tensor:
    """(M,) each row's loss with its teachers' share: (1 − weight) × ``losses`` (the targets'
    cross-entropies) + weight × ``distillation_loss(student, teachers)``."""
    return (1.0 - weight) * losses + weight * distillation_loss(student, teachers)


def distillation_loss(student: torch.Tensor, teachers: torch.Tensor) -> torch.Tensor:
    """(M,) cross-entropy of the student's softmax against the teachers' ensemble.

    Args:
        student: (M, C) the student's logits of C candidates per row, −inf where a candidate
            cannot be the answer (blocked).
        teachers: (K, M, C) K teachers' logits of the same candidates, corrected alike.

    The target is the teachers' normalized geometric mean, softmax(mean_k log softmax(t_k)):
    the distribution whose ranking is the ensemble's mean log-probability (as
    ``bench.fm_scoring.mean_log_probability`` ranks). Blocked candidates get no mass. Over
    sampled candidates with the log-Q correction both sides are the self-normalized estimates
    of the full softmaxes, so this estimates the cross-entropy over the catalog."""
    blocked = torch.isneginf(student)
    mean = torch.log_softmax(teachers.float().masked_fill(blocked, float("-inf")), dim=-1)
    target = torch.softmax(mean.mean(dim=0), dim=-1)  # (M, C), 0 where blocked
    log_student = torch.log_softmax(student.float(), dim=-1).masked_fill(blocked, 0.0)
    return -(target * log_student).sum(dim=-1)


def negatives_seen(seen: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """(G, S) True where negative s is one of window g's items ``seen`` (G, L), rows < 0 being
    none; by sorting the negatives and searching for the items, with no wait for the device."""
    S = negatives.numel()
    order = negatives.argsort()
    ordered = negatives[order]
    valid = (seen >= 0).int()  # (G, L)
    rows = seen.clamp(min=0)
    left = torch.searchsorted(ordered, rows)  # first negative equal to the item, if any
    right = torch.searchsorted(ordered, rows, right=True)  # one past the last
    # +1 where an item's run of equal negatives starts, −1 past its end: the running sum is > 0
    # exactly over the runs of the window's items
    marks = torch.zeros(seen.shape[0], S + 1, dtype=torch.int32, device=seen.device)
    marks.scatter_add_(1, left, valid).scatter_add_(1, right, -valid)
    covered = marks[:, :S].cumsum(dim=1) > 0  # (G, S) in sorted order
    return torch.zeros_like(covered).index_copy_(1, order, covered)


def genre_loss(
    logits: torch.Tensor,
    genres: torch.Tensor,
    weight: torch.Tensor,
    *,
    total: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted multi-label BCE; logits and genres (M, G), weight (M,); ``total`` as in
    ``weighted_mean``."""
    losses = F.binary_cross_entropy_with_logits(logits.float(), genres, reduction="none")
    return weighted_mean(losses.mean(dim=1), weight, total)


def top1_hits(logits: torch.Tensor, target: torch.Tensor) -> tuple[int, int]:
    """(correct, count) of the argmax against targets; logits (M, N), target (M,)."""
    if target.numel() == 0:
        return 0, 0
    return int((logits.argmax(dim=-1) == target).sum()), int(target.numel())
