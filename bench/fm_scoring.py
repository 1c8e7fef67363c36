"""How ``loopbreak bench fm`` scores and ranks: each model's scores of a chunk of queries, and
HR@K and NDCG@K of them against the full catalog with the user's seen items removed
(``bench.fm`` step 4), shared by the benchmark, its refit rows and the warm-start benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.fm_data import Queries, SequenceData
from bench.fm_queries import QueryTokens

if TYPE_CHECKING:
    import torch

    from fm_core.model import FoundationModel

__all__ = [
    "EVAL_CHUNK_CPU", "EVAL_CHUNK_GPU", "K", "ScoreFn", "ease_scores", "eval_chunk", "evaluate",
    "fm_scores", "popularity_scores",
]  # fmt: skip

K = 10
EVAL_CHUNK_CPU = 512  # queries scored and ranked at once on the CPU
EVAL_CHUNK_GPU = 4096  # ... and on a GPU: (4096, N) scores of beauty's 54,542 items, 0.9 GB


def eval_chunk(device: torch.device | None) -> int:
    """Queries scored and ranked at once on ``device``."""
    return EVAL_CHUNK_GPU if getattr(device, "type", None) == "cuda" else EVAL_CHUNK_CPU


ScoreFn = Callable[[Queries], "torch.Tensor"]  # (Q, N) scores of a chunk of queries


def evaluate(
    score: ScoreFn, queries: Queries, release_time: np.ndarray, *, chunk: int = 512
) -> dict[str, float]:
    """Mean HR@K and NDCG@K of ``score`` over ``queries`` (see ``bench.fm``), ranked
    on the device the scores come from (the model's, for the FM), and their standard errors
    over the queries (``hr@K_se``, ``ndcg@K_se``: the sample standard deviation / √n, 0 for
    fewer than two queries)."""
    import torch

    from fm_core.fm_eval import ranking_metrics

    latest_release = float(np.max(release_time)) if len(release_time) else -math.inf
    hits, gains = [], []
    for start in range(0, len(queries), chunk):
        part = queries.subset(np.arange(start, min(start + chunk, len(queries))))
        scores = score(part).float().clone()  # (q, N)
        device = scores.device
        if latest_release > float(part.time.min()):  # some items are not yet released
            release = torch.as_tensor(release_time, dtype=torch.float64, device=device)
            times = torch.as_tensor(part.time, dtype=torch.float64, device=device)
            scores.masked_fill_(release[None, :] > times[:, None], float("-inf"))  # (q, N)
        # Seen items leave the ranking: a NaN score is never above nor tied with the target.
        rows = torch.as_tensor(np.repeat(np.arange(len(part)), [s.size for s in part.seen]))
        seen = torch.as_tensor(np.concatenate(part.seen))
        target = torch.as_tensor(part.target).to(device)
        every = torch.arange(len(part), device=device)
        target_scores = scores[every, target]
        scores[rows.to(device), seen.to(device)] = float("nan")
        scores[every, target] = target_scores  # the target is never removed
        hr, ndcg = ranking_metrics(scores, target, K)
        hits.append(hr)
        gains.append(ndcg)
    result = {}
    for name, values in ((f"hr@{K}", torch.cat(hits)), (f"ndcg@{K}", torch.cat(gains))):
        values = values.double()
        n = values.numel()
        result[name] = float(values.mean())
        result[f"{name}_se"] = float(values.std() / math.sqrt(n)) if n > 1 else 0.0
    return result


def mean_log_probability(members: Sequence[ScoreFn]) -> ScoreFn:
    """The ensemble's scores: each member's log-softmax over the catalog, averaged. Each
    member's logits are normalized first, so that a member with larger logits does not
    outvote the others."""
    import torch

    def score(part: Queries) -> torch.Tensor:
        return torch.stack([torch.log_softmax(f(part).float(), dim=-1) for f in members]).mean(0)

    return score


def popularity_scores(counts: np.ndarray) -> ScoreFn:
    import torch

    table = torch.as_tensor(counts, dtype=torch.float32)
    return lambda part: table[None, :].expand(len(part), -1)


def ease_scores(model: Any) -> ScoreFn:
    import torch

    return lambda part: torch.as_tensor(model.scores(part.seen))  # on EASE's device


def fm_scores(
    model: FoundationModel,
    data: SequenceData,
    *,
    batch_size: int = 256,
    tokens: QueryTokens | None = None,
) -> ScoreFn:
    """Next-item scores of the FM at each query's request token, on the model's device; the
    queries held in ``tokens`` are gathered there instead of tokenized again."""
    import torch

    from fm_core.tokenize import tokenize_requests

    device = next(model.parameters()).device

    def score(part: Queries) -> torch.Tensor:
        rows = None if tokens is None else tokens.rows(part)
        out = []
        for start in range(0, len(part), batch_size):
            stop = start + batch_size
            if rows is not None:
                batch = tokens.batch(rows[start:stop])  # type: ignore[union-attr]
            else:
                batch = tokenize_requests(
                    part.requests[start:stop], data.catalog, max_len=model.cfg.max_len,
                    contexts=part.contexts[start:stop], config=model.cfg.tokenizer(),
                ).to(device)  # fmt: skip
            out.append(model.next_item_scores(batch).float())
        return torch.cat(out)

    return score
