"""The simulated world served on every surface through the decision service, into a log.

``serve_surfaces`` takes world requests of any surface (``sim.World.surface_request``: home, a
search with its query, a title page with its opened title), in time order, and for each one:

1. retrieves its candidates (``loop.retrieval.candidates_for_request`` with the given caps: the
   query's lexical matches and the scorer's top for a search, the opened title's neighbours for
   a title page with an FM, every available title otherwise);
2. asks ``DecisionService.decide`` for a slate of ``k`` out of them, so that the policy explores
   and the log keeps the exact propensities, with ``surface``, ``query`` and ``source_item`` on
   the decision record;
3. lets the world respond and writes its plays as events (a play on the slate names its decision
   and position, whatever the surface), then applies the outcome to the world.

The log then holds decisions of every surface, which the training table, OPE and the loop study
read per surface like home's.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import Engine
from sqlmodel import Session

from fm_core import Scorer
from loop.retrieval import DEFAULT_RETRIEVAL, RetrievalConfig, candidates_for_request
from loop.service import DecisionInput, DecisionService
from loop.sim_bridge import request_context, respond_and_log
from sim import Request, World
from sim.clock import to_datetime

logger = logging.getLogger(__name__)


@dataclass
class SurfaceServing:
    """What ``serve_surfaces`` served: decisions, slate plays and decision ids per surface."""

    decisions: Counter[str] = field(default_factory=Counter)
    plays: Counter[str] = field(default_factory=Counter)
    decision_ids: dict[str, list[str]] = field(default_factory=dict)


def serve_surfaces(
    world: World,
    engine: Engine,
    requests: Sequence[Request],
    *,
    service: DecisionService,
    k: int,
    rng: np.random.Generator,
    retrieval: RetrievalConfig = DEFAULT_RETRIEVAL,
) -> SurfaceServing:
    """Serve ``requests`` (sorted by time) through ``service`` into ``engine``'s log and the
    world (see the module docstring)."""
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    times = [r.t for r in requests]
    if any(b < a for a, b in itertools.pairwise(times)):
        raise ValueError("requests must be sorted by time")
    served = SurfaceServing()
    scorer: Scorer = service.scorer
    with Session(engine) as session:
        for request in requests:
            decision_id = str(uuid.UUID(bytes=rng.bytes(16), version=4))
            context = request_context(request)
            now = to_datetime(request.t)
            candidates = candidates_for_request(scorer, context, None, now, config=retrieval)
            out = service.decide(
                session=session,
                request=DecisionInput(
                    context=context,
                    k=k,
                    decision_id=decision_id,
                    candidates=tuple(int(i) for i in candidates),
                ),
                now=now,
            )
            outcome = respond_and_log(world, request, out.record, rng, session)
            served.decisions[request.surface] += 1
            served.plays[request.surface] += int(outcome.played.sum())
            served.decision_ids.setdefault(request.surface, []).append(decision_id)
    logger.info(
        "served %s decisions with %s slate plays", dict(served.decisions), dict(served.plays)
    )
    return served
