"""The FM benchmark's queries tokenized once and kept on the model's device.

Model selection scores the same validation queries after every epoch. ``QueryTokens``
tokenizes them once (each request's history and its request token, capped at the model's
context) into a ``fm_core.window_store.WindowStore`` on the device, so that each epoch's
validation is a gather and a forward per chunk, with no Python tokenization and no host copy.
A chunk of queries is found by the identity of its requests (``Queries.subset`` keeps the
same request objects), so the benchmark's ``evaluate`` can hand it any subset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from bench.fm_data import Queries
    from fm_core.tokenize import TokenBatch, TokenizerConfig
    from fm_core.types import ItemCatalog


class QueryTokens:
    """Tokens of ``queries`` on ``device``; ``batch(part)`` gathers those of a subset."""

    def __init__(
        self,
        queries: Queries,
        catalog: ItemCatalog,
        *,
        max_len: int,
        config: TokenizerConfig,
        device: torch.device,
    ) -> None:
        from fm_core.tokenize import rollup, tokens_of
        from fm_core.window_store import WindowStore

        sequences = []
        for request, context in zip(queries.requests, queries.contexts, strict=True):
            events = rollup(request.history, window_s=config.rollup_window_s, context=context)
            tokens = tokens_of(events, catalog, request=request, config=config)
            sequences.append(tokens.window(max(len(tokens) - max_len, 0), len(tokens)))
        self.store = WindowStore(sequences, device)
        # the Queries hold the requests, so their ids stay unique while this lives
        self._queries = queries
        self._row = {id(r): i for i, r in enumerate(queries.requests)}

    def rows(self, part: Queries) -> np.ndarray | None:
        """Rows of ``part``'s requests, or None when any of them is not held here."""
        rows = [self._row.get(id(r), -1) for r in part.requests]
        return None if min(rows, default=-1) < 0 else np.asarray(rows, dtype=np.int64)

    def batch(self, rows: np.ndarray) -> TokenBatch:
        return self.store.batch(rows)
