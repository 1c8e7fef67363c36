"""``loopbreak bench fm --refit``: the chosen models retrained on every event before the test
target, as a service retrains on all it has before it serves.

The leave-one-out benchmark trains on each user's events up to the validation target and picks
its settings on that target (EASE's λ, the FM's epoch). A deployment then retrains on all the
data it has, which here is each user's events up to the test target: the validation target
becomes the newest training event. ``refit`` does that with the settings already chosen and no
second look at any target: EASE at its chosen λ, the FM from the same seed for the chosen
number of epochs (best epoch + 1, its moving average when the preset keeps one), and the
popularity counts. The test target itself is never trained on.

This is a different protocol from the published anchors (SASRec+ trains on the events before
the validation target only; ``../shared/data/README.md``), so its rows are reported beside the
same-protocol rows, never in their place.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.fm_data import LeaveOneOut, SequenceData
from bench.fm_scoring import ease_scores, eval_chunk, evaluate, fm_scores, popularity_scores

if TYPE_CHECKING:
    from fm_core.model import FMConfig
    from fm_core.train_fm import TrainConfig

__all__ = ["refit"]


def refit(
    split: LeaveOneOut,
    data: SequenceData,
    *,
    cfg: FMConfig,
    train: TrainConfig,
    ease_lambda: float,
    ease_items: int,
    seed: int,
    device: Any,
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Test metrics of ``popularity_refit``, ``ease_refit`` and ``fm_refit``, and what ran.
    ``cfg`` and ``train`` are the FM's shape and training as chosen (``train.epochs``: the best
    epoch's count, no early stopping)."""
    import torch

    from bench.ease import EASE, ease_device
    from bench.fm_queries import QueryTokens
    from fm_core.train_fm import train_fm

    start = time.perf_counter()
    test = split.test
    release = data.catalog.release_time
    chunk = eval_chunk(device)
    histories = [request.history for request in test.requests]  # every event before the target
    rows = [data.catalog.rows(h.item_ids) for h in histories]
    counts = np.bincount(np.concatenate(rows), minlength=data.catalog.n_items)
    models = {"popularity_refit": evaluate(popularity_scores(counts), test, release)}

    ease = EASE(n_items=data.catalog.n_items, max_items=ease_items, lam=ease_lambda,
                device=ease_device(device)).fit(rows)  # fmt: skip
    models["ease_refit"] = evaluate(ease_scores(ease), test, release, chunk=chunk)
    del ease

    torch.manual_seed(seed)
    trained = train_fm(
        [(h, None) for h in histories], data.catalog, cfg, train,
        contexts=test.contexts if data.contexts is not None else None,
    )  # fmt: skip
    tokens = QueryTokens(test, data.catalog, max_len=cfg.max_len, config=cfg.tokenizer(),
                         device=device)  # fmt: skip
    scores = fm_scores(trained.model, data, batch_size=chunk, tokens=tokens)
    models["fm_refit"] = evaluate(scores, test, release, chunk=chunk)
    info = {
        "epochs": train.epochs,
        "ease_lambda": ease_lambda,
        "train_events": int(sum(len(h) for h in histories)),
        "seconds": time.perf_counter() - start,
    }
    return models, info
