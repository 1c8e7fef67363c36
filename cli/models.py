"""``loopbreak models list|show|promote|rollback``: the model registry and the production
pointer a running ``loopbreak serve`` follows (:mod:`loop.models` holds the promotion rule).

Exit codes: 0 done, 1 promotion refused (no READY gate qualifies), 2 bad input (unknown
version, empty ``--force`` reason, nothing to roll back to; the message names the field).
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from cli.common import add_database, add_json, fail, log_engine

if TYPE_CHECKING:
    from loop.models import PromotionResult, VersionInfo

EXIT_REFUSED = 1


def _window(info: VersionInfo) -> str:
    window = info.training_window or {}
    cut = window.get("cut", window.get("last"))
    return "-" if cut is None else f"{window.get('first', '?')} .. {cut}"


def _table(infos: list[VersionInfo]) -> str:
    width = max([len("version"), *(len(i.version) for i in infos)]) + 2
    kind = max([len("kind"), *(len(i.kind) for i in infos)]) + 2
    lines = [
        f"{'':2}{'version':<{width}}{'kind':<{kind}}{'created':<21}{'gates':>6}{'ready':>6}  path"
    ]
    for info in infos:
        ready = sum(1 for g in info.gates if g.qualifies)
        lines.append(
            f"{'*' if info.production else '':2}{info.version:<{width}}{info.kind:<{kind}}"
            f"{info.created_at.strftime('%Y-%m-%d %H:%M:%S'):<21}{len(info.gates):>6}{ready:>6}"
            f"  {info.path or '-'}"
        )
    lines.append("* production; ready: READY gates that qualify it (against what it would replace)")
    return "\n".join(lines)


def _detail(info: VersionInfo) -> str:
    lines = [
        f"version     {info.version}{'  (production)' if info.production else ''}",
        f"kind        {info.kind}",
        f"created_at  {info.created_at.isoformat()}",
        f"path        {info.path or '-'}",
        f"training    {_window(info)}",
        "gates:" if info.gates else "gates: none",
    ]
    for g in info.gates:
        verdict = "qualifies" if g.qualifies else f"does not qualify: {g.why_not}"
        lines.append(
            f"  ope_report {g.report_id} vs {g.baseline}: {g.decision}, window from "
            f"{g.first_decision or '?'}; {verdict}"
        )
    return "\n".join(lines)


def _done(result: PromotionResult) -> str:
    if not result.changed:
        return f"{result.version} is production already"
    how = "forced" if result.forced else f"gate ope_report {result.gate_report_id}"
    if result.action == "rollback":
        how = "rollback"
    elif result.previous is None:
        how = "first promotion, no gate needed"
    return f"production: {result.previous} -> {result.version} ({how})"


def run(args: argparse.Namespace) -> int:
    from loop import models
    from proplog.errors import ConflictError, LogValidationError

    engine = log_engine(args.database)
    try:
        document: Any
        if args.models_command == "list":
            infos = models.list_versions(engine)
            print(_table(infos))
            document = {"versions": [i.as_dict() for i in infos]}
        elif args.models_command == "show":
            info = models.show_version(engine, args.version)
            print(_detail(info))
            document = info.as_dict()
        elif args.models_command == "promote":
            result = models.promote(engine, args.version, force_reason=args.force)
            print(_done(result))
            document = result.as_dict()
        else:
            result = models.rollback(engine, reason=args.reason)
            print(_done(result))
            document = result.as_dict()
    except models.PromotionRefusedError as exc:
        print(f"refused: {exc}")
        if args.json:
            print(json.dumps({"refused": str(exc)}))
        return EXIT_REFUSED
    except (LogValidationError, ConflictError) as exc:
        return fail(str(exc))
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(document, allow_nan=False))
    return 0


def add_parser(sub: Any) -> None:
    group = sub.add_parser("models", help="the model registry: list, show, promote, rollback")
    commands = group.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    listed = commands.add_parser("list", help="every registered version (* production)")
    show = commands.add_parser("show", help="one version with its training window and gates")
    show.add_argument("version")
    promote = commands.add_parser(
        "promote", help="make a version production (needs a READY gate against production)"
    )
    promote.add_argument("version")
    promote.add_argument("--force", metavar="REASON", help="bypass the gate, saying why")
    rollback = commands.add_parser("rollback", help="production back to the version before")
    rollback.add_argument("--reason", default="", help="why (stored with the rollback)")
    for parser in (listed, show, promote, rollback):
        add_database(parser)
        add_json(parser)
        parser.set_defaults(func=run)
