"""Batched candidate scoring: many requests in one forward pass score as each one alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fm_core.candidate_scores import candidate_scores
from fm_core.model import FoundationModel
from fm_core.tokenize import tokenize_requests
from fm_core.types import ScoreRequest
from tests.fm_core.test_fm_model import DAY, T0, history_of, make_catalog, tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_batched_scores_equal_one_request_at_a_time() -> None:
    catalog = make_catalog(n_items=40)
    cfg = tiny_config(catalog, max_len=12, freshness_buckets=0)
    torch.manual_seed(0)
    model = FoundationModel.from_catalog(cfg, catalog, age_reference=T0).eval()
    rng = np.random.default_rng(1)
    requests = [
        ScoreRequest(
            user_id=f"u{i}",
            history=history_of(rng.choice(catalog.item_ids, size=n)),
            time=T0 + DAY,
        )
        for i, n in enumerate([1, 3, 7, 20, 11, 2])  # one longer than the context
    ]
    candidates = torch.as_tensor(np.stack([rng.choice(40, 15, replace=False) for _ in requests]))
    table = model.item_embeddings()
    batch = tokenize_requests(requests, catalog, max_len=cfg.max_len, config=cfg.tokenizer())
    together = candidate_scores(model, batch, candidates, table=table)
    assert together.shape == (len(requests), 15)
    for i, request in enumerate(requests):
        alone = tokenize_requests([request], catalog, max_len=cfg.max_len, config=cfg.tokenizer())
        single = candidate_scores(model, alone, candidates[i : i + 1])[0]
        torch.testing.assert_close(together[i], single, rtol=0, atol=1e-5)
        # the same as the model's full next-item scores at those candidates
        full = model.next_item_scores(alone)[0, candidates[i]]
        torch.testing.assert_close(single, full, rtol=0, atol=1e-5)


def test_candidates_must_have_one_row_per_request() -> None:
    catalog = make_catalog(n_items=10)
    model = FoundationModel.from_catalog(tiny_config(catalog), catalog, age_reference=T0).eval()
    request = ScoreRequest(user_id="u", history=history_of(catalog.item_ids[:3]), time=T0 + DAY)
    batch = tokenize_requests([request], catalog, max_len=16)
    with pytest.raises(ValueError, match=r"candidates must be \(R, C\) with R = 1"):
        candidate_scores(model, batch, torch.zeros(2, 3, dtype=torch.long))
