"""Service settings from the environment (prefix ``LOOPBREAK_``) or the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from explore import Policy, make_policy
from loop.experiment import ExperimentSettings
from loop.online_learning import LearnerConfig
from proplog.engine import DEFAULT_DATABASE_URL


class Settings(BaseSettings):
    """Everything the API needs to start. ``database_url`` may hold a password: it is never
    logged except through ``safe_database_url``."""

    model_config = SettingsConfigDict(env_prefix="LOOPBREAK_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    model_path: Path = Path("out/model.npz")
    epsilon: float = Field(default=0.1, ge=0.0, le=1.0)
    exploration_pool: int | None = Field(default=30, ge=1)
    policy: Literal[
        "epsilon_greedy", "random_insertion", "plackett_luce", "greedy", "vowpal_wabbit"
    ] = "epsilon_greedy"
    """The serving policy; ``vowpal_wabbit``: VW ``cb_explore_adf`` (:mod:`explore.vw_policy`)
    over the scores, with exact sequential propensities, learning online from the log
    (:mod:`loop.online_learning`) with the ``vw_`` settings below and ``epsilon``."""
    vw_exploration: Literal["squarecb", "epsilon", "bag", "cover"] = "squarecb"
    """VW's exploration: SquareCB (``vw_gamma_scale``), ε-greedy (``epsilon``), bagging
    (``vw_bag`` policies, ``epsilon``) or online cover (``vw_cover`` policies, ``epsilon``)."""
    vw_gamma_scale: float = Field(default=10.0, gt=0.0)
    vw_bag: int = Field(default=5, ge=1, le=64)
    vw_cover: int = Field(default=5, ge=1, le=64)
    vw_model_path: Path | None = None
    """A saved VW model to start from; None starts a fresh model, which first learns the log's
    earlier decisions of this policy."""
    vw_learn: bool = True
    """Learn from the decisions served and their plays; false serves the model as it is."""
    vw_learn_seconds: float = Field(default=2.0, gt=0.0, le=3600.0)
    """How often (seconds) the learner reads the log."""
    vw_reward_wait_seconds: float = Field(default=30.0, ge=0.0, le=86_400.0)
    """How long (seconds) after a decision its plays are awaited before it is learned (a play
    that comes later is not learned)."""
    vw_learn_all_positions: bool = False
    """Learn every position of a slate (each with its conditional propensity), not only the
    first: K times the examples, and K times the learning cost."""
    vw_learn_share: float = Field(default=1.0, gt=0.0, le=1.0)
    """The share of decisions learned, by a hash of the decision id: learning costs about 4 ms
    per example with 1,000 candidates, so a busy service learns a sample."""
    temperature: float = Field(default=0.05, gt=0.0)
    uniform_mix: float = Field(default=0.0, ge=0.0, le=1.0)
    exploration_budget: float | None = Field(default=None, ge=0.0)
    propensity_floor: float = Field(default=0.0, ge=0.0, lt=1.0)
    max_k: int = Field(default=50, ge=1, le=500)
    history_limit: int = Field(default=200, ge=0)
    activation_seconds: float = Field(default=3600.0, gt=0.0)
    """How long a deferred decision (``"deferred": true``) may wait for ``POST
    /v1/decisions/{decision_id}/activate``; one not activated by then never counts as shown
    (:mod:`proplog.activation`)."""
    group_commit: bool = True
    """Write decisions and events through one batch writer per worker, which commits what
    concurrent requests hand it in one durable transaction; a request still answers only once
    its record is on disk. False: one transaction per request. In-memory SQLite always writes
    directly (its one connection cannot be shared with a writer thread)."""
    group_commit_wait_ms: float = Field(default=0.0, ge=0.0, le=100.0)
    """How long a batch waits for more records after its first one (0: it takes what is queued
    and commits at once; batches still grow under load, while the previous commit runs)."""
    checkpoint_interval_ms: float = Field(default=200.0, ge=0.0, le=60_000.0)
    """On a SQLite file, how often (ms) a thread of the worker checkpoints the write-ahead log,
    so that the batch writer's commits never do (:mod:`proplog.wal_checkpoints`); 0 leaves
    checkpoints to SQLite, inside the commit that passes 1,000 WAL pages."""
    reload_seconds: float = Field(default=5.0, ge=0.0)
    """How often (seconds) a running app reads the log's production model version
    (``loopbreak models promote``/``rollback``) and, when it changed, loads that version's file
    off the request path and swaps it in; 0 turns hot reload off."""
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    """The largest request body (bytes) the service reads (1 MiB: a decision with the most
    candidates a request may carry, 10,000 ids of up to 19 digits, is about 220 kB); a larger
    one is refused with 413 before it is parsed (:mod:`api.body_limit`)."""
    db_timeout_seconds: float = Field(default=3.0, gt=0.0, le=60.0)
    """How long a request waits for the database (SQLite's busy timeout behind another
    writer's lock; PostgreSQL's connect and pool timeouts) before it is answered 503 with
    ``Retry-After`` (:mod:`api.errors`)."""
    auth: bool = True
    """Refuse requests without an API key of the route's scope (:mod:`api.auth`); false serves
    everyone without keys (only behind a private network), with a loud warning at start."""
    key_cache_seconds: float = Field(default=5.0, ge=0.0, le=3600.0)
    """How long a verified API key is trusted without reading the log again (so a revocation
    takes effect within this time); 0 reads the log on every request."""
    max_in_flight: int = Field(default=64, ge=1, le=10_000)
    """Requests under ``/v1/`` served at once by one worker (:mod:`api.admission`); a request that
    finds every slot taken waits at most ``queue_timeout_ms`` for one, else it is answered 503
    ``overloaded`` with ``Retry-After``. 64 is about 100 ms of decisions of 1,000 candidates on one
    core: more in flight only lengthens every request's wait."""
    queue_timeout_ms: float = Field(default=100.0, ge=0.0, le=60_000.0)
    """How long (milliseconds) a request waits for a slot before it is shed with 503. 100 ms: long
    enough to ride out a burst (the slots turn over about once in that time at full load), short
    enough that a shed client learns it within a tenth of a second and its retry (or another
    replica) is answered well inside a usual 1 s client timeout."""
    history_cache_seconds: float = Field(default=5.0, ge=0.0, le=3600.0)
    """How long a user's history, read from the log, is trusted by this worker
    (:mod:`loop.history_cache`): events this worker writes are in it at once; events written by
    another worker or process are seen within this bound. 0 reads the log on every decision."""
    history_cache_users: int = Field(default=100_000, ge=1)
    """Users whose recent history one worker keeps (least recently used first out)."""
    db_threads: int = Field(default=8, ge=1, le=64)
    """Threads for the blocking reads and writes left on the request path (the replay lookup of
    a client's decision_id, a history cache miss, activation, API key checks, writes without the
    batch writer); each holds one pooled connection only while its read or write runs."""
    switch_interval_ms: float | None = Field(default=None, gt=0.0, le=100.0)
    """How long (milliseconds) a worker's thread may hold Python's interpreter lock while another
    waits for it (``sys.setswitchinterval``; None keeps Python's 5 ms). The batch writer's and
    the database threads' results reach the event loop only once they get the lock back, so
    under load each handover can add up to this much to a request's latency."""
    torch_threads: int = Field(default=1, ge=0, le=256)
    """CPU threads of a served foundation model's torch operations, per worker
    (:mod:`fm_core.serving_threads`); 0 keeps torch's default (one per core), which on a busy
    worker costs more CPU per decision than it saves in time."""
    experiment: ExperimentSettings | None = None
    """An A/B experiment (``LOOPBREAK_EXPERIMENT`` as JSON); None serves everyone alike."""

    @field_validator("database_url")
    @classmethod
    def _parsable_url(cls, value: str) -> str:
        try:
            make_url(value)
        except Exception as exc:  # sqlalchemy raises ArgumentError with the reason
            raise ValueError(
                f"database_url must be a SQLAlchemy URL; got an unparsable value ({exc})"
            ) from None
        return value

    def exploration_policy(self) -> Policy:
        """The serving policy. With ``exploration_budget`` (relative, e.g. 0.005) its exploration
        is calibrated per request within the budget and ``propensity_floor`` (not for
        ``vowpal_wabbit``, whose exploration is VW's own)."""
        if self.policy == "vowpal_wabbit":
            if self.exploration_budget is not None:
                raise ValueError(
                    "exploration_budget does not apply to the vowpal_wabbit policy: its "
                    "exploration is set by vw_exploration and its parameters"
                )
            from explore.vw_policy import VowpalWabbitSlate

            return VowpalWabbitSlate(
                exploration=self.vw_exploration,
                epsilon=self.epsilon,
                gamma_scale=self.vw_gamma_scale,
                bag=self.vw_bag,
                cover=self.vw_cover,
                model_path=self.vw_model_path,
            )
        return make_policy(
            self.policy,
            epsilon=self.epsilon,
            pool=self.exploration_pool,
            temperature=self.temperature,
            uniform_mix=self.uniform_mix,
            budget=self.exploration_budget,
            floor=self.propensity_floor,
        )

    def online_learning(self) -> LearnerConfig | None:
        """How the served VW policy learns from the log; None when it does not learn."""
        if self.policy != "vowpal_wabbit" or not self.vw_learn:
            return None
        return LearnerConfig(
            poll_seconds=self.vw_learn_seconds,
            reward_wait_seconds=self.vw_reward_wait_seconds,
            all_positions=self.vw_learn_all_positions,
            learn_share=self.vw_learn_share,
        )

    @property
    def safe_database_url(self) -> str:
        return make_url(self.database_url).render_as_string(hide_password=True)
