"""The HTTP service's API keys: the ``api_key`` table, its writes and the token check.

Owns what a key is and how it is kept:

- a key has a public ``key_id`` (12 random hex characters, the primary key), a ``name`` (a label
  for people), its ``scopes`` (:data:`SCOPES`, stored as a comma-separated text in
  :data:`SCOPES` order), the SHA-256 of its secret, ``created_at`` and ``revoked_at`` (null
  while the key is live). Rows are never deleted: a revoked key stays listed.
- the token a client sends is ``lb_<key_id>_<secret>``, the secret being
  ``secrets.token_urlsafe(32)`` (32 random bytes, 43 characters). :func:`create_key` returns it
  once; the log keeps only the secret's hash, and nothing here logs a token or a secret.
- :func:`verify` parses a token, reads its key and compares the hashes with
  ``hmac.compare_digest``; a malformed token, an unknown or revoked key and a wrong secret all
  answer None alike.

Why a plain SHA-256 and not a slow key-derivation function (bcrypt, scrypt, Argon2): a slow KDF
protects low-entropy secrets, such as passwords, whose hashes can be attacked by trying likely
guesses. These secrets are 256 random bits drawn by the machine: guessing one from its hash is a
2**256 search whatever the hash costs, so a fast hash is as safe, and it keeps the check cheap
enough to run on a request path.

Scopes: ``decide`` (``POST /v1/decisions``), ``events`` (``POST /v1/events``) and ``admin``
(``GET /metrics``). ``admin`` implies the other two (:meth:`ApiKeyRecord.allows`): an operator's
key can do everything a client's can.

Bad input raises :class:`proplog.errors.LogValidationError` naming the field (``name``,
``scopes``, ``key_id``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Engine, Table, select, update
from sqlmodel import Field, Session, SQLModel

from proplog.errors import LogValidationError
from proplog.validation import check_choice, check_name
from proplog.writes import run_write

logger = logging.getLogger(__name__)

SCOPES = ("decide", "events", "admin")
"""Every scope a key may hold, in the order they are stored and shown."""
ADMIN_SCOPE = "admin"
"""The scope that implies every other one."""

TOKEN_PREFIX = "lb_"
KEY_ID_HEX = 12
"""Hex characters of a key id (48 random bits: ids are public, unique, and short to type)."""
SECRET_BYTES = 32
"""Random bytes of a secret (256 bits): ``secrets.token_urlsafe`` gives 43 characters."""
NAME_LENGTH = 200

_TOKEN = re.compile(rf"{TOKEN_PREFIX}([0-9a-f]{{{KEY_ID_HEX}}})_([A-Za-z0-9_-]{{43}})")
TOKEN_LENGTH = len(TOKEN_PREFIX) + KEY_ID_HEX + 1 + 43
"""The length of every token :func:`create_key` makes; any other length is refused unread."""


class ApiKey(SQLModel, table=True):
    """One API key (the table ``api_key``); only the SHA-256 of its secret is stored.

    Times are ``timestamp with time zone`` on PostgreSQL and naive UTC on SQLite; the functions
    of this module read them back as aware UTC (:class:`ApiKeyRecord`)."""

    __tablename__ = "api_key"

    key_id: str = Field(primary_key=True, max_length=KEY_ID_HEX)
    name: str = Field(max_length=NAME_LENGTH)
    scopes: str = Field(max_length=64)
    secret_sha256: str = Field(max_length=64)
    created_at: datetime = Field(sa_type=DateTime(timezone=True), nullable=False)  # type: ignore[call-overload]
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]


_TABLE: Table = ApiKey.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ApiKeyRecord:
    """A key as the log holds it, without its secret or the secret's hash."""

    key_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def allows(self, scope: str) -> bool:
        """Whether the key may do what ``scope`` permits; ``admin`` permits everything."""
        return scope in self.scopes or ADMIN_SCOPE in self.scopes

    def as_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "name": self.name,
            "scopes": list(self.scopes),
            "created_at": self.created_at.isoformat(),
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
        }


