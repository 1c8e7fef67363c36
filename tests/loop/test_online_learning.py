"""The VW policy's online learner (loop/online_learning.py): which decisions it learns, when, and
with which labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from explore import EpsilonGreedySlate
from explore.vw_format import LoggedSlate
from explore.vw_policy import VowpalWabbitSlate
from fm_core import ItemCatalog, PopularityAffinityScorer
from loop.context import RequestContext
from loop.online_learning import LearnerConfig, OnlineLearner, sampled, start_online_learning
from loop.service import DecisionInput, DecisionService
from proplog.engine import make_engine
from proplog.schema import EventCreate
from proplog.store import record_events

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


class Spy(VowpalWabbitSlate):
    """The VW policy, keeping what it was asked to learn."""

    def __init__(self) -> None:
        super().__init__(exploration="epsilon", epsilon=0.3)
        self.seen: list[LoggedSlate] = []

    def learn_logged(self, logged, *, all_positions: bool = False) -> int:  # type: ignore[override]
        logged = list(logged)
        self.seen.extend(logged)
        return super().learn_logged(logged, all_positions=all_positions)


@pytest.fixture
def logged(engine: Engine, small_catalog: ItemCatalog):
    """Four VW decisions 10 s apart (one play) and another policy's, on SQLite and PostgreSQL."""
    policy = Spy()
    scorer = PopularityAffinityScorer(small_catalog, model_version="m")
    service = DecisionService(scorer=scorer, policy=policy)
    other = DecisionService(scorer=scorer, policy=EpsilonGreedySlate(epsilon=0.1))
    records = []
    with Session(engine) as session:
        for i in range(4):
            out = service.decide(
                session=session,
                request=DecisionInput(context=RequestContext(f"u{i}", "home"), k=3),
                now=T0 + timedelta(seconds=10 * i),
            )
            records.append(out.record)
        other.decide(  # another policy's decision: not the VW policy's to learn
            session=session,
            request=DecisionInput(context=RequestContext("u9", "home"), k=3),
            now=T0,
        )
        shown = records[0].slate[2]
        record_events(
            session=session,
            events=[
                EventCreate(
                    event_id="e1", created_at=T0 + timedelta(seconds=5), user_id="u0",
                    item_id=shown.item_id, kind="play", value=60.0, source="rec",
                    decision_id=records[0].decision_id,  # no position: matched by item
                )
            ],
        )  # fmt: skip
    return engine, policy, records


def test_decisions_are_learned_once_their_reward_window_closed(logged) -> None:
    engine, policy, records = logged
    now = [T0 + timedelta(seconds=25)]
    config = LearnerConfig(reward_wait_seconds=10.0, all_positions=True)
    learner = OnlineLearner(policy, engine, config, clock=lambda: now[0])
    assert learner.poll_once() == 2  # made at T0 and T0 + 10 s; T0 + 20 s is still waiting
    assert [s.decision_id for s in policy.seen] == [r.decision_id for r in records[:2]]
    now[0] = T0 + timedelta(minutes=5)
    assert learner.poll_once() == 2 and learner.poll_once() == 0
    assert policy.updates_ == 4 * 3 and learner.watermark[1] == records[-1].decision_id


def test_the_examples_carry_the_decisions_features_actions_costs_and_propensities(
    logged,
) -> None:
    engine, policy, records = logged
    config = LearnerConfig(reward_wait_seconds=0.0, all_positions=True)
    OnlineLearner(policy, engine, config).poll_once()
    first, record = policy.seen[0], records[0]
    np.testing.assert_array_equal(first.actions.scores, record.candidate_scores)
    assert first.actions.item_ids is None and first.context.shared_line() == "shared |c"
    index = {item: i for i, item in enumerate(record.candidate_ids)}
    assert first.chosen.tolist() == [index[p.item_id] for p in record.slate]
    assert first.cond_propensity.tolist() == [p.cond_propensity for p in record.slate]
    assert first.reward.tolist() == [0.0, 0.0, 1.0]  # the play named the item at position 2
    assert all(s.reward.sum() == 0 for s in policy.seen[1:])


def test_only_a_vw_policy_with_a_config_learns(logged) -> None:
    engine, policy, _ = logged
    assert not isinstance(start_online_learning(EpsilonGreedySlate(), engine, LearnerConfig()),
                          OnlineLearner)  # fmt: skip
    assert not isinstance(start_online_learning(policy, engine, None), OnlineLearner)
    memory = make_engine("sqlite://")
    assert not isinstance(start_online_learning(policy, memory, LearnerConfig()), OnlineLearner)
    learner = start_online_learning(policy, engine, LearnerConfig(poll_seconds=3600.0))
    assert isinstance(learner, OnlineLearner)
    learner.stop()
    with pytest.raises(ValueError, match="poll_seconds"):
        LearnerConfig(poll_seconds=0.0)


def test_a_share_of_decisions_is_learned_by_their_ids_and_the_rest_passed_over(logged) -> None:
    engine, policy, records = logged
    share = 0.5
    chosen = [r.decision_id for r in records if sampled(r.decision_id, share)]
    learner = OnlineLearner(
        policy, engine, LearnerConfig(reward_wait_seconds=0.0, learn_share=share)
    )
    assert learner.poll_once() == len(chosen) and learner.poll_once() == 0
    assert [s.decision_id for s in policy.seen] == chosen
    assert policy.updates_ == len(chosen)  # position 0 only, by default
    assert learner.watermark is not None and learner.watermark[1] == records[-1].decision_id
    ids = [str(i) for i in range(2000)]
    assert 0.45 < np.mean([sampled(i, share) for i in ids]) < 0.55
    assert all(sampled(i, 1.0) for i in ids[:10])
