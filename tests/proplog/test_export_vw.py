"""The export of the propensity log to VW cb_adf text: what is written, that VW reads it, that
windows stream the same file, and that a VW policy learns from the logged slates."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from explore import EpsilonGreedySlate, rng_for_decision
from explore.vw_format import (
    ActionFeatures,
    CbLabel,
    RequestContext,
    cb_adf_lines,
    daypart_name,
)
from explore.vw_policy import VowpalWabbitSlate
from proplog.engine import init_db, make_engine
from proplog.errors import LogValidationError
from proplog.export_vw import export_cb_adf, logged_slates
from proplog.schema import DecisionCreate, EventCreate, SlateItemCreate
from proplog.store import record_decisions, record_events

T0 = datetime(2024, 5, 1, 6, 0, tzinfo=UTC)
CANDIDATES = [10, 11, 12, 13, 14, 15]
K = 3
PAYING_ITEM = 12


def logged_decision(i: int, rng: np.random.Generator) -> DecisionCreate:
    """Decision ``i``: an ε-greedy slate of 3 out of 6 candidates, one hour after the previous."""
    decision_id = str(uuid.UUID(int=i + 1))
    scores = rng.random(len(CANDIDATES))
    slate = EpsilonGreedySlate(epsilon=0.6).decide(scores, K, rng_for_decision(decision_id))
    return DecisionCreate(
        decision_id=decision_id,
        created_at=T0 + timedelta(hours=i),
        user_id=f"u{i % 3}",
        surface="home",
        device="tv",
        country="SE",
        local_time=(T0 + timedelta(hours=i + 2)).replace(tzinfo=None).isoformat() + "+02:00",
        query="star wars" if i % 4 == 0 else None,
        policy_name="epsilon_greedy",
        policy_version="1",
        model_version="m1",
        exploration={"epsilon": 0.6},
        marginals_exact=True,
        candidate_ids=CANDIDATES,
        candidate_scores=[float(s) for s in scores],
        slate=[
            SlateItemCreate(
                position=k,
                item_id=CANDIDATES[int(slate.indices[k])],
                score=float(slate.scores[k]),
                propensity=float(slate.propensity[k]),
                cond_propensity=float(slate.cond_propensity[k]),
                prefix_propensity=float(slate.prefix_propensity[k]),
                explored=bool(slate.explored[k]),
            )
            for k in range(K)
        ],
    )


def plays_of(decision: DecisionCreate) -> list[EventCreate]:
    """A rec play, 30 s long, wherever the paying item was shown."""
    return [
        EventCreate(
            event_id=f"{decision.decision_id}-{item.position}",
            created_at=decision.created_at + timedelta(minutes=1),
            user_id=decision.user_id,
            item_id=item.item_id,
            kind="play",
            value=30.0,
            source="rec",
            decision_id=decision.decision_id,
            position=item.position,
        )
        for item in decision.slate
        if item.item_id == PAYING_ITEM
    ]


def fill_log(engine: Engine, n: int) -> list[DecisionCreate]:
    rng = np.random.default_rng(0)
    decisions = [logged_decision(i, rng) for i in range(n)]
    with Session(engine) as session:
        record_decisions(session=session, decisions=decisions)
        record_events(session=session, events=[e for d in decisions for e in plays_of(d)])
    return decisions


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'log.db'}")
    init_db(engine)
    return engine


def blocks_of(path: Path) -> list[list[str]]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n\n")
    return [block.split("\n") for block in text[:-2].split("\n\n")]


def test_export_writes_one_labelled_example_per_decision_as_logged(
    engine: Engine, tmp_path: Path
) -> None:
    decisions = fill_log(engine, 12)
    result = export_cb_adf(session_or_engine=engine, path=tmp_path / "out" / "log.vw")
    assert (result.decisions, result.examples) == (12, 12)
    blocks = blocks_of(result.path)
    assert len(blocks) == 12
    for decision, block in zip(decisions, blocks, strict=True):
        first = decision.slate[0]
        played = 1.0 if first.item_id == PAYING_ITEM else 0.0
        daypart = daypart_name((decision.created_at.hour + 2) % 24)
        expected = cb_adf_lines(
            RequestContext(
                surface="home", device="tv", daypart=daypart, country="SE", query=decision.query
            ),
            ActionFeatures(
                scores=np.array(decision.candidate_scores), item_ids=np.array(CANDIDATES)
            ),
            label=CbLabel(
                action=CANDIDATES.index(first.item_id),
                cost=-played,
                probability=first.cond_propensity,
            ),
        )
        assert block == expected
        labelled = [line for line in block[1:] if not line.startswith("|")]
        cost = "-1" if played else "0"
        assert labelled == [
            f"0:{cost}:{first.cond_propensity:.9g} |a id={first.item_id} score:{first.score:.9g}"
        ]


def test_every_position_export_is_read_by_vw_cb_adf(sqlite_engine: Engine, tmp_path: Path) -> None:
    import vowpalwabbit

    fill_log(sqlite_engine, 20)
    result = export_cb_adf(
        session_or_engine=sqlite_engine, path=tmp_path / "log.vw", all_positions=True
    )
    assert (result.decisions, result.examples) == (20, 20 * K)
    blocks = blocks_of(result.path)
    assert [len(b) for b in blocks] == [
        1 + len(CANDIDATES) - k for _ in range(20) for k in range(K)
    ]
    # What `vw --cb_adf -d log.vw` does: the native parser reads and learns the whole file.
    workspace = vowpalwabbit.Workspace(arg_list=["--cb_adf", "--quiet", "-d", str(result.path)])
    try:
        assert workspace.get_weighted_examples() == 20 * K
    finally:
        workspace.finish()


def test_windows_stream_the_same_file_and_select_by_time(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    fill_log(sqlite_engine, 30)
    whole = export_cb_adf(
        session_or_engine=sqlite_engine, path=tmp_path / "whole.vw", chunk_decisions=1000
    )
    single = export_cb_adf(
        session_or_engine=sqlite_engine, path=tmp_path / "single.vw", chunk_decisions=1
    )
    assert whole.path.read_bytes() == single.path.read_bytes()
    part = export_cb_adf(
        session_or_engine=sqlite_engine,
        path=tmp_path / "part.vw",
        since=T0 + timedelta(hours=5),
        until=T0 + timedelta(hours=15),
        chunk_decisions=4,
    )
    assert part.decisions == 10
    assert blocks_of(part.path) == blocks_of(whole.path)[5:15]
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tmp") == []


def test_play_value_reward_and_empty_log(sqlite_engine: Engine, tmp_path: Path) -> None:
    empty = export_cb_adf(session_or_engine=sqlite_engine, path=tmp_path / "empty.vw")
    assert (empty.decisions, empty.examples) == (0, 0)
    assert empty.path.read_text() == ""
    decisions = fill_log(sqlite_engine, 10)
    slates = list(logged_slates(session_or_engine=sqlite_engine, reward="play_value"))
    for decision, logged in zip(decisions, slates, strict=True):
        expected = [30.0 if item.item_id == PAYING_ITEM else 0.0 for item in decision.slate]
        np.testing.assert_array_equal(logged.reward, expected)
        np.testing.assert_array_equal(
            logged.cond_propensity, [item.cond_propensity for item in decision.slate]
        )
        assert logged.decision_id == decision.decision_id


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"reward": "clicks"}, ValueError, "reward must be one of"),
        ({"chunk_decisions": 0}, ValueError, "chunk_decisions must be an integer >= 1"),
        ({"since": datetime(2024, 5, 1)}, LogValidationError, "since"),
    ],
)
def test_bad_export_options_name_the_field(
    sqlite_engine: Engine, tmp_path: Path, options: dict, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        export_cb_adf(session_or_engine=sqlite_engine, path=tmp_path / "x.vw", **options)
    assert not (tmp_path / "x.vw").exists()


def test_vw_policy_learns_the_paying_item_from_the_logged_slates(sqlite_engine: Engine) -> None:
    fill_log(sqlite_engine, 300)
    policy = VowpalWabbitSlate(exploration="epsilon", epsilon=0.1, interactions=())
    learned = policy.learn_logged(
        logged_slates(session_or_engine=sqlite_engine, chunk_decisions=64),
        all_positions=True,
    )
    assert learned == 300 * K
    actions = ActionFeatures(scores=np.full(len(CANDIDATES), 0.5), item_ids=np.array(CANDIDATES))
    pmf = policy.pmf_with(RequestContext(surface="home", device="tv", country="SE"), actions)
    assert CANDIDATES[int(np.argmax(pmf))] == PAYING_ITEM
