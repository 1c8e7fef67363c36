"""The FM's scores of each request's candidates, for many requests in one forward pass.

``candidate_scores`` encodes R requests' token rows in one pass of the transformer (the user
state is the hidden state at each row's request token) and scores each request's C candidates
against the cached item table in one batched product:

    score[r, c] = h_r · E[cand[r, c]] + b[cand[r, c]]

Right padding keeps causal attention exact (a real token never sees padding), so a request's
scores do not depend on the other requests of its batch, up to float rounding. One request is
the same call with R = 1. The item table is the caller's to cache (``item_embeddings``) as a
service keeps it between model versions.
"""

from __future__ import annotations

import torch

from fm_core.model import FoundationModel
from fm_core.tokenize import TokenBatch

__all__ = ["candidate_scores"]


@torch.inference_mode()
def candidate_scores(
    model: FoundationModel,
    batch: TokenBatch,
    candidates: torch.Tensor,
    *,
    table: torch.Tensor | None = None,
) -> torch.Tensor:
    """(R, C) next-item logits of each row's C candidate catalog rows (R, C), on the device.

    ``batch`` holds the R requests' tokens (``tokenize_requests``) on the model's device;
    ``table`` is the (N, D) item table (default: computed here)."""
    if candidates.dim() != 2 or candidates.shape[0] != batch.prev_item.shape[0]:
        raise ValueError(
            f"candidates must be (R, C) with R = {batch.prev_item.shape[0]} requests; got "
            f"{tuple(candidates.shape)}"
        )
    table = model.item_embeddings() if table is None else table
    user = model.user_embeddings(batch, table)  # (R, D)
    items = table[candidates]  # (R, C, D)
    scores = torch.bmm(items, user[:, :, None].to(items.dtype))[..., 0]  # (R, C)
    return scores + model.item_bias[candidates]
