"""A serving worker caps torch's CPU threads once torch is loaded, and leaves torch alone when
asked for 0."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from fm_core.serving_threads import limit_torch_threads


@pytest.fixture
def restored_threads() -> Iterator[int]:
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        yield before
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(("asked", "expected"), [(1, 1), (2, 2), (0, 3)])
def test_limit_torch_threads(restored_threads: int, asked: int, expected: int) -> None:
    limit_torch_threads(asked)
    assert torch.get_num_threads() == expected
