"""Export to obp's bandit_feedback: obp 0.4.1's IPS on it equals ours; logs that do not fit
obp's dense arrays are refused with a message naming the problem."""

from __future__ import annotations

import uuid
from datetime import timedelta

import numpy as np
import pytest
from obp.ope import InverseProbabilityWeighting
from sqlalchemy import Engine
from sqlmodel import Session
from store_inputs import T0, decision_payload

from ope import IPS, OpeBatch
from proplog.export_obp import ObpExportError, to_bandit_feedback
from proplog.store import record_decisions, record_events

SLATES = ((20, 30, 10), (10, 40, 20), (40, 10, 30), (30, 20, 40))


def record(engine: Engine, decisions: list[dict], events: list[dict] | None = None) -> None:
    with Session(engine) as session:
        record_decisions(session=session, decisions=decisions)
        if events:
            record_events(session=session, events=events)


def fixed_set_log(n: int, rng: np.random.Generator) -> tuple[list[dict], list[dict]]:
    decisions, events = [], []
    for i in range(n):
        d = decision_payload(decision_id=str(uuid.UUID(int=i + 1)), items=SLATES[i % 4])
        d["created_at"] = T0 + timedelta(seconds=i)
        d["device"] = ("tv", "phone", None)[i % 3]
        decisions.append(d)
        for k in np.flatnonzero(rng.random(3) < 0.3):
            events.append(
                {
                    "event_id": f"p{i}-{k}",
                    "created_at": d["created_at"] + timedelta(minutes=1),
                    "user_id": d["user_id"],
                    "item_id": d["slate"][k]["item_id"],
                    "kind": "play",
                    "source": "rec",
                    "decision_id": d["decision_id"],
                    "position": int(k),
                }
            )
    return decisions, events


def test_obp_ips_on_the_export_equals_ours(engine: Engine) -> None:
    rng = np.random.default_rng(3)
    decisions, events = fixed_set_log(40, rng)
    record(engine, decisions, events)
    feedback = to_bandit_feedback(session_or_engine=engine)
    n = feedback["n_rounds"]
    assert n == 120 and feedback["n_actions"] == 4
    assert feedback["item_ids"].tolist() == [10, 20, 30, 40]
    assert feedback["context"].shape == (n, 3)  # device one-hot: phone, tv, unknown
    assert feedback["context"].sum(axis=1).tolist() == [1.0] * n
    assert feedback["action_context"].shape == (4, 4)
    assert set(feedback["pscore"]) == {0.5, 0.4, 0.3}
    shown = feedback["item_ids"][feedback["action"]]
    expected = [item for i in range(40) for item in SLATES[i % 4]]
    assert shown.tolist() == expected
    assert feedback["reward"].sum() == len(events)

    len_list = int(feedback["position"].max()) + 1
    action_dist = rng.dirichlet(np.ones(4), size=(n, len_list)).transpose(0, 2, 1)
    theirs = InverseProbabilityWeighting().estimate_policy_value(
        reward=feedback["reward"],
        action=feedback["action"],
        pscore=feedback["pscore"],
        action_dist=action_dist,
        position=feedback["position"],
    )
    target = action_dist[np.arange(n), feedback["action"], feedback["position"]]
    per_row = IPS().estimate(
        OpeBatch.from_arrays(
            reward=feedback["reward"], pscore=feedback["pscore"], target_pscore=target
        )
    )
    assert per_row.value == pytest.approx(theirs, rel=1e-12)
    # Per decision (summed over its 3 slots, our slate convention) it is 3 times obp's.
    per_decision = IPS().estimate(
        OpeBatch.from_arrays(
            reward=feedback["reward"],
            pscore=feedback["pscore"],
            target_pscore=target,
            decision_id=feedback["decision_id"],
            slot=feedback["position"],
        )
    )
    assert per_decision.value == pytest.approx(3 * theirs, rel=1e-12)


def test_candidate_sets_that_differ_are_refused_naming_the_decision(engine: Engine) -> None:
    first = decision_payload(decision_id=str(uuid.UUID(int=1)))
    second = decision_payload(decision_id=str(uuid.UUID(int=2)))
    second["created_at"] = T0 + timedelta(seconds=1)
    second["candidate_ids"] = [10, 20, 30, 50]
    record(engine, [first, second])
    with pytest.raises(ObpExportError, match=r"not one fixed action set: decision .*0002"):
        to_bandit_feedback(session_or_engine=engine)


def test_too_many_actions_are_refused(engine: Engine) -> None:
    record(engine, [decision_payload(decision_id=str(uuid.UUID(int=1)))])
    with pytest.raises(ObpExportError, match=r"too many actions.*max_actions=3"):
        to_bandit_feedback(session_or_engine=engine, max_actions=3)


def test_positions_without_exact_marginals_are_refused(engine: Engine) -> None:
    d = decision_payload(decision_id=str(uuid.UUID(int=1)))
    d["marginals_exact"] = False
    d["slate"][1]["propensity"] = None
    record(engine, [d])
    with pytest.raises(ObpExportError, match="exact marginal propensities"):
        to_bandit_feedback(session_or_engine=engine)


def test_an_empty_window_is_refused(engine: Engine) -> None:
    with pytest.raises(ObpExportError, match="no decisions"):
        to_bandit_feedback(session_or_engine=engine)
