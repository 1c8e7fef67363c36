"""Training windows held as padded tensors on the training device, batched by index.

``WindowStore`` collates every window once, right-padded to the longest, and moves the result
to the device. A batch is then a gather of rows on the device, cut to the batch's longest
window (known on the host from the window lengths, so cutting never waits for the device):
no per-step collation in Python and no per-step host-to-device copy. The batch equals
``collate`` of the same windows exactly, padding included, so training on it gives the same
steps.

It also keeps, on the host, each window's count of valid targets per shift, from which the
trainer reads a batch's target counts (for its metrics and FLOPs) without asking the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields

import numpy as np
import torch

from fm_core.tokenize import SequenceTokens, TokenBatch, collate

__all__ = ["WindowStore", "window_target_counts"]


def window_target_counts(windows: Sequence[SequenceTokens], max_shift: int) -> np.ndarray:
    """(n_windows, max_shift) valid targets at shift k = 0..max_shift-1 of each window."""
    return np.array(
        [[int(np.count_nonzero(w.target[k:] >= 0)) for k in range(max_shift)] for w in windows],
        dtype=np.int64,
    ).reshape(len(windows), max_shift)


class WindowStore:
    """All windows as one padded TokenBatch on ``device``; ``batch(indices)`` gathers rows."""

    def __init__(
        self, windows: Sequence[SequenceTokens], device: torch.device, *, max_shift: int = 1
    ) -> None:
        if not windows:
            raise ValueError("a window store needs at least one window")
        self.lengths = np.array([len(w) for w in windows], dtype=np.int64)
        # (n_windows, max_shift): valid targets at shift k = 0..max_shift-1 of each window
        self.target_counts = window_target_counts(windows, max_shift)
        self.all = collate(list(windows)).to(device)
        self.device = device

    def __len__(self) -> int:
        return int(self.lengths.size)

    def batch(self, indices: Sequence[int] | np.ndarray) -> TokenBatch:
        """The windows at ``indices`` as a TokenBatch on the device, padded to the longest."""
        rows = np.asarray(indices, dtype=np.int64)
        width = max(int(self.lengths[rows].max()), 1)
        index = torch.from_numpy(rows).to(self.device, non_blocking=True)
        parts = {
            f.name: getattr(self.all, f.name)[:, :width].index_select(0, index)
            for f in fields(TokenBatch)
        }
        return TokenBatch(**parts)

    def batch_targets(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """(max_shift,) valid targets of the windows at ``indices`` per shift (host side)."""
        return self.target_counts[np.asarray(indices, dtype=np.int64)].sum(axis=0)
