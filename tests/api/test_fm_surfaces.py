"""A model file of the FM and ranker, made by the project's own training
(``loop.small_model.small_fm_model``), serves every surface of ``vocab.SURFACES`` through
``DecisionService`` and through the HTTP app, with the surface's retrieval: the whole catalog for
home and the billboard, the query's matches and the FM's top for search, the source item's
neighbours for a title page."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from api_keys import bearer, new_token
from fastapi.testclient import TestClient
from small_fm import small_fm_path
from sqlmodel import Session

from api.app import create_app
from api.settings import Settings
from explore import EpsilonGreedySlate
from fm_core import load_scorer_file
from fm_core.fm_scorer import FMRankerScorer
from loop.context import RequestContext
from loop.retrieval import RetrievalConfig
from loop.service import DecisionInput, DecisionService
from proplog.engine import init_db, make_engine
from proplog.store import get_decision
from vocab import SURFACES

pytestmark = pytest.mark.slow  # the small FM file takes a few seconds to make, once per process

SEARCHED, SOURCE = 7, 11
CAPS = RetrievalConfig(search_cap=60, title_cap=40)


@pytest.fixture(scope="module")
def fm() -> FMRankerScorer:
    scorer = load_scorer_file(small_fm_path())
    assert isinstance(scorer, FMRankerScorer)
    return scorer


@pytest.fixture(autouse=True)
def small_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Caps below the small catalog's 300 titles, so that retrieval shows."""
    monkeypatch.setattr("loop.retrieval.DEFAULT_RETRIEVAL", CAPS)


def title_of(fm: FMRankerScorer, item: int) -> str:
    row = int(fm.catalog.rows(np.array([item]))[0])
    return " ".join(t for t in fm.catalog.tokens[row] if ":" not in t)


def context_fields(fm: FMRankerScorer, surface: str) -> dict[str, Any]:
    """The request context a product service sends from each surface."""
    fields: dict[str, Any] = {"device": "tv", "country": "US"}
    if surface == "search":
        fields["query"] = title_of(fm, SEARCHED)
    if surface == "title":
        fields["source_item"] = SOURCE
    return fields


def k_of(surface: str) -> int:
    return 1 if surface == "billboard" else 10


def check_candidates(fm: FMRankerScorer, surface: str, candidate_ids: list[int]) -> None:
    available = fm.catalog.item_ids  # the small world's titles are all out by the request
    if surface == "search":
        assert SEARCHED in candidate_ids and len(candidate_ids) <= CAPS.search_cap
    elif surface == "title":
        assert SOURCE not in candidate_ids and len(candidate_ids) == CAPS.title_cap
    else:
        assert candidate_ids == available.tolist()


def now_after_every_release(fm: FMRankerScorer) -> datetime:
    return datetime.fromtimestamp(float(fm.catalog.release_time.max()) + 60.0, UTC)


@pytest.mark.parametrize("surface", SURFACES)
def test_the_fm_decides_for_every_surface_through_the_service(
    fm: FMRankerScorer, surface: str
) -> None:
    engine = make_engine("sqlite://")
    init_db(engine)
    service = DecisionService(scorer=fm, policy=EpsilonGreedySlate(epsilon=0.1, pool=20))
    context = RequestContext(user_id="u1", surface=surface, **context_fields(fm, surface))
    with Session(engine) as session:
        out = service.decide(
            session=session,
            request=DecisionInput(context=context, k=k_of(surface)),
            now=now_after_every_release(fm),
        )
        stored = get_decision(session=session, decision_id=out.record.decision_id)
    engine.dispose()
    assert stored is not None and stored.model_version == fm.model_version
    assert stored.surface == surface and len(stored.slate) == k_of(surface)
    check_candidates(fm, surface, stored.candidate_ids)
    scores = np.asarray(stored.candidate_scores)
    assert np.all((scores > 0) & (scores < 1))  # calibrated P(play)
    assert all(p.item_id in stored.candidate_ids for p in stored.slate)
    assert all(0 < p.propensity <= 1 for p in stored.slate)  # ε-greedy: exact marginals


@pytest.fixture(scope="module")
def fm_client(fm: FMRankerScorer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("fm-api")
    settings = Settings(database_url=f"sqlite:///{folder / 'api.db'}", max_k=20)
    app = create_app(settings, scorer=fm)
    with TestClient(app, headers=bearer(new_token(settings.database_url))) as client:
        yield client


@pytest.mark.parametrize("surface", SURFACES)
def test_the_fm_serves_every_surface_over_http(
    fm: FMRankerScorer, fm_client: TestClient, surface: str
) -> None:
    body = {
        "user_id": "u2",
        "surface": surface,
        "k": k_of(surface),
        "context": {**context_fields(fm, surface), "local_time": "2026-01-01T20:00:00+01:00"},
    }
    response = fm_client.post("/v1/decisions", json=body)
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["model_version"] == fm.model_version
    assert len(answer["slate"]) == k_of(surface)
    with Session(fm_client.app.state.engine) as session:
        stored = get_decision(session=session, decision_id=answer["decision_id"])
    assert stored is not None
    check_candidates(fm, surface, stored.candidate_ids)
    assert [p["item_id"] for p in answer["slate"]] == [p.item_id for p in stored.slate]


def test_client_candidates_win_on_the_search_surface(
    fm: FMRankerScorer, fm_client: TestClient
) -> None:
    body = {"user_id": "u3", "surface": "search", "k": 2, "candidates": [3, 5, 8],
            "context": {"query": title_of(fm, SEARCHED)}}  # fmt: skip
    response = fm_client.post("/v1/decisions", json=body)
    assert response.status_code == 201, response.text
    with Session(fm_client.app.state.engine) as session:
        stored = get_decision(session=session, decision_id=response.json()["decision_id"])
    assert stored is not None and stored.candidate_ids == [3, 5, 8]
