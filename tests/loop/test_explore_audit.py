"""Replaying a decision from its id gives the same slate and propensities, an audit of an honest
record passes, every kind of tampering is caught with its position and field, and a decision
that went through the service and the SQLite store audits clean from what was stored."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlmodel import Session

from explore import (
    AuditResult,
    CalibratedSlate,
    EpsilonGreedySlate,
    ExplorationBudget,
    PlackettLuceSlate,
    Policy,
    Slate,
    TopKRandomInsertion,
    audit_decision,
    rng_for_decision,
)
from fm_core import ItemCatalog, PopularityAffinityScorer
from loop.context import RequestContext
from loop.service import DecisionInput, DecisionService
from proplog.engine import init_db, make_engine
from proplog.schema import DecisionCreate
from proplog.store import get_decision

SCORES = np.random.default_rng(3).beta(1.0, 6.0, size=60)
DECISION_ID = "0b7c2e9a-5d41-4f6e-8a3b-9c1d2e3f4a5b"
POLICIES: dict[str, Policy] = {
    "epsilon_greedy": EpsilonGreedySlate(epsilon=0.5, pool=20, positions=(2, 3, 4, 5)),
    "random_insertion": TopKRandomInsertion(epsilon=0.8, pool=30),
    "plackett_luce": PlackettLuceSlate(temperature=0.05, pool=25, uniform_mix=0.2),
    "calibrated_plackett_luce": CalibratedSlate(
        base=PlackettLuceSlate(pool=30), budget=ExplorationBudget(relative_cost=0.02)
    ),
}


def logged_fields(slate: Slate) -> dict:
    return {
        "indices": slate.indices.tolist(),
        "propensity": [None if np.isnan(p) else float(p) for p in slate.propensity],
        "cond_propensity": slate.cond_propensity.tolist(),
        "prefix_propensity": slate.prefix_propensity.tolist(),
        "explored": slate.explored.tolist(),
    }


@pytest.mark.parametrize("name", list(POLICIES))
def test_replaying_a_decision_id_gives_the_same_slate_and_propensities(name: str) -> None:
    policy = POLICIES[name]
    first = policy.decide(SCORES, 8, rng_for_decision(DECISION_ID))
    again = policy.decide(SCORES, 8, rng_for_decision(uuid.UUID(DECISION_ID)))
    for field in ("indices", "propensity", "cond_propensity", "prefix_propensity", "explored"):
        np.testing.assert_array_equal(getattr(first, field), getattr(again, field))
    assert first.exploration == again.exploration
    different = {
        tuple(policy.decide(SCORES, 8, rng_for_decision(uuid.UUID(int=i))).indices)
        for i in range(1, 40)
    }
    assert len(different) > 1  # the id matters


@pytest.mark.parametrize("name", list(POLICIES))
def test_an_honest_record_audits_clean(name: str) -> None:
    policy = POLICIES[name]
    slate = policy.decide(SCORES, 8, rng_for_decision(DECISION_ID))
    exploration = slate.exploration or policy.params()
    result = audit_decision(
        policy,
        scores=SCORES,
        decision_id=DECISION_ID,
        exploration=exploration,
        **logged_fields(slate),
    )
    assert result.ok, result.describe()
    assert "matches" in result.describe()


def test_every_kind_of_tampering_is_caught_with_position_and_field() -> None:
    policy = POLICIES["random_insertion"]
    decision_id = next(
        str(uuid.UUID(int=i))
        for i in range(1, 500)
        if policy.decide(SCORES, 8, rng_for_decision(uuid.UUID(int=i))).explored.any()
    )
    logged = logged_fields(policy.decide(SCORES, 8, rng_for_decision(decision_id)))

    def audit(**changes: object) -> list[tuple[int | None, str]]:
        result = audit_decision(
            policy,
            scores=SCORES,
            decision_id=decision_id,
            exploration=changes.pop("exploration", policy.params()),
            **{**logged, **changes},
        )
        return [(m.position, m.field) for m in result.mismatches]

    swapped = list(logged["indices"])
    swapped[1], swapped[2] = swapped[2], swapped[1]
    assert audit(indices=swapped) == [(1, "index"), (2, "index")]
    nudged = list(logged["propensity"])
    nudged[4] = float(np.nextafter(nudged[4], 1.0))  # one ulp: propensities are never rounded
    assert audit(propensity=nudged) == [(4, "propensity")]
    rounded = [round(p, 6) for p in logged["prefix_propensity"]]
    assert (7, "prefix_propensity") in audit(prefix_propensity=rounded)
    flags = list(logged["explored"])
    flags[0] = not flags[0]
    assert audit(explored=flags) == [(0, "explored")]
    assert audit(exploration={**policy.params(), "epsilon": 0.1}) == [(None, "exploration")]
    other_id = str(uuid.UUID(int=uuid.UUID(decision_id).int + 1))
    result = audit_decision(policy, scores=SCORES, decision_id=other_id, **logged)
    assert not result.ok and "mismatches" in result.describe()


def test_audit_tolerates_a_relative_difference_only_when_asked() -> None:
    policy = POLICIES["epsilon_greedy"]
    logged = logged_fields(policy.decide(SCORES, 8, rng_for_decision(DECISION_ID)))
    close = [p * (1 + 1e-12) for p in logged["cond_propensity"]]
    strict = audit_decision(
        policy, scores=SCORES, decision_id=DECISION_ID, **{**logged, "cond_propensity": close}
    )
    assert {m.field for m in strict.mismatches} == {"cond_propensity"}
    loose = audit_decision(
        policy,
        scores=SCORES,
        decision_id=DECISION_ID,
        rtol=1e-9,
        **{**logged, "cond_propensity": close},
    )
    assert loose.ok


def test_audit_refuses_a_record_of_the_wrong_shape() -> None:
    policy = POLICIES["epsilon_greedy"]
    logged = logged_fields(policy.decide(SCORES, 8, rng_for_decision(DECISION_ID)))
    with pytest.raises(ValueError, match=r"propensity must have one value per slate position"):
        audit_decision(
            policy,
            scores=SCORES,
            decision_id=DECISION_ID,
            **{**logged, "propensity": logged["propensity"][:3]},
        )
    with pytest.raises(ValueError, match=r"indices must hold the logged slate"):
        audit_decision(policy, scores=SCORES, decision_id=DECISION_ID, **{**logged, "indices": []})


def test_a_stored_decision_audits_clean_from_the_store(
    tmp_path: Path, small_catalog: ItemCatalog
) -> None:
    """Through the service and SQLite: the record logs the calibrated exploration actually used,
    and the stored candidate scores and slate replay exactly."""
    engine = make_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    init_db(engine)
    policy = CalibratedSlate(
        base=TopKRandomInsertion(pool=40), budget=ExplorationBudget(relative_cost=0.02)
    )
    scorer = PopularityAffinityScorer(small_catalog, model_version="audit-model")
    service = DecisionService(scorer=scorer, policy=policy)
    now = datetime(2024, 3, 1, 12, tzinfo=UTC)
    decision_id = str(uuid.uuid4())
    with Session(engine) as session:
        service.decide(
            session=session,
            request=DecisionInput(
                context=RequestContext(user_id="u1", surface="home"), k=10, decision_id=decision_id
            ),
            now=now,
        )
    with Session(engine) as session:
        record = get_decision(session=session, decision_id=decision_id)
    assert record is not None
    assert record.exploration["policy"] in ("random_insertion", "greedy")
    assert record.exploration["budget"] == 0.02
    assert record.exploration["expected_cost"] <= 0.02 + 1e-12
    result = audit_record(policy, record)
    assert result.ok, result.describe()
    # The same record audited against another budget is caught.
    other = replace(policy, budget=ExplorationBudget(relative_cost=0.2))
    tampered = audit_record(other, record)
    assert not tampered.ok


def audit_record(policy: Policy, record: DecisionCreate) -> AuditResult:
    """``audit_decision`` of a stored decision record: its candidates, scores and slate."""
    candidates = {item: j for j, item in enumerate(record.candidate_ids)}
    return audit_decision(
        policy,
        scores=np.array(record.candidate_scores),
        decision_id=record.decision_id,
        indices=[candidates[s.item_id] for s in record.slate],
        propensity=[s.propensity for s in record.slate],
        cond_propensity=[s.cond_propensity for s in record.slate],
        prefix_propensity=[s.prefix_propensity for s in record.slate],
        explored=[s.explored for s in record.slate],
        exploration=record.exploration,
    )
