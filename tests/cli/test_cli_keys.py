"""``loopbreak keys create|list|revoke``: the token on stdout once and nowhere else, listings
without secrets, revocation, bad input named with exit code 2; and the demo's key file."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from cli import keys as cli_keys
from cli.main import main
from proplog.api_keys import SCOPES, list_keys, verify
from proplog.engine import make_engine


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'keys.db'}"


def create(db: str, capsys: pytest.CaptureFixture[str], *scopes: str, json_: bool = False) -> str:
    argv = ["keys", "create", "--name", "recommender", "--db", db]
    for scope in scopes:
        argv += ["--scope", scope]
    assert main([*argv, *(["--json"] if json_ else [])]) == 0
    return capsys.readouterr().out


def test_create_prints_the_token_alone_and_only_on_stdout(
    db: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    argv = ["keys", "create", "--name", "recommender", "--scope", "decide", "--scope", "events"]
    assert main([*argv, "--db", db]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert out == token + "\n"
    engine = make_engine(db)
    record = verify(engine, token)
    engine.dispose()
    assert record is not None and record.scopes == ("decide", "events")
    assert record.key_id in err and token not in err
    assert token not in caplog.text


def test_create_json_is_one_object_with_the_token(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    document = json.loads(create(db, capsys, "admin", json_=True))
    assert set(document) == {"key_id", "name", "scopes", "created_at", "revoked_at", "token"}
    assert document["scopes"] == ["admin"] and document["revoked_at"] is None
    assert document["token"].startswith(f"lb_{document['key_id']}_")


def test_list_and_revoke_never_show_a_secret(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    first = create(db, capsys, "decide").strip()
    second = json.loads(create(db, capsys, "events", "admin", json_=True))
    first_id = first.split("_")[1]
    assert main(["keys", "list", "--db", db]) == 0
    table = capsys.readouterr().out
    assert first_id in table and second["key_id"] in table and "events,admin" in table
    assert first not in table and second["token"] not in table
    assert main(["keys", "revoke", first_id, "--db", db]) == 0
    assert f"revoked API key {first_id}" in capsys.readouterr().out
    assert main(["keys", "list", "--db", db, "--json"]) == 0
    listed = capsys.readouterr().out
    document = json.loads(listed)
    revoked = {k["key_id"]: k["revoked_at"] for k in document["keys"]}
    assert revoked[first_id] is not None and revoked[second["key_id"]] is None
    assert first[-43:] not in listed and second["token"][-43:] not in listed
    assert "sha256" not in listed
    engine = make_engine(db)
    assert verify(engine, first) is None
    assert verify(engine, second["token"]) is not None
    engine.dispose()


@pytest.mark.parametrize(
    ("argv", "field"),
    [(["keys", "create", "--name", "", "--scope", "decide"], "name"),
     (["keys", "create", "--name", "   ", "--scope", "decide"], "name"),
     (["keys", "revoke", "0123456789ab"], "key_id"),
     (["keys", "revoke", "nonsense"], "key_id")],
)  # fmt: skip
def test_bad_input_exits_2_naming_the_field(
    db: str, capsys: pytest.CaptureFixture[str], argv: list[str], field: str
) -> None:
    assert main([*argv, "--db", db]) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"error: {field} must be") and out == ""
    engine = make_engine(db)
    assert list_keys(engine) == []
    engine.dispose()


@pytest.mark.parametrize(
    "argv",
    [["keys", "create", "--name", "x", "--scope", "everything"], ["keys", "create", "--name", "x"],
     ["keys", "create", "--scope", "decide"]],
)  # fmt: skip
def test_an_unknown_or_missing_option_is_refused_by_the_parser(
    db: str, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--db", db])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--scope" in err or "--name" in err


def test_the_cli_offers_exactly_the_logs_scopes() -> None:
    assert cli_keys.SCOPE_CHOICES == SCOPES


def test_the_demo_writes_a_key_file_for_its_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--rounds", "2", "--decisions", "100", "--items", "60",
            "--users", "30"]  # fmt: skip
    assert main(argv) == 0
    path = out / "api_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    engine = make_engine(f"sqlite:///{out / 'demo.db'}")
    record = verify(engine, token)
    engine.dispose()
    assert record is not None and record.scopes == ("decide", "events")
    printed = capsys.readouterr().out
    assert token not in printed
    assert f'curl -H "Authorization: Bearer $(cat {path})"' in printed