def _utc(value: datetime | None) -> datetime | None:
    """An aware UTC time from what the back end returns (SQLite: naive UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _record(row: Any) -> ApiKeyRecord:
    created = _utc(row.created_at)
    assert created is not None  # the column is NOT NULL
    return ApiKeyRecord(
        key_id=row.key_id,
        name=row.name,
        scopes=tuple(s for s in row.scopes.split(",") if s),
        created_at=created,
        revoked_at=_utc(row.revoked_at),
    )


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """The scopes in :data:`SCOPES` order, duplicates dropped; unknown or none refused."""
    if isinstance(scopes, str | bytes) or not isinstance(scopes, Iterable):
        raise LogValidationError("scopes", "a list of scopes (" + ", ".join(SCOPES) + ")", scopes)
    given = list(scopes)
    for scope in given:
        check_choice(scope, SCOPES, "scopes")
    if not given:
        raise LogValidationError("scopes", "at least one of " + ", ".join(SCOPES), given)
    return tuple(s for s in SCOPES if s in given)


def _check_key_id(key_id: Any) -> str:
    if not isinstance(key_id, str) or not re.fullmatch(f"[0-9a-f]{{{KEY_ID_HEX}}}", key_id):
        raise LogValidationError("key_id", f"a key id of {KEY_ID_HEX} hex characters", key_id)
    return key_id


def create_key(engine: Engine, name: str, scopes: Iterable[str]) -> tuple[ApiKeyRecord, str]:
    """Store a new key and return it with its token, ``lb_<key_id>_<secret>``.

    The token is returned here only: the log keeps the SHA-256 of the secret, so a lost token
    cannot be recovered (create another key, revoke the lost one)."""
    check_name(name, "name", max_length=NAME_LENGTH)
    if not name.strip():
        raise LogValidationError("name", "a label that is not only white space", name)
    chosen = _check_scopes(scopes)

    def write() -> tuple[ApiKeyRecord, str]:
        key_id = secrets.token_hex(KEY_ID_HEX // 2)  # drawn again on a retry after a key race
        secret = secrets.token_urlsafe(SECRET_BYTES)
        row = {
            "key_id": key_id,
            "name": name,
            "scopes": ",".join(chosen),
            "secret_sha256": _digest(secret),
            "created_at": datetime.now(UTC),
            "revoked_at": None,
        }
        session.connection().execute(_TABLE.insert().values(**row))
        return ApiKeyRecord(key_id, name, chosen, row["created_at"], None), (
            f"{TOKEN_PREFIX}{key_id}_{secret}"
        )

    with Session(engine) as session:
        record, token = run_write(session, write)
    logger.info("API key %s (%r) created with scopes %s", record.key_id, name, ",".join(chosen))
    return record, token


def list_keys(engine: Engine) -> list[ApiKeyRecord]:
    """Every key, revoked ones too, oldest first; never a secret or its hash."""
    columns = [c for c in _TABLE.c if c.name != "secret_sha256"]
    statement = select(*columns).order_by(_TABLE.c.created_at, _TABLE.c.key_id)
    with engine.connect() as connection:
        return [_record(row) for row in connection.execute(statement)]


def revoke_key(engine: Engine, key_id: str) -> ApiKeyRecord:
    """Revoke the key ``key_id`` from now on; revoking a revoked key keeps its first
    ``revoked_at``. An unknown ``key_id`` raises :class:`LogValidationError` naming
    ``key_id``."""
    _check_key_id(key_id)
    columns = [c for c in _TABLE.c if c.name != "secret_sha256"]

    def write() -> tuple[ApiKeyRecord, bool]:
        connection = session.connection()
        row = connection.execute(select(*columns).where(_TABLE.c.key_id == key_id)).first()
        if row is None:
            raise LogValidationError("key_id", "the id of a stored API key", key_id)
        record = _record(row)
        if record.revoked:
            return record, False
        now = datetime.now(UTC)
        connection.execute(update(_TABLE).where(_TABLE.c.key_id == key_id).values(revoked_at=now))
        return ApiKeyRecord(record.key_id, record.name, record.scopes, record.created_at, now), True

    with Session(engine) as session:
        record, changed = run_write(session, write)
    if changed:
        logger.info("API key %s (%r) revoked", key_id, record.name)
    return record


def parse_token(token: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a well-formed token; None for anything else."""
    if not isinstance(token, str) or len(token) != TOKEN_LENGTH:
        return None
    match = _TOKEN.fullmatch(token)
    return None if match is None else (match.group(1), match.group(2))


def verify(engine: Engine, token: str) -> ApiKeyRecord | None:
    """The live key whose token this is; None when the token is malformed, its key unknown or
    revoked, or its secret wrong (the caller cannot tell which, nor can a client it answers)."""
    parsed = parse_token(token)
    if parsed is None:
        return None
    key_id, secret = parsed
    with engine.connect() as connection:
        row = connection.execute(select(_TABLE).where(_TABLE.c.key_id == key_id)).first()
    if row is None or not hmac.compare_digest(row.secret_sha256, _digest(secret)):
        return None
    if row.revoked_at is not None:
        return None
    return _record(row)


def has_live_key(engine: Engine) -> bool:
    """Whether the log holds a key that is not revoked."""
    statement = select(_TABLE.c.key_id).where(_TABLE.c.revoked_at.is_(None)).limit(1)
    with engine.connect() as connection:
        return connection.execute(statement).first() is not None


__all__ = [
    "ADMIN_SCOPE",
    "SCOPES",
    "ApiKey",
    "ApiKeyRecord",
    "create_key",
    "has_live_key",
    "list_keys",
    "parse_token",
    "revoke_key",
    "verify",
]
