"""The SQLModel schema of the propensity log: input models and tables.

Owns two families:

- input models (pydantic, not tables): :class:`SlateItemCreate`, :class:`DecisionCreate`,
  :class:`EventCreate`. Their ``model_validator`` runs the rules of :mod:`proplog.validation`.
  They are plain pydantic models rather than SQLModel ones: the store validates every record it
  is given, and a decision with 20 slate items validates in about 90 µs as pydantic models
  against about 210 µs as SQLModel non-table models (measured on this project's CPU machine).
- tables: ``decision``, ``slate_item``, ``event``, ``model_version``, ``policy``, ``ope_report``,
  ``model_promotion`` (one row per promotion or rollback of the production model),
  ``catalog_item`` (the titles loaded by ``loopbreak catalog load``, one row per item id),
  ``decision_activation`` (a deferred decision's activation deadline and time), ``api_key``
  (:mod:`proplog.api_keys`: the service's keys, their scopes and the SHA-256 of their secrets),
  and ``ab_plan`` and ``ab_analysis`` (:mod:`proplog.ab_records`: A/B tests' plans, and their
  analyses beside the gate's predictions).

Storage conventions:

- datetimes go through :class:`UTCDateTime`: aware UTC in and out; naive UTC in SQLite,
  ``timestamp with time zone`` in PostgreSQL. A naive datetime is refused on the way in.
- every float column is ``Double`` (IEEE double in SQLite, ``double precision`` in PostgreSQL),
  so a propensity reads back bit for bit as it was written.
- a decision's candidate ids and scores are packed arrays (:class:`PackedInt64s`,
  :class:`PackedFloat64s`): little-endian int64 / IEEE double, 8 bytes per value, in a ``BLOB``
  (SQLite) or ``bytea`` (PostgreSQL) column, read back as Python lists, bit for bit. Ids that
  are mostly consecutive (every available title) are stored as runs instead
  (:func:`pack_id_runs`), which reads back as the same list. JSON text
  would be exact too, but writing 100 scores as JSON costs about 60 µs per decision on this
  project's CPU machine against about 3 µs packed, which alone caps the log below 5,000 decisions
  per second. (Values written as JSON by earlier versions are still read.)
- the other JSON columns (``exploration``, parameters, metrics, reports) use sqlalchemy's generic
  ``JSON`` (SQLite and PostgreSQL); Python's ``json`` writes floats in their shortest round-trip
  form, so they are exact too.
- positions are 0-based; ``item_id`` (and ``source_item``) is an ``int`` in a ``BIGINT`` column
  (64-bit on PostgreSQL too, where a plain ``INTEGER`` is 32-bit); ``decision_id`` a canonical
  UUID string. A PostgreSQL log created before this change keeps its 32-bit columns:
  ``ALTER TABLE slate_item ALTER COLUMN item_id TYPE bigint`` (and the same for ``event.item_id``
  and ``decision.source_item``) upgrades it.
"""

from __future__ import annotations

import json
import sys
from array import array
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator
from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Double,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    Table,
)
from sqlalchemy.types import TypeDecorator, TypeEngine
from sqlmodel import Field, SQLModel

from proplog.validation import MAX_ID_LENGTH, validate_decision, validate_event

UUID_LENGTH = 36


