"""The model registry's policy: which version may become production, rollback, and what the
registry shows about each version. No argparse, no HTTP.

The promotion rule (:func:`promote`):

- the version must be registered in ``model_version``;
- the first promotion (no production yet) needs no gate;
- otherwise it needs a READY ``ope_report`` for that candidate whose baseline is the current
  production (its version name, or ``"production"``: the gate compared with production as
  logged), and whose evaluated window's first decision is at or after the candidate's training
  cut (``params["training_window"]["cut"]``, else ``["last"]``): the gate did not score the
  candidate on data it was trained on. The latest such report is stored as the gate record;
- ``force_reason`` (non-empty text) bypasses the gate; the row says ``forced`` and keeps the
  reason.

Production is a stack: a promotion pushes a version, a rollback pops the current one and makes
the version below it production again (A → B → C, rollback, rollback: A).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from proplog.errors import LogValidationError
from proplog.promotions import production_version, promotion_history, record_promotion
from proplog.schema import ModelPromotion, ModelVersion, OpeReport

logger = logging.getLogger(__name__)

READY = "ready"
PRODUCTION_AS_LOGGED = "production"
_LIST_KNOWN = 10
"""An unknown version's error lists the known ones when there are at most this many."""


class PromotionRefusedError(Exception):
    """The gate does not allow the promotion; the message says which condition failed."""


@dataclass(frozen=True)
class GateRecord:
    """One ``ope_report`` of a candidate, and whether it would allow its promotion now."""

    report_id: int
    created_at: datetime
    baseline: str | None
    decision: str | None
    first_decision: str | None
    qualifies: bool
    why_not: str | None


@dataclass(frozen=True)
class VersionInfo:
    """A registered version as the registry shows it."""

    version: str
    kind: str
    created_at: datetime
    path: str | None
    training_window: dict[str, Any] | None
    production: bool
    gates: list[GateRecord] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "kind": self.kind,
            "created_at": self.created_at.isoformat(),
            "path": self.path,
            "training_window": self.training_window,
            "production": self.production,
            "gates": [{**g.__dict__, "created_at": g.created_at.isoformat()} for g in self.gates],
        }


