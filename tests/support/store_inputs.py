"""A valid decision for the store's tests, as the API would send it: a Plackett-Luce slate of up
to three items out of four candidates, with every propensity."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)


def decision_payload(
    *,
    decision_id: str,
    user_id: str = "u1",
    items: tuple[int, ...] = (20, 30, 10),
    explored_position: int | None = None,
) -> dict[str, Any]:
    """A decision showing ``items`` in order; ``explored_position`` marks one slot explored."""
    cond = [0.5, 0.25, 0.2][: len(items)]
    prefix = [0.5, 0.5 * 0.25, 0.5 * 0.25 * 0.2][: len(items)]
    return {
        "decision_id": decision_id,
        "created_at": T0,
        "user_id": user_id,
        "surface": "home",
        "policy_name": "plackett_luce",
        "policy_version": "1",
        "model_version": "ranker-7",
        "exploration": {"temperature": 0.7},
        "marginals_exact": True,
        "candidate_ids": [10, 20, 30, 40],
        "candidate_scores": [0.9, 0.8, 0.7, 0.1],
        "slate": [
            {
                "position": k,
                "item_id": item,
                "score": 0.5,
                "propensity": [0.5, 0.4, 0.3][k],
                "cond_propensity": cond[k],
                "prefix_propensity": prefix[k],
                "explored": k == explored_position,
            }
            for k, item in enumerate(items)
        ],
    }


def rec_play(d: dict[str, Any], *, position: int = 0, **changes: Any) -> dict[str, Any]:
    """A play of the item at ``position`` of decision payload ``d``, a minute after it."""
    event = {
        "event_id": str(uuid.uuid4()),
        "created_at": d["created_at"] + timedelta(minutes=1),
        "user_id": d["user_id"],
        "item_id": d["slate"][position]["item_id"],
        "kind": "play",
        "value": 30.0,
        "source": "rec",
        "decision_id": d["decision_id"],
        "position": position,
    }
    event.update(changes)
    return event


Mutation = Callable[[dict[str, Any]], None]


def slate_set(k: int, key: str, value: Any) -> Mutation:
    """A change of a decision payload: slate position ``k``'s ``key`` becomes ``value``."""

    def mutate(d: dict[str, Any]) -> None:
        d["slate"][k][key] = value

    return mutate


SLATE_REFUSALS = [
    pytest.param(slate_set(1, "propensity", 0.0), "slate[1].propensity", id="propensity-zero"),
    pytest.param(slate_set(0, "propensity", 1.5), "slate[0].propensity", id="propensity-above-one"),
    pytest.param(
        slate_set(2, "cond_propensity", -0.2), "slate[2].cond_propensity", id="cond-negative"
    ),
    pytest.param(slate_set(2, "item_id", 999), "slate[2].item_id", id="unknown-item-id"),
    pytest.param(slate_set(1, "item_id", 20), "slate[1].item_id", id="duplicate-slate-item"),
]
"""The bad decisions the issue names (propensities outside (0, 1], an unknown item, a duplicate
in the slate), each with the field its error must name."""


def count_rows(engine: Any, table: str) -> int:
    """Rows in ``table`` of the log behind ``engine``."""
    from sqlalchemy import text

    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def rows_at(url: str, table: str) -> int:
    """Rows in ``table`` of the log at ``url``, read through a new engine (a new connection sees
    only what was committed)."""
    from proplog.engine import make_engine

    engine = make_engine(url)
    try:
        return count_rows(engine, table)
    finally:
        engine.dispose()
