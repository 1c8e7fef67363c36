"""Decision-side retrieval (loop/retrieval.py): search by the query (BM25 and the FM), title by
the source item's embedding neighbours, the whole catalog elsewhere, the client's list always."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from small_fm import small_fm_path
from sqlmodel import Session

from explore import EpsilonGreedySlate
from fm_core import History, PopularityAffinityScorer, load_scorer_file
from loop.context import RequestContext
from loop.retrieval import (
    LexicalIndex,
    NoCandidatesError,
    RetrievalConfig,
    UnknownCandidatesError,
    candidates_for_request,
)
from loop.service import DecisionInput, DecisionService
from proplog.engine import init_db, make_engine
from proplog.store import get_decision

pytestmark = pytest.mark.slow  # the small FM file takes a few seconds to make, once per process


@pytest.fixture(scope="module")
def fm():
    return load_scorer_file(small_fm_path())


def late(scorer) -> datetime:
    """A time at which every title of the catalog is released."""
    return datetime.fromtimestamp(float(scorer.catalog.release_time.max()) + 1.0, UTC)


def title_of(scorer, item: int) -> str:
    row = int(scorer.catalog.rows(np.array([item]))[0])
    return " ".join(t for t in scorer.catalog.tokens[row] if ":" not in t)


def search(query: str | None, **fields) -> RequestContext:
    return RequestContext(user_id="u1", surface="search", query=query, **fields)


def test_an_exact_title_query_retrieves_its_title(fm) -> None:
    when = late(fm)
    items = fm.catalog.item_ids
    found = [
        int(item) in candidates_for_request(fm, search(title_of(fm, item)), None, when)
        for item in items
    ]
    assert np.mean(found) == 1.0


def test_search_is_bm25_matches_and_the_fms_top_within_the_cap(fm) -> None:
    when = late(fm)
    config = RetrievalConfig(search_cap=40, lexical_share=0.5)
    query = title_of(fm, 7)
    got = candidates_for_request(fm, search(query), None, when, config=config)
    assert got.size <= 40 and np.array_equal(got, np.unique(got))
    lexical = LexicalIndex(fm.catalog).search(query, time=when.timestamp(), limit=20)
    assert set(lexical.tolist()) <= set(got.tolist())
    request = search(query).score_request(when=when, history=History())
    fm_top = fm.retrieve(request, 40)
    assert set(got.tolist()) <= set(lexical.tolist()) | set(fm_top.tolist())
    assert got.size == min(40, lexical.size + np.setdiff1d(fm_top, lexical).size)


def test_lexical_matches_are_released_and_ranked_by_bm25(fm) -> None:
    catalog = fm.catalog
    row = 3
    word = next(t for t in catalog.tokens[row] if ":" not in t)
    index = LexicalIndex(catalog)
    every = index.search(word, time=late(fm).timestamp(), limit=1000)
    having = {int(i) for r, i in enumerate(catalog.item_ids) if word in catalog.tokens[r]}
    assert set(every.tolist()) == having
    first = float(catalog.release_time.min())
    early = index.search(word, time=first, limit=1000)
    assert set(early.tolist()) == {
        i for i in having if catalog.release_time[catalog.rows(np.array([i]))[0]] <= first
    }
    assert index.search("zzqqxx", time=late(fm).timestamp(), limit=10).size == 0


def test_title_candidates_are_the_source_items_nearest_items_without_it(fm) -> None:
    when = late(fm)
    config = RetrievalConfig(title_cap=25)
    context = RequestContext(user_id="u1", surface="title", source_item=11)
    got = candidates_for_request(fm, context, None, when, config=config)
    assert got.size == 25 and 11 not in got
    table = fm.item_embeddings(fm.catalog.item_ids)
    unit = table / np.linalg.norm(table, axis=1, keepdims=True)
    similarity = unit @ unit[fm.catalog.rows(np.array([11]))[0]]
    similarity[fm.catalog.rows(np.array([11]))[0]] = -np.inf
    nearest = fm.catalog.item_ids[np.argsort(-similarity)[:25]]
    assert set(got.tolist()) == set(nearest.tolist())


def test_home_billboard_a_search_without_query_and_an_unknown_source_get_every_title(fm) -> None:
    when = late(fm)
    everything = fm.catalog.available(when.timestamp())
    for context in (
        RequestContext(user_id="u1", surface="home"),
        RequestContext(user_id="u1", surface="billboard"),
        search(None),
        search("  !! "),
        RequestContext(user_id="u1", surface="title"),
        RequestContext(user_id="u1", surface="title", source_item=10**9),
    ):
        assert np.array_equal(candidates_for_request(fm, context, None, when), everything)


def test_the_baseline_keeps_the_whole_catalog_for_a_title_and_searches_by_the_query(fm) -> None:
    baseline = PopularityAffinityScorer(fm.catalog, model_version="b")
    when = late(fm)
    title = RequestContext(user_id="u1", surface="title", source_item=11)
    assert candidates_for_request(baseline, title, None, when).size == fm.catalog.n_items
    got = candidates_for_request(
        baseline, search(title_of(fm, 7)), None, when, config=RetrievalConfig(search_cap=30)
    )
    assert 7 in got and got.size == 30


def test_client_candidates_always_win(fm) -> None:
    when = late(fm)
    for context in (search(title_of(fm, 7)), RequestContext("u1", "title", source_item=11)):
        assert candidates_for_request(fm, context, (5, 3, 9), when).tolist() == [5, 3, 9]
    with pytest.raises(UnknownCandidatesError):
        candidates_for_request(fm, search("x"), (5, 10**9), when)
    early = datetime.fromtimestamp(float(fm.catalog.release_time.min()) - 1.0, UTC)
    with pytest.raises(NoCandidatesError):
        candidates_for_request(fm, RequestContext("u1", "home"), None, early)


def test_the_log_records_exactly_the_retrieved_candidates_and_their_scores(
    fm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("loop.retrieval.DEFAULT_RETRIEVAL", RetrievalConfig(search_cap=50))
    engine = make_engine("sqlite://")
    init_db(engine)
    service = DecisionService(scorer=fm, policy=EpsilonGreedySlate(epsilon=0.2))
    when = late(fm)
    context = search(title_of(fm, 7))
    with Session(engine) as session:
        out = service.decide(session=session, request=DecisionInput(context=context, k=5), now=when)
        stored = get_decision(session=session, decision_id=out.record.decision_id)
    expected = candidates_for_request(fm, context, None, when)
    assert stored is not None and stored.candidate_ids == expected.tolist()
    assert len(stored.candidate_scores) == expected.size <= 50
    engine.dispose()
