"""The decision answer is built as bytes straight from the record (``response_body``): it must be
exactly the response model's own JSON, for a made, a replayed and a deferred decision, and for a
slate whose marginals are not exact."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from api.routes.decisions import response_body
from api.schemas import DecisionResponse, PolicyInfo, SlatePosition
from proplog.activation import Activation
from proplog.schema import DecisionCreate
from tests.support.store_inputs import T0, decision_payload


def _record(*, exact: bool) -> DecisionCreate:
    payload = decision_payload(decision_id=str(uuid.uuid4()), explored_position=1)
    if not exact:
        payload["marginals_exact"] = False
        for position in payload["slate"]:
            position["propensity"] = None
    return DecisionCreate(**payload)


def _model(record: DecisionCreate, replayed: bool, activation: Activation | None) -> str:
    """The answer as the response model validates and serializes it."""
    return DecisionResponse(
        decision_id=record.decision_id,
        created_at=record.created_at,
        user_id=record.user_id,
        surface=record.surface,
        policy=PolicyInfo(
            name=record.policy_name, version=record.policy_version, params=record.exploration
        ),
        model_version=record.model_version,
        marginals_exact=record.marginals_exact,
        slate=[SlatePosition.model_validate(p, from_attributes=True) for p in record.slate],
        replayed=replayed,
        deferred=activation is not None,
        activation_expires_at=activation.expires_at if activation is not None else None,
    ).model_dump_json()


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("replayed", [True, False])
@pytest.mark.parametrize("deferred", [True, False])
def test_the_answer_is_the_response_models_json(
    exact: bool, replayed: bool, deferred: bool
) -> None:
    record = _record(exact=exact)
    activation = (
        Activation(record.decision_id, T0 + timedelta(seconds=30), None) if deferred else None
    )
    body = response_body(record, replayed=replayed, activation=activation)
    assert body.decode() == _model(record, replayed, activation)
    parsed = DecisionResponse.model_validate_json(body)
    assert [p.item_id for p in parsed.slate] == [20, 30, 10]
    assert parsed.slate[1].explored and not parsed.slate[0].explored
    assert parsed.replayed is replayed and parsed.deferred is deferred
