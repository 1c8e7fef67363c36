"""Service settings from the environment (prefix ``LOOPBREAK_``) or the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from explore import Policy, make_policy
from loop.experiment import ExperimentSettings
from proplog.engine import DEFAULT_DATABASE_URL


class Settings(BaseSettings):
    """Everything the API needs to start. ``database_url`` may hold a password: it is never
    logged except through ``safe_database_url``."""

    model_config = SettingsConfigDict(env_prefix="LOOPBREAK_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    model_path: Path = Path("out/model.npz")
    epsilon: float = Field(default=0.1, ge=0.0, le=1.0)
    exploration_pool: int | None = Field(default=30, ge=1)
    policy: Literal["epsilon_greedy", "random_insertion", "plackett_luce", "greedy"] = (
        "epsilon_greedy"
    )
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
        is calibrated per request within the budget and ``propensity_floor``."""
        return make_policy(
            self.policy,
            epsilon=self.epsilon,
            pool=self.exploration_pool,
            temperature=self.temperature,
            uniform_mix=self.uniform_mix,
            budget=self.exploration_budget,
            floor=self.propensity_floor,
        )

    @property
    def safe_database_url(self) -> str:
        return make_url(self.database_url).render_as_string(hide_password=True)
