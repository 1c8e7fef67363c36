"""The registries beside the log: model versions, policy versions and OPE reports.

Owns their writes. A model version is idempotent on ``version`` and a policy on ``(name,
version)`` (key ``name@version``), as :mod:`proplog.writes` describes: an identical replay is a
no-op, a different one a :class:`proplog.errors.ConflictError`. OPE reports are append-only. Every
write validates its arguments first (raising :class:`proplog.errors.LogValidationError`) and owns
its transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, and_, insert, select
from sqlmodel import Session

from proplog.errors import LogValidationError
from proplog.schema import ModelVersion, OpeReport, Policy
from proplog.validation import check_name, to_json_value
from proplog.writes import WriteResult, check_same, logger, run_write

_NAME_LENGTH = 256

_MODEL_VERSION: Table = ModelVersion.__table__  # type: ignore[attr-defined]
_POLICY: Table = Policy.__table__  # type: ignore[attr-defined]
_OPE_REPORT: Table = OpeReport.__table__  # type: ignore[attr-defined]


def _json_object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise LogValidationError(field, "a JSON object (mapping)", value)
    return to_json_value(dict(value), field)


def _record_keyed(
    session: Session,
    table: Table,
    key: dict[str, str],
    content: dict[str, Any],
    *,
    key_name: str,
    key_text: str,
) -> WriteResult:
    """Insert ``key | content`` (plus created_at) unless the key exists with the same content."""

    def write() -> WriteResult:
        where = and_(*(table.c[name] == value for name, value in key.items()))
        columns = [table.c[name] for name in content]
        stored = session.connection().execute(select(*columns).where(where)).first()
        if stored is not None:
            check_same(key_name, key_text, dict(stored._mapping), content)
            return WriteResult(created=False, key=key_text)
        row = {**key, **content, "created_at": datetime.now(UTC)}
        session.connection().execute(insert(table), [row])
        return WriteResult(created=True, key=key_text)

    return run_write(session, write)


def record_model_version(
    *,
    session: Session,
    version: str,
    kind: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    path: str | None = None,
) -> WriteResult:
    """Register a model version (idempotent on ``version``)."""
    check_name(version, "version", max_length=_NAME_LENGTH)
    check_name(kind, "kind", max_length=_NAME_LENGTH)
    if path is not None and not isinstance(path, str):
        raise LogValidationError("path", "a string or None", path)
    content = {
        "kind": kind,
        "params": _json_object(params, "params"),
        "metrics": _json_object(metrics, "metrics"),
        "path": path,
    }
    return _record_keyed(
        session,
        _MODEL_VERSION,
        {"version": version},
        content,
        key_name="version",
        key_text=version,
    )


def record_policy(
    *, session: Session, name: str, version: str, params: Mapping[str, Any]
) -> WriteResult:
    """Register a policy version (idempotent on ``(name, version)``; key ``name@version``)."""
    check_name(name, "name", max_length=_NAME_LENGTH)
    check_name(version, "version", max_length=_NAME_LENGTH)
    return _record_keyed(
        session,
        _POLICY,
        {"name": name, "version": version},
        {"params": _json_object(params, "params")},
        key_name="policy",
        key_text=f"{name}@{version}",
    )


def record_ope_report(
    *,
    session: Session,
    candidate: str,
    baseline: str | None,
    payload: Mapping[str, Any],
    decision: str | None,
    reasons: Sequence[str],
) -> int:
    """Store an OPE report (append-only, not idempotent) and return its id.

    ``payload`` must be JSON with finite numbers (numpy values are converted); use ``None``
    where a number is undefined.
    """
    check_name(candidate, "candidate", max_length=_NAME_LENGTH)
    if baseline is not None:
        check_name(baseline, "baseline", max_length=_NAME_LENGTH)
    if decision is not None and not isinstance(decision, str):
        raise LogValidationError("decision", "a string or None", decision)
    if isinstance(reasons, str | bytes) or not isinstance(reasons, Sequence):
        raise LogValidationError("reasons", "a sequence of strings", reasons)
    row = {
        "created_at": datetime.now(UTC),
        "candidate": candidate,
        "baseline": baseline,
        "payload": _json_object(payload, "payload"),
        "decision": decision,
        "reasons": to_json_value(list(reasons), "reasons"),
    }

    def write() -> int:
        inserted = session.connection().execute(insert(_OPE_REPORT).values(**row))
        return int(inserted.inserted_primary_key[0])

    report_id = run_write(session, write)
    logger.info("stored OPE report %d for candidate %s", report_id, candidate)
    return report_id


__all__ = ["record_model_version", "record_ope_report", "record_policy"]