class PackedFloat64s(TypeDecorator[list[float]]):
    """A list of floats stored as packed little-endian IEEE doubles (exact, 8 bytes each)."""

    impl = LargeBinary
    cache_ok = True
    typecode = "d"

    def process_bind_param(self, value: Sequence[Any] | None, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        packed = array(self.typecode, value)
        if sys.byteorder != "little":  # pragma: no cover - no big-endian machine here
            packed.byteswap()
        return packed.tobytes()

    def process_result_value(self, value: Any, dialect: Dialect) -> list[Any] | None:
        if value is None or isinstance(value, list):  # list: a JSON column of an earlier version
            return value
        if isinstance(value, str):  # JSON text written by an earlier version (SQLite)
            return list(json.loads(value))
        packed = array(self.typecode)
        packed.frombytes(bytes(value))
        if sys.byteorder != "little":  # pragma: no cover
            packed.byteswap()
        return packed.tolist()


class PackedInt64s(PackedFloat64s):
    """A list of ints in [-2**63, 2**63) stored as packed little-endian int64 (8 bytes each), or,
    when that is shorter, as runs of consecutive ids (:func:`pack_id_runs`): a decision over
    every available title lists a thousand ids that are nearly all consecutive."""

    cache_ok = True
    typecode = "q"

    def process_bind_param(self, value: Sequence[Any] | None, dialect: Dialect) -> bytes | None:
        packed = super().process_bind_param(value, dialect)
        if packed is None:
            return None
        runs = pack_id_runs(packed)
        return packed if runs is None else runs

    def process_result_value(self, value: Any, dialect: Dialect) -> list[Any] | None:
        if isinstance(value, bytes | bytearray | memoryview) and len(value) % 8 == 1:
            return unpack_id_runs(bytes(value))
        return super().process_result_value(value, dialect)


RUNS_TAG = b"\x01"
"""The first byte of a run-encoded id column; its length is then 1 + 16 × runs, so never a
multiple of 8 as a plain packed column's is: the two read back without any other marker."""


def pack_id_runs(packed: bytes) -> bytes | None:
    """``packed`` (little-endian int64s) as runs of consecutive ids: :data:`RUNS_TAG`, then
    (first id, length) as little-endian int64 pairs; None when that would not be shorter.

    1,000 candidates that are every available title but a few form a handful of runs: about
    100 bytes instead of 8,000. On SQLite that halves a decision's row (its scores stay 8 bytes
    each) and with it the write-ahead log's bytes, fsyncs and checkpoints per decision."""
    ids = np.frombuffer(packed, dtype="<i8")
    if ids.size < 3:
        return None
    step = ids[1:] - ids[:-1]
    breaks = np.flatnonzero((step != 1) | (ids[1:] < ids[:-1]))  # no int64 wrap-around run
    if 1 + 16 * (breaks.size + 1) >= len(packed):
        return None
    starts = ids[np.concatenate(([0], breaks + 1))]
    ends = ids[np.concatenate((breaks, [ids.size - 1]))]
    pairs = np.column_stack((starts, ends - starts + 1)).astype("<i8")
    return RUNS_TAG + pairs.tobytes()


def unpack_id_runs(value: bytes) -> list[int]:
    """The ids of a run-encoded column (:func:`pack_id_runs`), in their order."""
    if value[:1] != RUNS_TAG:
        raise ValueError(
            f"a packed id column must hold 8 bytes per id, or be run-encoded (first byte "
            f"{RUNS_TAG!r}); got {len(value)} bytes beginning {value[:1]!r}"
        )
    pairs = np.frombuffer(value, dtype="<i8", offset=1).reshape(-1, 2).tolist()
    out: list[int] = []
    for first, length in pairs:
        out.extend(range(first, first + length))
    return out


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime column.

    On the way in, a naive datetime raises ``ValueError`` and an aware one is converted to UTC
    (and made naive for databases that keep no time zone, such as SQLite). On the way out, UTC
    is attached again.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(DateTime(timezone=True))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime; got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused; give an aware UTC one")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# ---------------------------------------------------------------------------------------------
# Input models
# ---------------------------------------------------------------------------------------------


class SlateItemCreate(BaseModel):
    """One position of a slate. ``propensity`` is ``None`` only when marginals are not exact."""

    model_config = ConfigDict(from_attributes=True)

    position: int
    item_id: int
    score: float
    propensity: float | None
    cond_propensity: float
    prefix_propensity: float
    explored: bool


class DecisionCreate(BaseModel):
    """A decision record: the request, the candidates with scores, and the chosen slate."""

    model_config = ConfigDict(from_attributes=True)

    decision_id: str
    created_at: datetime
    user_id: str
    surface: str
    device: str | None = None
    country: str | None = None
    local_time: str | None = None
    query: str | None = None
    source_item: int | None = None
    policy_name: str
    policy_version: str
    model_version: str
    exploration: dict[str, Any]
    marginals_exact: bool
    arm: str | None = None
    candidate_ids: list[int]
    candidate_scores: list[float]
    slate: list[SlateItemCreate]

    @model_validator(mode="after")
    def _check_rules(self) -> DecisionCreate:
        validate_decision(self)
        return self


class EventCreate(BaseModel):
    """A user event (play, click, thumb, list add); attributed to a decision when from one."""

    model_config = ConfigDict(from_attributes=True)

    event_id: str
    created_at: datetime
    user_id: str
    item_id: int
    kind: str
    value: float = 0.0
    source: str
    decision_id: str | None = None
    position: int | None = None

    @model_validator(mode="after")
    def _check_rules(self) -> EventCreate:
        validate_event(self)
        return self


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------


def _probability_check(column: str, *, nullable: bool = False) -> CheckConstraint:
    rule = f"{column} > 0 AND {column} <= 1"
    if nullable:
        rule = f"{column} IS NULL OR ({rule})"
    return CheckConstraint(rule, name=f"ck_slate_item_{column}")


class Decision(SQLModel, table=True):
    """One logged decision; its slate is in ``slate_item``."""

    __tablename__ = "decision"
    __table_args__ = (
        Index("ix_decision_user_created", "user_id", "created_at"),
        Index("ix_decision_created", "created_at"),
        CheckConstraint("k >= 1", name="ck_decision_k"),
    )

    decision_id: str = Field(primary_key=True, max_length=UUID_LENGTH)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    user_id: str = Field(max_length=MAX_ID_LENGTH)
    surface: str = Field(max_length=16)
    device: str | None = None
    country: str | None = None
    local_time: str | None = None
    query: str | None = None
    source_item: int | None = Field(default=None, sa_type=BigInteger)
    policy_name: str
    policy_version: str
    model_version: str
    exploration: dict[str, Any] = Field(sa_type=JSON, nullable=False)
    marginals_exact: bool
    arm: str | None = None
    k: int
    candidate_ids: list[int] = Field(sa_type=PackedInt64s, nullable=False)
    candidate_scores: list[float] = Field(sa_type=PackedFloat64s, nullable=False)


class SlateItem(SQLModel, table=True):
    """One position (0-based) of a logged slate, with its exact propensities.

    On SQLite the table is ``WITHOUT ROWID``: its rows live in one B-tree ordered by the primary
    key (decision_id, position), instead of a rowid table plus a separate key index, which is
    one B-tree insert per slate item instead of two. (A log created before keeps its layout;
    both work.)"""

    __tablename__ = "slate_item"
    __table_args__ = (
        CheckConstraint("position >= 0", name="ck_slate_item_position"),
        _probability_check("propensity", nullable=True),
        _probability_check("cond_propensity"),
        _probability_check("prefix_propensity"),
        {"sqlite_with_rowid": False},
    )

    decision_id: str = Field(
        primary_key=True, foreign_key="decision.decision_id", max_length=UUID_LENGTH
    )
    position: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    item_id: int = Field(sa_type=BigInteger, nullable=False)
    score: float = Field(sa_type=Double, nullable=False)
    propensity: float | None = Field(default=None, sa_type=Double, nullable=True)
    cond_propensity: float = Field(sa_type=Double, nullable=False)
    prefix_propensity: float = Field(sa_type=Double, nullable=False)
    explored: bool


class Event(SQLModel, table=True):
    """One user event; ``(decision_id, position)`` points at the slate item it came from."""

    __tablename__ = "event"
    __table_args__ = (
        Index("ix_event_user_created", "user_id", "created_at"),
        Index("ix_event_created", "created_at"),
        Index("ix_event_decision_position", "decision_id", "position"),
        # MATCH SIMPLE: checked only when position is given.
        ForeignKeyConstraint(
            ["decision_id", "position"],
            ["slate_item.decision_id", "slate_item.position"],
            name="fk_event_slate_item",
        ),
        CheckConstraint("value >= 0", name="ck_event_value"),
    )

    event_id: str = Field(primary_key=True, max_length=MAX_ID_LENGTH)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    user_id: str = Field(max_length=MAX_ID_LENGTH)
    item_id: int = Field(sa_type=BigInteger, nullable=False)
    kind: str = Field(max_length=16)
    value: float = Field(default=0.0, sa_type=Double, nullable=False)
    source: str = Field(max_length=16)
    decision_id: str | None = Field(
        default=None, foreign_key="decision.decision_id", max_length=UUID_LENGTH
    )
    position: int | None = None


class DecisionActivation(SQLModel, table=True):
    """A deferred decision's activation (:mod:`proplog.activation`): written with the decision,
    it counts as shown only once ``activated_at`` is set, which must be before ``expires_at``.
    A decision without a row here was shown when it was made."""

    __tablename__ = "decision_activation"
    __table_args__ = (
        CheckConstraint(
            "activated_at IS NULL OR activated_at < expires_at",
            name="ck_decision_activation_before_expiry",
        ),
    )

    decision_id: str = Field(
        primary_key=True, foreign_key="decision.decision_id", max_length=UUID_LENGTH
    )
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    activated_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class ModelVersion(SQLModel, table=True):
    """A trained model version (FM, ranker, ...) with its parameters and metrics."""

    __tablename__ = "model_version"

    version: str = Field(primary_key=True)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    kind: str
    params: dict[str, Any] = Field(sa_type=JSON, nullable=False)
    metrics: dict[str, Any] = Field(sa_type=JSON, nullable=False)
    path: str | None = None


class Policy(SQLModel, table=True):
    """A named, versioned exploration policy and its constructor parameters."""

    __tablename__ = "policy"

    name: str = Field(primary_key=True)
    version: str = Field(primary_key=True)
    params: dict[str, Any] = Field(sa_type=JSON, nullable=False)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class OpeReport(SQLModel, table=True):
    """An off-policy evaluation report and the gate's decision on it."""

    __tablename__ = "ope_report"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    candidate: str
    baseline: str | None = None
    payload: dict[str, Any] = Field(sa_type=JSON, nullable=False)
    decision: str | None = None
    reasons: list[Any] = Field(sa_type=JSON, nullable=False)


PROMOTION_ACTIONS = ("promote", "rollback")


class ModelPromotion(SQLModel, table=True):
    """One change of the production model: a promotion or a rollback (append-only).

    ``version`` is production from this row on; ``previous_version`` was production before it
    (None for the first promotion). ``forced`` rows bypassed the gate and say why in ``reason``;
    ``gate_report_id`` is the READY ``ope_report`` a gated promotion rests on."""

    __tablename__ = "model_promotion"
    __table_args__ = (
        CheckConstraint("action IN ('promote', 'rollback')", name="ck_model_promotion_action"),
        Index("ix_model_promotion_version", "version"),
    )

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    version: str = Field(foreign_key="model_version.version")
    action: str = Field(max_length=16)
    previous_version: str | None = Field(default=None, foreign_key="model_version.version")
    reason: str = ""
    forced: bool = False
    gate_report_id: int | None = Field(default=None, foreign_key="ope_report.id")


class CatalogItem(SQLModel, table=True):
    """One title of the item catalog (``proplog.catalog``): ``genres`` are ``|``-separated
    names; ``created_at`` is when the row was first loaded (a reload keeps it)."""

    __tablename__ = "catalog_item"
    __table_args__ = (CheckConstraint("item_id >= 0", name="ck_catalog_item_item_id"),)

    item_id: int = Field(
        primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    title: str
    genres: str = ""
    language: str = ""
    country: str = ""
    release_time: datetime = Field(sa_type=UTCDateTime, nullable=False)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class AbPlan(SQLModel, table=True):
    """An A/B test's plan, stored before it starts (``proplog.ab_records``): the configured
    shares the sample-ratio check compares with, the levels, the MDE and users, and the
    confidence sequence's mixture variance ``tau2``, fixed before the first look."""

    __tablename__ = "ab_plan"
    __table_args__ = (Index("ix_ab_plan_experiment", "experiment"),)

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    experiment: str = Field(max_length=64)
    reward: str = Field(max_length=32)
    shares: dict[str, Any] = Field(sa_type=JSON, nullable=False)
    alpha: float = Field(sa_type=Double, nullable=False)
    power: float = Field(sa_type=Double, nullable=False)
    srm_alpha: float = Field(sa_type=Double, nullable=False)
    mde: float = Field(sa_type=Double, nullable=False)
    users: int
    sigma: float = Field(sa_type=Double, nullable=False)
    tau2: float = Field(sa_type=Double, nullable=False)
    payload: dict[str, Any] = Field(sa_type=JSON, nullable=False)


class AbAnalysis(SQLModel, table=True):
    """One analysis of one treatment arm of an A/B test (append-only): the A/B lift with its
    fixed-horizon, always-valid and CUPED intervals, the sample-ratio check, and the gate's
    predicted lift with its interval (None when the candidate was never gated), so that the
    offline-online agreement can be tracked across experiments."""

    __tablename__ = "ab_analysis"
    __table_args__ = (Index("ix_ab_analysis_experiment", "experiment", "arm"),)

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    experiment: str = Field(max_length=64)
    arm: str = Field(max_length=64)
    control: str = Field(max_length=64)
    candidate: str
    baseline: str
    reward: str = Field(max_length=32)
    until: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    decisions: int
    users: int
    observed: float = Field(sa_type=Double, nullable=False)
    observed_lo: float = Field(sa_type=Double, nullable=False)
    observed_hi: float = Field(sa_type=Double, nullable=False)
    sequential_lo: float = Field(sa_type=Double, nullable=False)
    sequential_hi: float = Field(sa_type=Double, nullable=False)
    cuped: float | None = Field(default=None, sa_type=Double, nullable=True)
    cuped_lo: float | None = Field(default=None, sa_type=Double, nullable=True)
    cuped_hi: float | None = Field(default=None, sa_type=Double, nullable=True)
    predicted: float | None = Field(default=None, sa_type=Double, nullable=True)
    predicted_lo: float | None = Field(default=None, sa_type=Double, nullable=True)
    predicted_hi: float | None = Field(default=None, sa_type=Double, nullable=True)
    prediction_report_id: int | None = Field(default=None, foreign_key="ope_report.id")
    srm_pvalue: float = Field(sa_type=Double, nullable=False)
    srm_flagged: bool
    payload: dict[str, Any] = Field(sa_type=JSON, nullable=False)


def log_tables() -> list[Table]:
    """The tables of the propensity log, in dependency order."""
    from proplog.api_keys import ApiKey  # the service's keys (its module imports no schema)

    models: list[Any] = [
        Decision,
        SlateItem,
        Event,
        DecisionActivation,
        ModelVersion,
        Policy,
        OpeReport,
        ModelPromotion,
        CatalogItem,
        ApiKey,
        AbPlan,
        AbAnalysis,
    ]
    return [model.__table__ for model in models]
