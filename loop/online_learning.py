"""Online learning of the served Vowpal Wabbit policy from the log: what it decided, what was
played.

:class:`OnlineLearner` polls the log every ``poll_seconds`` (a daemon thread, started by the
API's lifespan through :func:`start_online_learning`) for the decisions of the served VW policy
(its ``policy_name`` and ``policy_version``, no experiment arm) whose **reward window** has
closed: made at least ``reward_wait_seconds`` ago. Each such decision is learned once, with the
``rec`` plays that name it:

- the features are exactly those the decision was made with: ``DecisionService`` decides through
  the ``Policy`` interface (``VowpalWabbitSlate.decide(scores, k, rng)``), whose features are the
  candidates' scores alone with an empty shared context, and the log keeps those scores
  (``candidate_scores``) in the candidate order (:func:`logged_slate`);
- the action is the logged slate item; its cost is −1 when a ``rec`` play of that decision names
  that item (by ``item_id``: a play may come without its position) and 0 otherwise;
- the probability is the logged ``cond_propensity`` π(a_k | a_1..a_{k-1}, x): the exact
  probability of that choice among the candidates not shown above it, which is what VW's
  ``cb_adf`` IPS and DR estimators expect (:func:`explore.vw_format.slate_examples`). With
  ``all_positions`` every position is one example, else position 0 only (the default);
- a deferred decision not activated when its window closes was not shown (or too late to
  learn from): it is skipped.

Learning from the window's decisions, not from each play as it arrives, is deliberate: a
decision without a play is a cost-0 example that VW needs as much as the plays (learning from
plays alone would teach it that everything it shows is played). A play that arrives after its
decision was learned is not learned: choose ``reward_wait_seconds`` above the usual delay from a
slate to its play (as Azure Personalizer's "reward wait time" does).

**Never twice.** The learner keeps a watermark, the (``created_at``, ``decision_id``) of the last
decision it learned, and reads only decisions after it, in that order. Decisions are stamped with
the server's clock when they are decided and committed within the request, so a decision older
than the reward window cannot appear behind the watermark later unless a commit takes longer than
the window. A fresh policy starts from the beginning of the log (it replays what the policy
served before a restart, which a fresh model has not learned); a policy loaded from a saved model
(``vw_model_path``) starts at the learner's start time, since the log cannot say what the file
already holds.

**The model state in the log.** ``VowpalWabbitSlate.params()["updates"]`` (examples learned since
its model file, or since it was created) is in every decision's ``exploration``, so a decision
can be replayed (``slate_probability_with``) against the model in the state it was sampled from.

**What it costs.** VW learns one ``cb_adf`` example in about 4 ms with 1,000 candidates and
0.4 ms with 100 (measured on this project's 2-core machine), in the serving process and under
Python's GIL, so one core learns about 250 decisions/s of 1,000 candidates at position 0, and a
K-slot slate learned at every position costs K times that. Above that rate ``learn_share`` learns a
fixed share of the decisions, chosen by a hash of the decision id (independent of what happened,
so the sample stays unbiased); the rest are passed over by the watermark. Without it, the learner
falls behind and its lag grows (logged at each poll).

**Several workers.** Each worker process (``loopbreak serve --workers N``) holds its own VW
workspace and its own learner, and each learns alone from the whole log (all workers' decisions),
in the same order: they see the same examples and so converge to the same model, but at any
moment they may be a poll apart, and ``updates`` is counted per process. No model is shared
between processes or saved by the learner.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine, Table, and_, or_, select

from explore.vw_format import ActionFeatures, LoggedSlate, RequestContext
from explore.vw_policy import VowpalWabbitSlate
from proplog.engine import shares_one_connection
from proplog.schema import Decision, DecisionActivation, Event, SlateItem

logger = logging.getLogger(__name__)

_DECISION: Table = Decision.__table__  # type: ignore[attr-defined]
_SLATE: Table = SlateItem.__table__  # type: ignore[attr-defined]
_EVENT: Table = Event.__table__  # type: ignore[attr-defined]
_ACTIVATION: Table = DecisionActivation.__table__  # type: ignore[attr-defined]

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class LearnerConfig:
    """How the served VW policy learns from the log.

    Attributes:
        poll_seconds: how often the log is read.
        reward_wait_seconds: how long after a decision its plays are awaited before it is learned.
        all_positions: learn every slate position (True) or position 0 only.
        learn_share: the share of decisions learned, by a hash of the decision id (1: all).
        batch_decisions: the most decisions read per query (a poll reads until none is left).
    """

    poll_seconds: float = 2.0
    reward_wait_seconds: float = 30.0
    all_positions: bool = False
    learn_share: float = 1.0
    batch_decisions: int = 500

    def __post_init__(self) -> None:
        if not self.poll_seconds > 0:
            raise ValueError(f"poll_seconds must be > 0; got {self.poll_seconds}")
        if self.reward_wait_seconds < 0:
            raise ValueError(f"reward_wait_seconds must be >= 0; got {self.reward_wait_seconds}")
        if not 0.0 < self.learn_share <= 1.0:
            raise ValueError(f"learn_share must be in (0, 1]; got {self.learn_share}")
        if self.batch_decisions < 1:
            raise ValueError(f"batch_decisions must be >= 1; got {self.batch_decisions}")


def sampled(decision_id: str, share: float) -> bool:
    """Whether the decision is in the learned share: a hash of its id, not its outcome."""
    return share >= 1.0 or zlib.crc32(decision_id.encode()) < share * 2**32


def logged_slate(decision: Any, shown: Sequence[Any], played_items: set[int]) -> LoggedSlate | None:
    """The VW example of one logged decision with the features it was decided with (the
    candidates' scores, an empty shared context), or None when its slate is empty.

    ``decision``: a row with ``decision_id``, ``candidate_ids``, ``candidate_scores``; ``shown``:
    its slate rows (``position``, ``item_id``, ``cond_propensity``) in position order;
    ``played_items``: the items of its slate that a ``rec`` play names.
    """
    if not shown:
        return None
    index = {int(item): i for i, item in enumerate(decision.candidate_ids)}
    return LoggedSlate(
        context=RequestContext(),
        actions=ActionFeatures(scores=np.asarray(decision.candidate_scores, dtype=np.float64)),
        chosen=np.array([index[int(row.item_id)] for row in shown], dtype=np.int64),
        cond_propensity=np.array([row.cond_propensity for row in shown], dtype=np.float64),
        reward=np.array([float(int(row.item_id) in played_items) for row in shown]),
        decision_id=str(decision.decision_id),
    )


class OnlineLearner:
    """Learns the VW ``policy`` from the decisions it served, read from ``engine``'s log."""

    def __init__(
        self,
        policy: VowpalWabbitSlate,
        engine: Engine,
        config: LearnerConfig | None = None,
        *,
        since: datetime | None = None,
        clock: Clock = _utc_now,
    ) -> None:
        """``since``: learn only decisions made at or after it (None: the whole log)."""
        self.policy = policy
        self.engine = engine
        self.config = config or LearnerConfig()
        self.clock = clock
        self.watermark: tuple[datetime, str] | None = None
        self._since = since
        self.decisions_learned = 0
        self.examples_learned = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._poll_lock = threading.Lock()

    # -- reading the log -----------------------------------------------------------------------

    def _after_watermark(self, cutoff: datetime) -> Any:
        d = _DECISION.c
        query = select(d.decision_id, d.created_at, d.candidate_ids, d.candidate_scores).where(
            d.policy_name == self.policy.name,
            d.policy_version == self.policy.version,
            d.arm.is_(None),
            d.created_at <= cutoff,
        )
        if self._since is not None:
            query = query.where(d.created_at >= self._since)
        if self.watermark is not None:
            at, decision_id = self.watermark
            query = query.where(
                or_(d.created_at > at, and_(d.created_at == at, d.decision_id > decision_id))
            )
        return query.order_by(d.created_at, d.decision_id).limit(self.config.batch_decisions)

    def _read_batch(self, cutoff: datetime) -> Iterator[tuple[Any, LoggedSlate | None]]:
        """The next batch of decisions after the watermark, each with its example (None: not
        to learn: never shown)."""
        s, e, a = _SLATE.c, _EVENT.c, _ACTIVATION.c
        with self.engine.connect() as conn:
            decisions = conn.execute(self._after_watermark(cutoff)).all()
            if not decisions:
                return
            ids = [row.decision_id for row in decisions]
            slates: dict[str, list[Any]] = {i: [] for i in ids}
            for row in conn.execute(
                select(s.decision_id, s.position, s.item_id, s.cond_propensity)
                .where(s.decision_id.in_(ids))
                .order_by(s.decision_id, s.position)
            ):
                slates[row.decision_id].append(row)
            played: dict[str, set[int]] = {i: set() for i in ids}
            for row in conn.execute(
                select(e.decision_id, e.item_id).where(
                    e.decision_id.in_(ids), e.source == "rec", e.kind == "play"
                )
            ):
                played[row.decision_id].add(int(row.item_id))
            unshown = {
                row.decision_id
                for row in conn.execute(
                    select(a.decision_id).where(a.decision_id.in_(ids), a.activated_at.is_(None))
                )
            }
        for row in decisions:
            if row.decision_id in unshown or not sampled(row.decision_id, self.config.learn_share):
                yield row, None
            else:
                yield row, logged_slate(row, slates[row.decision_id], played[row.decision_id])

    # -- learning ------------------------------------------------------------------------------

    def poll_once(self) -> int:
        """Learn every decision whose reward window has closed since the last poll; returns the
        number of decisions learned."""
        with self._poll_lock:
            now = self.clock()
            cutoff = now - timedelta(seconds=self.config.reward_wait_seconds)
            learned = 0
            while True:
                batch = list(self._read_batch(cutoff))
                if not batch:
                    break
                examples = [example for _, example in batch if example is not None]
                self.examples_learned += self.policy.learn_logged(
                    examples, all_positions=self.config.all_positions
                )
                last = batch[-1][0]
                self.watermark = (last.created_at, str(last.decision_id))
                learned += len(examples)
                if len(batch) < self.config.batch_decisions:
                    break
            self.decisions_learned += learned
            if learned:
                behind = (now - self.watermark[0]).total_seconds() if self.watermark else 0.0
                logger.info(
                    "VW policy learned %d decisions (%d examples in all; %d updates); the last "
                    "learned was made %.1f s ago",
                    learned,
                    self.examples_learned,
                    self.policy.updates_,
                    behind,
                )
            return learned

    # -- the background thread -----------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.config.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # a database outage must not end learning for good
                logger.exception(
                    "online learning poll failed; retrying in %g s", self.config.poll_seconds
                )

    def start(self) -> OnlineLearner:
        """Poll in a daemon thread every ``poll_seconds`` until :meth:`stop`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vw-online-learner", daemon=True)
            self._thread.start()
            logger.info(
                "online learning of %s %s: every %g s, rewards awaited %g s",
                self.policy.name,
                self.policy.version,
                self.config.poll_seconds,
                self.config.reward_wait_seconds,
            )
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling (a poll in progress finishes its current example first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


class _NotLearning:
    """What :func:`start_online_learning` returns when nothing is to learn."""

    def stop(self, timeout: float = 5.0) -> None:
        return None


def start_online_learning(
    policy: object, engine: Engine, config: LearnerConfig | None
) -> OnlineLearner | _NotLearning:
    """Start learning ``policy`` from ``engine``'s log when it is a VW policy and ``config`` is
    given; otherwise (or on an in-memory SQLite log, whose one connection the requests use)
    a stand-in whose ``stop`` does nothing. Either way the caller stops it."""
    if not isinstance(policy, VowpalWabbitSlate) or config is None:
        return _NotLearning()
    if shares_one_connection(engine):
        logger.warning("online learning off: an in-memory database has one connection")
        return _NotLearning()
    since = None if policy.params()["model"] is None else _utc_now()
    return OnlineLearner(policy, engine, config, since=since).start()
