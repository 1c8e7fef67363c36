"""Shared fixtures: a small simulated world, its catalog as the scorer sees it, and an API app
on a fresh SQLite file per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from api.sim_bridge import catalog_from_world
from fm_core import ItemCatalog, PopularityAffinityScorer
from sim import World, WorldConfig


@pytest.fixture(scope="session")
def small_world_config() -> WorldConfig:
    return WorldConfig(seed=7, n_items=120, n_users=60)


@pytest.fixture(scope="session")
def small_catalog(small_world_config: WorldConfig) -> ItemCatalog:
    return catalog_from_world(World(small_world_config))


@pytest.fixture
def api_settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'api.db'}", max_k=20)


@pytest.fixture
def client(api_settings: Settings, small_catalog: ItemCatalog) -> Iterator[TestClient]:
    scorer = PopularityAffinityScorer(small_catalog, model_version="test-model")
    with TestClient(create_app(api_settings, scorer=scorer)) as test_client:
        yield test_client
