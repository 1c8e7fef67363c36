"""``loopbreak keys create|list|revoke``: the API keys of the HTTP service
(:mod:`proplog.api_keys` keeps them, :mod:`api.auth` checks them).

``create`` prints the new key's token once, alone on stdout (with ``--json``: one JSON object
holding it), and what it made on stderr; the log keeps only the secret's hash, so a lost token
cannot be shown again. ``list`` and ``revoke`` never show a secret.

Exit codes: 0 done, 2 bad input (an unknown scope, an empty name, an unknown key id; the
message names the field).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from cli.common import add_database, add_json, fail, log_engine

if TYPE_CHECKING:
    from proplog.api_keys import ApiKeyRecord

SCOPE_CHOICES = ("decide", "events", "admin")
"""The scopes ``--scope`` accepts (:data:`proplog.api_keys.SCOPES`; kept here so that
``loopbreak --help`` does not import the log)."""


def _when(record: ApiKeyRecord, revoked: bool = False) -> str:
    when = record.revoked_at if revoked else record.created_at
    return "-" if when is None else when.strftime("%Y-%m-%d %H:%M:%S")


def _table(records: list[ApiKeyRecord]) -> str:
    name = max([len("name"), *(len(r.name) for r in records)]) + 2
    lines = [f"{'key_id':<14}{'name':<{name}}{'scopes':<21}{'created':<21}revoked"]
    for r in records:
        lines.append(
            f"{r.key_id:<14}{r.name:<{name}}{','.join(r.scopes):<21}{_when(r):<21}"
            f"{_when(r, revoked=True)}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from proplog import api_keys
    from proplog.errors import LogValidationError

    engine = log_engine(args.db)
    try:
        if args.keys_command == "create":
            record, token = api_keys.create_key(engine, args.name, args.scope or [])
            print(
                f"created API key {record.key_id} ({record.name}) with scopes "
                f"{','.join(record.scopes)}; its token (stdout) is shown this once, never stored",
                file=sys.stderr,
            )
            print(json.dumps({**record.as_dict(), "token": token}) if args.json else token)
        elif args.keys_command == "list":
            records = api_keys.list_keys(engine)
            if args.json:
                print(json.dumps({"keys": [r.as_dict() for r in records]}))
            else:
                print(_table(records))
        else:
            record = api_keys.revoke_key(engine, args.key_id)
            if args.json:
                print(json.dumps(record.as_dict()))
            else:
                print(f"revoked API key {record.key_id} ({record.name}) at {_when(record, True)}")
    except LogValidationError as exc:
        return fail(str(exc))
    finally:
        engine.dispose()
    return 0


def add_parser(sub: Any) -> None:
    group = sub.add_parser("keys", help="API keys of the HTTP service: create, list, revoke")
    commands = group.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = commands.add_parser(
        "create", help="a new key; prints its token once (the log keeps only a hash)"
    )
    create.add_argument("--name", required=True, help="a label: who or what uses the key")
    create.add_argument(
        "--scope",
        action="append",
        choices=SCOPE_CHOICES,
        required=True,
        help="what the key may do (repeat for several): decide (POST /v1/decisions), events "
        "(POST /v1/events), admin (GET /metrics, and everything else)",
    )
    listed = commands.add_parser("list", help="every key, revoked ones too; never a secret")
    revoke = commands.add_parser("revoke", help="refuse a key from now on (within the cache time)")
    revoke.add_argument("key_id")
    for parser, text in (
        (create, "print one JSON object, the token in it, instead of the token alone"),
        (listed, "print one JSON object"),
        (revoke, "print one JSON object"),
    ):
        add_database(parser, "--db")
        add_json(parser, text)
        parser.set_defaults(func=run)
