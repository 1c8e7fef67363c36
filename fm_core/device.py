"""Where the foundation model runs: the device, chosen at run time, and its autocast.

Nothing here touches CUDA at import time; ``select_device`` asks only when it is called.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

import torch


def select_device(local_rank: int = 0) -> torch.device:
    """``cuda:local_rank`` when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def autocast_context(device: torch.device) -> AbstractContextManager[object]:
    """bf16 autocast on CUDA; a no-op on the CPU, which trains in fp32."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
