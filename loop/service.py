"""Making a decision: history → scores → slate with exact propensities → durable record.

The HTTP route, the demo and the benchmarks all decide through ``DecisionService``, so that what
is measured offline is what runs in production.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlmodel import Session

from explore import Policy, rng_for_decision
from fm_core import Scorer
from loop.context import RequestContext, history_from_events
from loop.experiment import LiveExperiment
from proplog.batch_writer import BatchWriter
from proplog.errors import ConflictError
from proplog.ids import time_ordered_uuid
from proplog.schema import DecisionCreate, SlateItemCreate
from proplog.store import get_decision, record_validated_batch, user_history

logger = logging.getLogger(__name__)


class UnknownCandidatesError(ValueError):
    """The request named candidate item ids the catalog does not know."""

    def __init__(self, item_ids: list[int]) -> None:
        self.item_ids = item_ids
        super().__init__(f"candidates contains unknown item ids: {item_ids[:10]}")


class NoCandidatesError(ValueError):
    """No candidate is available for the request."""


@dataclass(frozen=True)
class DecisionInput:
    """What a product service asks for: a slate of ``k`` for the request ``context``, out of
    ``candidates`` (None: every title the catalog has available), under the idempotency key
    ``decision_id`` (None: the service makes one)."""

    context: RequestContext
    k: int
    decision_id: str | None = None
    candidates: tuple[int, ...] | None = None


def check_replay(stored: DecisionCreate, request: DecisionInput) -> None:
    """Raise ``ConflictError`` when ``request`` is not the request ``stored`` answered: its
    context fields, its ``k`` (a stored slate shorter than k only when the candidates ran out),
    and its candidate list when it gave one."""
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


@dataclass(frozen=True)
class DecisionOutput:
    record: DecisionCreate
    replayed: bool


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

    def candidates_for(self, request: DecisionInput, when: datetime) -> np.ndarray:
        catalog = self.scorer.catalog
        if request.candidates is None:
            candidates = catalog.available(when.timestamp())
        else:
            candidates = np.asarray(request.candidates, dtype=np.int64)
            unknown = candidates[~catalog.known(candidates)]
            if unknown.size:
                raise UnknownCandidatesError([int(i) for i in unknown])
        if candidates.size == 0:
            raise NoCandidatesError("no candidate item is available for this request")
        return candidates

    def decide(self, *, session: Session, request: DecisionInput, now: datetime) -> DecisionOutput:
        """Decide for ``request`` at time ``now`` (aware UTC) and record it.

        A ``decision_id`` that is already stored returns the stored decision unchanged
        (``replayed=True``) when the request is the same: retries are safe, and nothing is
        decided twice. A request that differs from it raises ``ConflictError`` naming the first
        field that differs (``check_replay``), so a decision id cannot read another request's
        decision.
        """
        if self.experiment is not None:
            arm = self._arms[self.experiment.arm_for(request.context.user_id).settings.name]
            return arm.decide(session=session, request=request, now=now)
        decision_id = str(uuid.UUID(request.decision_id)) if request.decision_id else None
        if decision_id is not None:
            stored = get_decision(session=session, decision_id=decision_id)
            if stored is not None:
                check_replay(stored, request)
                return DecisionOutput(record=stored, replayed=True)
        decision_id = decision_id or time_ordered_uuid(now)
        candidates = self.candidates_for(request, now)
        events = user_history(
            session=session, user_id=request.context.user_id, before=now, limit=self.history_limit
        )
        context = request.context
        scoring = context.score_request(when=now, history=history_from_events(events))
        scores = self.scorer.score([scoring], [candidates])[0]
        slate = self.policy.decide(scores, request.k, rng_for_decision(decision_id))
        record = DecisionCreate(
            decision_id=decision_id,
            created_at=now,
            **context.record_fields(),
            policy_name=self.policy.name,
            policy_version=self.policy.version,
            model_version=self.scorer.model_version,
            exploration=slate.exploration or self.policy.params(),
            marginals_exact=slate.marginals_exact,
            arm=self.arm,
            candidate_ids=candidates.tolist(),  # Python ints and floats, ten times faster
            candidate_scores=np.asarray(scores, dtype=np.float64).tolist(),  # than a loop
            slate=[
                SlateItemCreate(
                    position=k,
                    item_id=int(candidates[slate.indices[k]]),
                    score=float(slate.scores[k]),
                    propensity=float(slate.propensity[k]) if slate.marginals_exact else None,
                    cond_propensity=float(slate.cond_propensity[k]),
                    prefix_propensity=float(slate.prefix_propensity[k]),
                    explored=bool(slate.explored[k]),
                )
                for k in range(len(slate))
            ],
        )
        try:  # the constructor validated the record: it is written without a second validation
            if self.writer is not None:
                created = self.writer.submit_validated(record).result().created
            else:
                written, _ = record_validated_batch(session=session, decisions=[record], events=[])
                created = written[0].created
        except ConflictError:
            created = False
        if not created:
            # A concurrent request with the same id won the race: answer with what is stored.
            stored = get_decision(session=session, decision_id=decision_id)
            assert stored is not None
            check_replay(stored, request)
            return DecisionOutput(record=stored, replayed=True)
        return DecisionOutput(record=record, replayed=False)
