"""Fixtures of the HTTP service's tests: an app on a fresh SQLite log, serving the baseline scorer
over the small world's catalog, and a client that sends an API key with every scope."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_keys import bearer, new_token
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from fm_core import ItemCatalog, PopularityAffinityScorer


@pytest.fixture
def api_settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'api.db'}", max_k=20)


@pytest.fixture
def client(api_settings: Settings, small_catalog: ItemCatalog) -> Iterator[TestClient]:
    """A client of the app that sends a key with every scope (``client.headers``)."""
    scorer = PopularityAffinityScorer(small_catalog, model_version="test-model")
    token = new_token(api_settings.database_url)
    app = create_app(api_settings, scorer=scorer)
    with TestClient(app, headers=bearer(token)) as test_client:
        yield test_client
