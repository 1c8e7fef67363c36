"""``loopbreak export``: the propensity log to files for offline jobs, in one of five formats:

- ``parquet-days`` (default): a Parquet dataset partitioned by day (``proplog.export_days``),
  what ``loopbreak ope estimate --engine spark`` and other Spark or DuckDB jobs read;
- ``parquet`` and ``csv``: one file of the same rows (``proplog.export``);
- ``obp``: obp's ``bandit_feedback`` arrays as a ``.npz`` file (``proplog.export_obp``), for logs
  with one fixed action set;
- ``vw``: Vowpal Wabbit ``cb_adf`` text (``proplog.export_vw``).

Every format is written under a temporary name and renamed when complete, so a failed export
leaves nothing at ``--out``. Exit code 2 on bad options or a log the format cannot hold.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from cli.common import CommandInputError, add_database, add_json, fail, log_engine, parse_when

FORMATS = ("parquet-days", "parquet", "csv", "obp", "vw")
_SUFFIXES = {"parquet": ".parquet", "csv": ".csv", "obp": ".npz"}


def add_parser(sub: Any) -> None:
    export = sub.add_parser(
        "export", help="the propensity log to Parquet by day, Parquet, CSV, obp or VW files"
    )
    export.add_argument(
        "--format", choices=FORMATS, default="parquet-days", help="default %(default)s"
    )
    export.add_argument(
        "--out",
        required=True,
        help="a folder for parquet-days (new or empty), else a file (.parquet, .csv, .npz for "
        "obp, any name for vw)",
    )
    add_database(export)
    export.add_argument("--since", help="first decision time, ISO (inclusive)")
    export.add_argument("--until", help="last decision time, ISO (exclusive)")
    export.add_argument(
        "--chunk-decisions", type=int, default=10_000, help="decisions read at a time"
    )
    export.add_argument(
        "--all-positions",
        action="store_true",
        help="vw: one example per slate position (default: position 0 only)",
    )
    export.add_argument(
        "--reward",
        choices=("played", "play_value"),
        default="played",
        help="vw: the cost's reward (default %(default)s)",
    )
    export.add_argument(
        "--max-actions", type=int, default=100, help="obp: the largest action set it accepts"
    )
    add_json(export)
    export.set_defaults(func=run)


def _check(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    if isinstance(args.chunk_decisions, int) and args.chunk_decisions < 1:
        raise CommandInputError(f"--chunk-decisions must be >= 1; got {args.chunk_decisions}")
    suffix = _SUFFIXES.get(args.format)
    if suffix is not None and out.suffix != suffix:
        raise CommandInputError(f"--out for --format {args.format} must end in {suffix}; got {out}")
    if args.format == "parquet-days":
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise CommandInputError(f"--out {out} already exists and is not an empty folder")
    elif out.is_dir():
        raise CommandInputError(f"--out {out} is a folder; --format {args.format} writes a file")
    return out


def _write_obp(engine: Any, out: Path, args: argparse.Namespace, since: Any, until: Any) -> dict:
    import numpy as np

    from proplog.export_obp import to_bandit_feedback

    feedback = to_bandit_feedback(
        session_or_engine=engine, since=since, until=until, max_actions=args.max_actions
    )
    arrays = {k: np.asarray(v) for k, v in feedback.items()}
    arrays["decision_id"] = arrays["decision_id"].astype(str)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.{os.getpid()}.tmp.npz")
    try:
        np.savez_compressed(temporary, **arrays)
        temporary.replace(out)
    finally:
        temporary.unlink(missing_ok=True)
    return {"rounds": int(feedback["n_rounds"]), "actions": int(feedback["n_actions"])}


def _export(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    since, until = parse_when(args.since, "--since"), parse_when(args.until, "--until")
    engine = log_engine(args.database)
    window = {"session_or_engine": engine, "since": since, "until": until}
    try:
        if args.format == "parquet-days":
            from proplog.export_days import write_parquet_days

            days = write_parquet_days(root=out, chunk_decisions=args.chunk_decisions, **window)
            return {"days": list(days.days), "decisions": days.decisions, "rows": days.rows}
        if args.format in ("parquet", "csv"):
            from proplog.export import write_csv, write_parquet

            writer = write_parquet if args.format == "parquet" else write_csv
            summary = writer(path=out, chunk_decisions=args.chunk_decisions, **window)
            return {"decisions": summary.decisions, "rows": summary.rows}
        if args.format == "obp":
            return _write_obp(engine, out, args, since, until)
        from proplog.export_vw import export_cb_adf

        vw = export_cb_adf(
            path=out, all_positions=args.all_positions, reward=args.reward,
            chunk_decisions=args.chunk_decisions, **window,
        )  # fmt: skip
        return {"decisions": vw.decisions, "examples": vw.examples}
    finally:
        engine.dispose()


def run(args: argparse.Namespace) -> int:
    """``loopbreak export``: write the file(s), then one line saying what was written."""
    from proplog.export_obp import ObpExportError

    try:
        out = _check(args)
        result = _export(args, out)
    except (CommandInputError, ObpExportError, FileExistsError) as exc:
        return fail(str(exc))
    except ValueError as exc:  # a bad option the library refuses (--max-actions, ...)
        return fail(str(exc))
    counts = ", ".join(f"{v} {k}" for k, v in result.items() if k != "days")
    days = f" in {len(result['days'])} day(s)" if "days" in result else ""
    print(f"exported {counts}{days} to {out} ({args.format})")
    if args.json:
        print(json.dumps({"format": args.format, "out": str(out), **result}))
    return 0
