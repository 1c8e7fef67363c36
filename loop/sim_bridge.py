"""The simulated world seen through loopbreak's interfaces: its catalog as the scorer's
``ItemCatalog`` and as a catalog file, its requests as API inputs, its outcomes as events, and
the world's answer to a logged decision written back to the log (:func:`respond_and_log`)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
from sqlmodel import Session

from fm_core import ItemCatalog
from loop.context import RequestContext
from loop.service import DecisionInput
from proplog.schema import DecisionCreate, EventCreate
from proplog.store import record_events
from sim import GENRES, Outcome, Request, World
from sim.clock import EPOCH, to_datetime


def catalog_from_world(world: World) -> ItemCatalog:
    """The world's catalog as the metadata a scorer sees (no latent truth)."""
    catalog = world.catalog
    return ItemCatalog(
        item_ids=np.arange(catalog.n_items, dtype=np.int64),
        genres=catalog.genres.copy(),
        release_time=EPOCH.timestamp() + catalog.release_day * 86400.0,
        tokens=tuple(tuple(catalog.tokens(i)) for i in range(catalog.n_items)),
        genre_names=GENRES,
    )


def catalog_file_frame(world: World) -> pd.DataFrame:
    """The world's catalog as a catalog file has it (``loopbreak catalog load``): titles from
    its title words, genre names, language and country from its tokens, release day as an ISO
    time."""
    catalog = world.catalog
    rows = []
    for i in range(catalog.n_items):
        tokens = catalog.tokens(i)
        rows.append(
            {
                "item_id": i,
                "title": " ".join(t for t in tokens if ":" not in t),
                "genres": "|".join(GENRES[g] for g in np.flatnonzero(catalog.genres[i])),
                "language": next(t for t in tokens if t.startswith("lang:")).removeprefix("lang:"),
                "country": next(t for t in tokens if t.startswith("country:")).split(":", 1)[1],
                "release_time": datetime.fromtimestamp(
                    EPOCH.timestamp() + float(catalog.release_day[i]) * 86400.0, UTC
                ).isoformat(),
            }
        )
    return pd.DataFrame(rows)


def decision_input(request: Request, *, k: int, decision_id: str) -> DecisionInput:
    """The API input a product service would send for a world request."""
    return DecisionInput(context=request_context(request), k=k, decision_id=decision_id)


def request_context(request: Request) -> RequestContext:
    """The context a product service would send with a world request: on search its query, on
    a title page the opened title (never the search's intent, which only the world knows)."""
    return RequestContext(
        user_id=request.user_id,
        surface=request.surface,
        device=request.device_name,
        country=request.country_code,
        local_time=request.local_time,
        query=request.query,
        source_item=request.source_item,
    )


def events_from_outcome(outcome: Outcome, *, decision_id: str) -> list[EventCreate]:
    """The play events of an outcome; recommendation plays carry the decision and position."""
    request = outcome.request
    events = []
    for j, play in enumerate(outcome.plays):
        from_slate = play.source == "rec"
        events.append(
            EventCreate(
                event_id=f"{decision_id}:{j}",
                created_at=to_datetime(play.t),
                user_id=request.user_id,
                item_id=play.item,
                kind="play",
                value=play.seconds,
                source=play.source,
                decision_id=decision_id if from_slate else None,
                position=play.position if from_slate else None,
            )
        )
    return events


def respond_and_log(
    world: World, request: Request, record: DecisionCreate, rng: np.random.Generator,
    session: Session,
) -> Outcome:  # fmt: skip
    """What the world's member does with the slate of ``record`` (the decision logged for
    ``request``): the plays written to the log in ``session`` as events of that decision, and the
    world's state moved on by them."""
    slate = np.array([item.item_id for item in record.slate], dtype=np.int64)
    outcome = world.respond(request, slate, rng)
    events = events_from_outcome(outcome, decision_id=record.decision_id)
    if events:
        record_events(session=session, events=events)
    world.record(outcome)
    return outcome
