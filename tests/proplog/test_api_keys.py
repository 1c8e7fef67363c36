"""The service's API keys in the log (``proplog.api_keys``), on both back ends: a token verifies
until its key is revoked, only the secret's hash is stored, bad input names its field, and no
token reaches the logs."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text
from sqlmodel import SQLModel

from proplog.api_keys import (
    SCOPES,
    create_key,
    has_live_key,
    list_keys,
    parse_token,
    revoke_key,
    verify,
)
from proplog.engine import init_db, make_engine
from proplog.errors import LogValidationError
from proplog.schema import log_tables

TOKEN = re.compile(r"lb_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


def test_a_new_key_verifies_with_its_scopes(engine: Engine) -> None:
    record, token = create_key(engine, "recommender", ["events", "decide", "events"])
    assert TOKEN.fullmatch(token)
    assert token.startswith(f"lb_{record.key_id}_")
    assert record.scopes == ("decide", "events")  # SCOPES order, no duplicates
    assert record.revoked_at is None and record.created_at.tzinfo is not None
    assert verify(engine, token) == record
    assert record.allows("decide") and record.allows("events") and not record.allows("admin")
    assert has_live_key(engine)


def test_admin_implies_every_scope(engine: Engine) -> None:
    record, _ = create_key(engine, "operator", ["admin"])
    assert all(record.allows(scope) for scope in SCOPES)


def test_only_the_hash_of_the_secret_is_stored(engine: Engine) -> None:
    record, token = create_key(engine, "client", ["decide"])
    secret = token.removeprefix(f"lb_{record.key_id}_")
    with engine.connect() as connection:
        rows = [tuple(map(str, row)) for row in connection.execute(text("SELECT * FROM api_key"))]
        stored = connection.execute(text("SELECT secret_sha256 FROM api_key")).scalar_one()
    assert len(rows) == 1
    assert not any(secret in value or token in value for value in rows[0])
    assert stored == hashlib.sha256(secret.encode()).hexdigest()


@pytest.mark.parametrize(
    "case",
    ["wrong secret", "unknown key id", "empty", "no prefix", "extra character", "10 kB",
     "whitespace around", "revoked"],
)  # fmt: skip
def test_a_bad_token_does_not_verify(engine: Engine, case: str) -> None:
    record, token = create_key(engine, "client", ["decide"])
    _, other = create_key(engine, "other", ["decide"])
    secret = token.removeprefix(f"lb_{record.key_id}_")
    bad = {
        "wrong secret": f"lb_{record.key_id}_{other[-43:]}",
        "unknown key id": f"lb_{'0' * 12}_{secret}",
        "empty": "",
        "no prefix": token.removeprefix("lb_"),
        "extra character": token + "x",
        "10 kB": token + "a" * 10_000,
        "whitespace around": f" {token} ",
        "revoked": token,
    }[case]
    if case == "revoked":
        revoke_key(engine, record.key_id)
    assert verify(engine, bad) is None


def test_revoking_is_idempotent_and_keeps_the_key_listed(engine: Engine) -> None:
    record, token = create_key(engine, "client", ["decide", "events"])
    revoked = revoke_key(engine, record.key_id)
    assert revoked.revoked_at is not None and revoked.revoked_at >= record.created_at
    assert revoke_key(engine, record.key_id).revoked_at == revoked.revoked_at
    assert verify(engine, token) is None
    assert not has_live_key(engine)
    listed = list_keys(engine)
    assert [k.key_id for k in listed] == [record.key_id]
    assert listed[0] == revoked
    assert set(listed[0].as_dict()) == {"key_id", "name", "scopes", "created_at", "revoked_at"}


def test_keys_are_listed_oldest_first(engine: Engine) -> None:
    made = [create_key(engine, f"k{i}", ["decide"])[0].key_id for i in range(3)]
    assert [k.key_id for k in list_keys(engine)] == made


@pytest.mark.parametrize(
    ("name", "scopes", "field"),
    [("", ["decide"], "name"), ("   ", ["decide"], "name"), ("x" * 201, ["decide"], "name"),
     ("a\x00b", ["decide"], "name"), (None, ["decide"], "name"),
     ("client", ["decide", "everything"], "scopes"), ("client", [], "scopes"),
     ("client", "decide", "scopes"), ("client", None, "scopes")],
)  # fmt: skip
def test_bad_input_to_create_names_the_field_and_writes_nothing(
    engine: Engine, name: object, scopes: object, field: str
) -> None:
    with pytest.raises(LogValidationError) as raised:
        create_key(engine, name, scopes)  # type: ignore[arg-type]
    assert raised.value.field == field
    assert list_keys(engine) == []


@pytest.mark.parametrize("key_id", ["0123456789ab", "short", "", "LB_ABC", None])
def test_revoking_an_unknown_key_names_key_id(engine: Engine, key_id: object) -> None:
    create_key(engine, "client", ["decide"])
    with pytest.raises(LogValidationError) as raised:
        revoke_key(engine, key_id)  # type: ignore[arg-type]
    assert raised.value.field == "key_id"


def test_no_token_or_secret_reaches_the_logs(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    record, token = create_key(engine, "client", ["decide"])
    assert verify(engine, token) is not None
    assert verify(engine, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    revoke_key(engine, record.key_id)
    assert verify(engine, token) is None
    assert record.key_id in caplog.text  # the public id is what the log names
    assert token not in caplog.text
    assert token.removeprefix(f"lb_{record.key_id}_") not in caplog.text


def test_parse_token_splits_only_well_formed_tokens() -> None:
    token = "lb_0123456789ab_" + "A" * 43
    assert parse_token(token) == ("0123456789ab", "A" * 43)
    assert parse_token(token.upper()) is None
    assert parse_token(None) is None  # type: ignore[arg-type]


def test_init_db_adds_the_key_table_to_an_existing_log(tmp_path: Path) -> None:
    """A log made before keys existed gets the table; its other tables are left as they are."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    older = [table for table in log_tables() if table.name != "api_key"]
    SQLModel.metadata.create_all(engine, tables=older)
    assert "api_key" not in inspect(engine).get_table_names()
    init_db(engine)
    assert "api_key" in inspect(engine).get_table_names()
    record, token = create_key(engine, "client", ["events"])
    assert verify(engine, token) == record
    engine.dispose()
