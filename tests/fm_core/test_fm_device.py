"""Device choice: one process per GPU (LOCAL_RANK k takes cuda:k), the CPU without CUDA. The
CUDA queries are replaced here, so no test touches a GPU."""

from __future__ import annotations

import pytest
import torch

from fm_core.device import select_device


def _gpus(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


@pytest.mark.parametrize("rank", [0, 1, 3])
def test_each_local_rank_takes_its_own_gpu(monkeypatch: pytest.MonkeyPatch, rank: int) -> None:
    _gpus(monkeypatch, 4)
    assert select_device(rank) == torch.device("cuda", rank)


def test_a_rank_beyond_the_gpus_is_refused_not_stacked(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, 2)
    with pytest.raises(ValueError, match="LOCAL_RANK 2 has no GPU of its own: this node has 2"):
        select_device(2)


def test_without_cuda_every_rank_runs_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, 0)
    assert select_device(5) == torch.device("cpu")
