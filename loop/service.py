"""Making a decision: history → scores → slate with exact propensities → durable record.

The HTTP route, the demo and the benchmarks all decide through ``DecisionService``, so that what
is measured offline is what runs in production. A deferred request (``DecisionInput.deferred``)
is decided and recorded alike, with its activation row in the same write
(:mod:`proplog.activation`): it counts as shown only once activated within the activation window.

Two ways in, one decision: :meth:`DecisionService.decide` (blocking, in the caller's session: the
demo, the study, tuning, tests) and :meth:`DecisionService.decide_async` (the HTTP service: the
CPU work, scoring, exploring and building the record, runs inline on the event loop; the log is
read only by short blocking functions handed to the caller's ``run_blocking``, each with its own
session, and a durable write awaits the batch writer's future, so no connection or thread is held
across scoring or across the wait for the commit). Both build the record with
:meth:`DecisionService.build_record` and take the user's history by the same rule, so they make
the same decision for the same request, time and log.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import repeat
from typing import Any

import numpy as np
from sqlalchemy import Engine
from sqlmodel import Session

from explore import Policy, rng_for_decision
from fm_core import History, Scorer
from loop.context import RequestContext, history_from_events
from loop.experiment import LiveExperiment
from loop.history_cache import HistoryCache
from loop.retrieval import NoCandidatesError as NoCandidatesError  # the candidates' errors,
from loop.retrieval import UnknownCandidatesError as UnknownCandidatesError  # named here too
from loop.retrieval import candidates_for_request
from proplog.activation import DEFAULT_ACTIVATION_SECONDS, Activation, get_activation
from proplog.batch_writer import BatchWriter
from proplog.errors import ConflictError
from proplog.ids import time_ordered_uuid
from proplog.schema import DecisionCreate, SlateItemCreate
from proplog.store import get_decision, record_validated_batch, user_history
from proplog.validation import validate_decision

logger = logging.getLogger(__name__)

RunBlocking = Callable[..., Awaitable[Any]]
"""``await run_blocking(fn, *args)``: ``fn(*args)`` in a thread, without holding the event loop
(the API's :class:`api.deps.BlockingPool.run`)."""


@dataclass(frozen=True)
class DecisionInput:
    """What a product service asks for: a slate of ``k`` for the request ``context``, out of
    ``candidates`` (None: every title the catalog has available), under the idempotency key
    ``decision_id`` (None: the service makes one). ``deferred``: the slate may not be shown; it
    counts as shown only once activated (:func:`proplog.activation.activate`)."""

    context: RequestContext
    k: int
    decision_id: str | None = None
    candidates: tuple[int, ...] | None = None
    deferred: bool = False


def check_replay(stored: DecisionCreate, request: DecisionInput, *, deferred: bool = False) -> None:
    """Raise ``ConflictError`` when ``request`` is not the request ``stored`` answered: its
    context fields, its ``k`` (a stored slate shorter than k only when the candidates ran out),
    its candidate list when it gave one, and whether it was deferred (``deferred``: the stored
    decision was)."""
    decision_id = stored.decision_id
    for field, given in request.context.record_fields().items():
        if getattr(stored, field) != given:
            raise ConflictError(
                key_name="decision_id", key=decision_id, field=field,
                stored=getattr(stored, field), given=given,
            )  # fmt: skip
    shown = len(stored.slate)
    if shown != request.k and not (shown < request.k and shown == len(stored.candidate_ids)):
        raise ConflictError(
            key_name="decision_id", key=decision_id, field="k", stored=shown, given=request.k
        )
    if request.candidates is not None and sorted(request.candidates) != sorted(
        stored.candidate_ids
    ):
        raise ConflictError(
            key_name="decision_id", key=decision_id, field="candidates",
            stored=len(stored.candidate_ids), given=len(request.candidates),
        )  # fmt: skip
    if request.deferred != deferred:
        raise ConflictError(
            key_name="decision_id", key=decision_id, field="deferred",
            stored=deferred, given=request.deferred,
        )  # fmt: skip


@dataclass(frozen=True)
class DecisionOutput:
    """The decision recorded (or stored, ``replayed``), and its activation row when deferred."""

    record: DecisionCreate
    replayed: bool
    activation: Activation | None = None
    write_seconds: float = 0.0
    """How long the durable write took (0 for a replay, which writes nothing)."""


def _made(record: DecisionCreate, until: datetime | None, writing: float) -> DecisionOutput:
    """The answer for ``record``, newly written (deferred until ``until``), whose write began at
    ``writing`` (``time.perf_counter``)."""
    activation = None if until is None else Activation(record.decision_id, until, None)
    return DecisionOutput(
        record=record,
        replayed=False,
        activation=activation,
        write_seconds=time.perf_counter() - writing,
    )


class DecisionService:
    """Decides with exploration and records the decision before returning it."""

    def __init__(
        self,
        *,
        scorer: Scorer,
        policy: Policy,
        history_limit: int = 200,
        arm: str | None = None,
        experiment: LiveExperiment | None = None,
        writer: BatchWriter | None = None,
    ) -> None:
        """``experiment``: serve each user through their arm's scorer and policy (an arm's
        service records ``arm`` on its decisions); None serves everyone with ``scorer``.
        ``writer``: record decisions through this batch writer (group commit, durable before
        ``decide`` returns); None: one transaction per decision in the caller's session."""
        self.scorer = scorer
        self.policy = policy
        self.history_limit = history_limit
        self.arm = arm
        self.experiment = experiment
        self.writer = writer
        self._arms = {
            name: DecisionService(
                scorer=live.scorer,
                policy=live.policy,
                history_limit=history_limit,
                arm=live.label,
                writer=writer,
            )
            for name, live in (experiment.arms.items() if experiment else ())
        }

    def candidates_for(
        self, request: DecisionInput, when: datetime, history: History | None = None
    ) -> np.ndarray:
        """The candidates the decision scores (:mod:`loop.retrieval`): the client's when given;
        for a search, lexical matches of the query and the scorer's top (personal when the
        user's ``history`` is passed); for a title, its item-embedding neighbours; else every
        available item."""
        return candidates_for_request(
            self.scorer, request.context, request.candidates, when, history=history
        )

    @staticmethod
    def load_stored(
        engine: Engine, decision_id: str
    ) -> tuple[DecisionCreate, Activation | None] | None:
        """The stored decision ``decision_id`` and its activation row, read in a session of its
        own (blocking), or None when it is not stored."""
        with Session(engine) as session:
            stored = get_decision(session=session, decision_id=decision_id)
            if stored is None:
                return None
            return stored, get_activation(session=session, decision_id=decision_id)

    @classmethod
    def _replayed(
        cls, session: Session, stored: DecisionCreate, request: DecisionInput
    ) -> DecisionOutput:
        """The stored decision, when ``request`` replays it (else ``ConflictError``)."""
        activation = get_activation(session=session, decision_id=stored.decision_id)
        return cls._replayed_found((stored, activation), request)

    def build_record(
        self,
        request: DecisionInput,
        decision_id: str,
        now: datetime,
        candidates: np.ndarray,
        history: History,
    ) -> DecisionCreate:
        """Score ``candidates`` for ``request`` with the user's ``history``, sample the slate
        (seeded by ``decision_id``) and build the decision record, held once to the log's rules
        (:func:`proplog.validation.validate_decision`, which raises ``LogValidationError``
        naming the field), so that it is written without another validation."""
        context = request.context
        scoring = context.score_request(when=now, history=history)
        scores = self.scorer.score([scoring], [candidates])[0]
        slate = self.policy.decide(scores, request.k, rng_for_decision(decision_id))
        exact = slate.marginals_exact
        # Each column once as Python values (``tolist``: ints, floats and bools, as the log
        # stores them), rather than one numpy scalar conversion per value.
        columns = zip(
            candidates[slate.indices].tolist(),
            np.asarray(slate.scores, dtype=np.float64).tolist(),
            np.asarray(slate.propensity, dtype=np.float64).tolist() if exact else repeat(None),
            np.asarray(slate.cond_propensity, dtype=np.float64).tolist(),
            np.asarray(slate.prefix_propensity, dtype=np.float64).tolist(),
            np.asarray(slate.explored, dtype=bool).tolist(),
            strict=False,
        )
        # The record without pydantic's pass over its thousands of candidate values (every
        # value above already has its type; each slate position is still validated), then held
        # to the log's rules by the same check as the constructor's validator.
        record = DecisionCreate.model_construct(
            decision_id=decision_id,
            created_at=now,
            **context.record_fields(),
            policy_name=self.policy.name,
            policy_version=self.policy.version,
            model_version=self.scorer.model_version,
            exploration=slate.exploration or self.policy.params(),
            marginals_exact=exact,
            arm=self.arm,
            candidate_ids=candidates.tolist(),
            candidate_scores=np.asarray(scores, dtype=np.float64).tolist(),
            slate=[
                SlateItemCreate(
                    position=k,
                    item_id=item,
                    score=score,
                    propensity=propensity,
                    cond_propensity=cond,
                    prefix_propensity=prefix,
                    explored=explored,
                )
                for k, (item, score, propensity, cond, prefix, explored) in enumerate(columns)
            ],
        )
        validate_decision(record)
        return record

    def decide(
        self,
        *,
        session: Session,
        request: DecisionInput,
        now: datetime,
        activation_window: timedelta = timedelta(seconds=DEFAULT_ACTIVATION_SECONDS),
    ) -> DecisionOutput:
        """Decide for ``request`` at time ``now`` (aware UTC) and record it; a deferred request
        must be activated before ``now + activation_window`` to count as shown.

        A ``decision_id`` that is already stored returns the stored decision unchanged
        (``replayed=True``) when the request is the same: retries are safe, and nothing is
        decided twice. A request that differs from it raises ``ConflictError`` naming the first
        field that differs (``check_replay``), so a decision id cannot read another request's
        decision.
        """
        if self.experiment is not None:
            arm = self._arms[self.experiment.arm_for(request.context.user_id).settings.name]
            return arm.decide(
                session=session, request=request, now=now, activation_window=activation_window
            )
        if activation_window <= timedelta(0):
            raise ValueError(f"activation_window must be positive; got {activation_window}")
        decision_id = str(uuid.UUID(request.decision_id)) if request.decision_id else None
        if decision_id is not None:
            stored = get_decision(session=session, decision_id=decision_id)
            if stored is not None:
                return self._replayed(session, stored, request)
        decision_id = decision_id or time_ordered_uuid(now)
        events = user_history(
            session=session, user_id=request.context.user_id, before=now, limit=self.history_limit
        )
        user_history_ = history_from_events(events)
        # the history first: the scorer's share of a search's candidates is the user's own
        candidates = self.candidates_for(request, now, user_history_)
        record = self.build_record(request, decision_id, now, candidates, user_history_)
        until = now + activation_window if request.deferred else None
        writing = time.perf_counter()
        try:  # the constructor validated the record: it is written without a second validation
            if self.writer is not None:
                future = self.writer.submit_validated(record, deferred_until=until)
                created = future.result().created
            else:
                written, _ = record_validated_batch(
                    session=session, decisions=[record], events=[], deferred_until=[until]
                )
                created = written[0].created
        except ConflictError:
            created = False
        if not created:
            # A concurrent request with the same id won the race: answer with what is stored.
            stored = get_decision(session=session, decision_id=decision_id)
            assert stored is not None
            return self._replayed(session, stored, request)
        return _made(record, until, writing)

    async def decide_async(
        self,
        *,
        engine: Engine,
        request: DecisionInput,
        now: datetime,
        run_blocking: RunBlocking,
        history: HistoryCache | None = None,
        activation_window: timedelta = timedelta(seconds=DEFAULT_ACTIVATION_SECONDS),
    ) -> DecisionOutput:
        """:meth:`decide` for an event loop: the same decision, record and answers.

        The CPU work runs inline. The blocking reads (the replay lookup of a client's
        ``decision_id``, the user's history on a miss of ``history``, the stored decision after
        a lost race) and, without a batch writer, the write, go through ``run_blocking``, each
        in a session of its own; with the batch writer, the write awaits its future
        (``asyncio.wrap_future``). ``history``: the worker's cache of recent histories
        (:mod:`loop.history_cache`); None reads the log each time."""
        if self.experiment is not None:
            arm = self._arms[self.experiment.arm_for(request.context.user_id).settings.name]
            return await arm.decide_async(
                engine=engine, request=request, now=now, run_blocking=run_blocking,
                history=history, activation_window=activation_window,
            )  # fmt: skip
        if activation_window <= timedelta(0):
            raise ValueError(f"activation_window must be positive; got {activation_window}")
        decision_id = str(uuid.UUID(request.decision_id)) if request.decision_id else None
        if decision_id is not None:
            found = await run_blocking(self.load_stored, engine, decision_id)
            if found is not None:
                return self._replayed_found(found, request)
        decision_id = decision_id or time_ordered_uuid(now)
        user_history_ = await self._history(engine, request.context.user_id, now, run_blocking,
                                            history)  # fmt: skip
        candidates = self.candidates_for(request, now, user_history_)
        record = self.build_record(request, decision_id, now, candidates, user_history_)
        until = now + activation_window if request.deferred else None
        writing = time.perf_counter()
        try:
            if self.writer is not None:
                future = self.writer.submit_validated(
                    record, deferred_until=until, new_key=request.decision_id is None
                )
                created = (await asyncio.wrap_future(future)).created
            else:
                created = await run_blocking(_write_one, engine, record, until)
        except ConflictError:
            created = False
        if not created:
            # A concurrent request with the same id won the race: answer with what is stored.
            found = await run_blocking(self.load_stored, engine, decision_id)
            assert found is not None
            return self._replayed_found(found, request)
        return _made(record, until, writing)

    async def _history(
        self,
        engine: Engine,
        user_id: str,
        now: datetime,
        run_blocking: RunBlocking,
        cache: HistoryCache | None,
    ) -> History:
        if self.history_limit == 0:
            return history_from_events(())
        if cache is None or cache.limit != self.history_limit:
            events = await run_blocking(_read_history, engine, user_id, now, self.history_limit)
            return history_from_events(events)
        cached = cache.get(user_id, now)
        if cached is not None:
            return cached
        load = cache.begin_load(user_id)
        try:
            events = cache.read_here(user_id, now)  # on the loop, where that costs less
            if events is None:
                events = await run_blocking(cache.read, engine, user_id, now)
        except BaseException:
            cache.abandon(user_id, load)
            raise
        return cache.put(user_id, now, events, load)

    @staticmethod
    def _replayed_found(
        found: tuple[DecisionCreate, Activation | None], request: DecisionInput
    ) -> DecisionOutput:
        """The stored decision and its activation row, when ``request`` replays it (else
        ``ConflictError``)."""
        stored, activation = found
        check_replay(stored, request, deferred=activation is not None)
        return DecisionOutput(record=stored, replayed=True, activation=activation)


def _read_history(engine: Engine, user_id: str, before: datetime, limit: int) -> list[Any]:
    with Session(engine) as session:
        return user_history(session=session, user_id=user_id, before=before, limit=limit)


def _write_one(engine: Engine, record: DecisionCreate, until: datetime | None) -> bool:
    """Write one validated decision in a transaction of its own (blocking); True: created."""
    with Session(engine) as session:
        written, _ = record_validated_batch(
            session=session, decisions=[record], events=[], deferred_until=[until]
        )
        return written[0].created