@dataclass(frozen=True)
class PromotionResult:
    """What a promotion or rollback did (``changed=False``: the version was production already)."""

    version: str
    previous: str | None
    action: str
    forced: bool
    gate_report_id: int | None
    changed: bool
    promotion_id: int | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _aware(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def training_cut(params: dict[str, Any]) -> datetime | None:
    """The end of a version's training data: ``training_window["cut"]``, else ``["last"]``."""
    window = params.get("training_window")
    if not isinstance(window, dict):
        return None
    return _aware(window.get("cut", window.get("last")))


def _get_version(session: Session, version: Any) -> ModelVersion:
    if not isinstance(version, str) or not version:
        raise LogValidationError("version", "a non-empty model version name", version)
    stored = session.get(ModelVersion, version)
    if stored is None:
        known = list(session.exec(select(ModelVersion.version)).all())
        if not known:
            expected = "a registered model version (none is registered)"
        elif len(known) <= _LIST_KNOWN:
            expected = "a registered model version (known: " + ", ".join(sorted(known)) + ")"
        else:
            expected = f"a registered model version ({len(known)} are; see `loopbreak models list`)"
        raise LogValidationError("version", expected, version)
    return stored


def _first_decision(report: OpeReport) -> str | None:
    evaluation = report.payload.get("evaluation")
    if not isinstance(evaluation, dict) or not isinstance(evaluation.get("window"), dict):
        return None
    first = evaluation["window"].get("first_decision")
    return first if isinstance(first, str) else None


def _judge(report: OpeReport, production: str | None, cut: datetime | None) -> str | None:
    """Why ``report`` does not allow promoting its candidate over ``production``; None: it does."""
    if report.decision != READY:
        return f"ope_report {report.id} decided {report.decision!r}, not {READY!r}"
    baseline = report.baseline or report.payload.get("baseline")
    if baseline not in (production, PRODUCTION_AS_LOGGED):
        return (
            f"ope_report {report.id}'s baseline is {baseline!r}, not the current production "
            f"{production!r} (or {PRODUCTION_AS_LOGGED!r} as logged)"
        )
    first_text = _first_decision(report)
    first = _aware(first_text)
    if first is None:
        return f"ope_report {report.id} records no evaluated window (a log replay gate has one)"
    if cut is None:
        return (
            f"candidate {report.candidate} has no training window (training_window.cut or "
            ".last), so the gate's window cannot be shown to start after it"
        )
    if first < cut:
        return (
            f"ope_report {report.id}'s window starts at {first_text}, before the candidate's "
            f"training cut {cut.isoformat()}: it was evaluated on its own training data"
        )
    return None


def _gates(session: Session, stored: ModelVersion, production: str | None) -> list[GateRecord]:
    cut = training_cut(stored.params)
    reports = session.exec(
        select(OpeReport).where(OpeReport.candidate == stored.version).order_by(OpeReport.id)  # type: ignore[arg-type]
    ).all()
    records = []
    for report in reports:
        why_not = _judge(report, production, cut)
        assert report.id is not None
        records.append(
            GateRecord(
                report_id=report.id,
                created_at=report.created_at,
                baseline=report.baseline,
                decision=report.decision,
                first_decision=_first_decision(report),
                qualifies=why_not is None,
                why_not=why_not,
            )
        )
    return records


def _result(row: ModelPromotion, created: bool) -> PromotionResult:
    return PromotionResult(
        version=row.version,
        previous=row.previous_version,
        action=row.action,
        forced=row.forced,
        gate_report_id=row.gate_report_id,
        changed=created,
        promotion_id=row.id,
    )


def promote(engine: Engine, version: str, *, force_reason: str | None = None) -> PromotionResult:
    """Make ``version`` production under the promotion rule (see the module's docstring).

    Raises :class:`LogValidationError` for bad input (unknown version, empty ``force_reason``)
    and :class:`PromotionRefusedError` when no READY gate allows it.
    """
    if force_reason is not None and (not isinstance(force_reason, str) or not force_reason.strip()):
        raise LogValidationError("force_reason", "a non-empty text saying why", force_reason)
    with Session(engine) as session:
        stored = _get_version(session, version)
        production = production_version(session)
        if production == version:
            logger.info("%s is production already", version)
            history = promotion_history(session)
            return _result(history[-1], created=False)
        gate_id: int | None = None
        if production is not None and force_reason is None:
            gates = _gates(session, stored, production)
            allowed = [g for g in gates if g.qualifies]
            if not allowed:
                raise PromotionRefusedError(_refusal(version, production, gates))
            gate_id = allowed[-1].report_id
        written = record_promotion(
            session=session,
            version=version,
            action="promote",
            previous_version=production,
            reason=force_reason or "",
            forced=force_reason is not None,
            gate_report_id=gate_id,
        )
    return _result(written.row, written.created)


def _refusal(version: str, production: str, gates: list[GateRecord]) -> str:
    lead = f"{version} cannot replace production {production}"
    if not gates:
        return (
            f"{lead}: no ope_report for candidate {version}; run `loopbreak ope gate "
            f"--candidate {version}` on decisions after its training cut, or pass --force REASON"
        )
    reasons = "; ".join(g.why_not or "" for g in gates)
    return f"{lead}: no READY gate qualifies: {reasons}; or pass --force REASON"


def _production_stack(history: list[ModelPromotion]) -> list[str]:
    """The versions production went through, with every rollback undone (last: production)."""
    stack: list[str] = []
    for row in history:
        if row.action == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != row.version:
                stack.append(row.version)
        elif not stack or stack[-1] != row.version:
            stack.append(row.version)
    return stack


def rollback(engine: Engine, *, reason: str = "") -> PromotionResult:
    """Make production the version it had before the current one (the promotion undone)."""
    if not isinstance(reason, str):
        raise LogValidationError("reason", "a text", reason)
    with Session(engine) as session:
        stack = _production_stack(promotion_history(session))
        if len(stack) < 2:
            got = "no production version" if not stack else f"only {stack[0]} was ever promoted"
            raise LogValidationError(
                "rollback", "a production history with a version before the current one", got
            )
        written = record_promotion(
            session=session,
            version=stack[-2],
            action="rollback",
            previous_version=stack[-1],
            reason=reason,
        )
    return _result(written.row, written.created)


def _info(session: Session, stored: ModelVersion, stack: list[str]) -> VersionInfo:
    """``stored`` as the registry shows it. Its gates are judged against the production it would
    replace: the current one, or for production itself the version before it."""
    window = stored.params.get("training_window")
    production = stack[-1] if stack else None
    is_production = stored.version == production
    replaces = (stack[-2] if len(stack) > 1 else None) if is_production else production
    return VersionInfo(
        version=stored.version,
        kind=stored.kind,
        created_at=stored.created_at,
        path=stored.path,
        training_window=window if isinstance(window, dict) else None,
        production=is_production,
        gates=_gates(session, stored, replaces),
    )


def list_versions(engine: Engine) -> list[VersionInfo]:
    """Every registered version, oldest first, with its gate records."""
    with Session(engine) as session:
        stack = _production_stack(promotion_history(session))
        rows = session.exec(select(ModelVersion).order_by(ModelVersion.created_at)).all()  # type: ignore[arg-type]
        return [_info(session, row, stack) for row in rows]


def show_version(engine: Engine, version: str) -> VersionInfo:
    """One registered version with its gate records (unknown: :class:`LogValidationError`)."""
    with Session(engine) as session:
        stored = _get_version(session, version)
        return _info(session, stored, _production_stack(promotion_history(session)))


def history(engine: Engine) -> list[ModelPromotion]:
    """Every promotion and rollback, oldest first."""
    with Session(engine) as session:
        return promotion_history(session)


def production_model(engine: Engine) -> tuple[str, str | None] | None:
    """The production version and its model file path (None: nothing was promoted)."""
    with Session(engine) as session:
        version = production_version(session)
        if version is None:
            return None
        stored = session.get(ModelVersion, version)
        return version, None if stored is None else stored.path
