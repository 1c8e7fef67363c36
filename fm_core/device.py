"""Where the foundation model runs: the device, chosen at run time, and its autocast.

Nothing here touches CUDA at import time; ``select_device`` asks only when it is called.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

import torch


def select_device(local_rank: int = 0) -> torch.device:
    """``cuda:local_rank`` when CUDA is available, else the CPU.

    One process per GPU: a torchrun job on one node starts as many processes as it has GPUs
    (``--nproc_per_node``), and process LOCAL_RANK k takes GPU k. A rank without a GPU of its
    own is refused rather than stacked on another's."""
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        if not 0 <= local_rank < count:
            raise ValueError(
                f"LOCAL_RANK {local_rank} has no GPU of its own: this node has {count}; start "
                f"at most {count} processes per node (one per GPU)"
            )
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def autocast_context(device: torch.device) -> AbstractContextManager[object]:
    """bf16 autocast on CUDA; a no-op on the CPU, which trains in fp32."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
