"""A serving worker caps torch's CPU threads (:mod:`fm_core.serving_threads`) once torch is
loaded, and leaves torch alone when asked for 0; the app applies ``Settings.torch_threads`` when
it builds its decision service, on the thread where it scores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from api_keys import bearer, new_token
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from fm_core import PopularityAffinityScorer
from fm_core.serving_threads import limit_torch_threads, torch_thread_environment
from fm_core.types import ItemCatalog


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


def test_serve_carries_the_cap_to_its_workers_unless_the_operator_set_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert torch_thread_environment(1) == {"OMP_NUM_THREADS": "1"}
    assert torch_thread_environment(0) == {}
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert torch_thread_environment(1) == {}


def test_the_app_limits_torch_threads_when_it_starts(restored_threads: int, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    catalog = ItemCatalog(
        item_ids=torch.arange(10).numpy(),
        genres=(torch.eye(10, 4) > 0).numpy(),
        release_time=torch.zeros(10, dtype=torch.float64).numpy(),
    )
    app = create_app(
        Settings(database_url=url, torch_threads=1), scorer=PopularityAffinityScorer(catalog)
    )
    token = new_token(url)
    with TestClient(app) as client:
        # torch keeps the setting per thread (OpenMP): read it where the app scores
        assert client.portal.call(torch.get_num_threads) == 1
        answer = client.post(
            "/v1/decisions", json={"user_id": "u1", "surface": "home", "k": 3},
            headers=bearer(token),
        )  # fmt: skip
        assert answer.status_code == 201, answer.text
