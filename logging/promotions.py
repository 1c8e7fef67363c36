"""The production model's history: the ``model_promotion`` table's writes and reads.

Owns how a promotion or rollback is stored, and what "production" means in the log: the
``version`` of the latest ``model_promotion`` row (None before the first one). The rule that
decides whether a version may be promoted lives in :mod:`loop.models`; this module only keeps
the record straight:

- every argument is validated first (:class:`proplog.errors.LogValidationError` names the field);
- a write is a compare-and-set on production: it is stored only if production is still
  ``previous_version`` when its transaction runs (else :class:`proplog.errors.ConflictError`,
  key ``production``), so two racing promotions cannot both claim the same predecessor;
- promoting the version that is already production is an idempotent no-op that returns the
  stored row (``created=False``);
- a forced row needs a non-empty ``reason``; ``version`` must be a registered model version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Table, insert
from sqlmodel import Session, select

from proplog.errors import ConflictError, LogValidationError
from proplog.schema import PROMOTION_ACTIONS, ModelPromotion, ModelVersion
from proplog.validation import check_choice, check_name
from proplog.writes import logger, run_write

_NAME_LENGTH = 256
_REASON_LENGTH = 2000

_PROMOTION: Table = ModelPromotion.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class PromotionWrite:
    """The stored row, and whether this call created it (False: an identical replay)."""

    row: ModelPromotion
    created: bool


def _detached(row: ModelPromotion) -> ModelPromotion:
    """A copy that outlives the session's transaction (a commit expires ORM rows)."""
    return ModelPromotion(**row.model_dump())


def _latest(session: Session) -> ModelPromotion | None:
    statement = select(ModelPromotion).order_by(_PROMOTION.c.id.desc()).limit(1)
    row = session.exec(statement).first()
    return None if row is None else _detached(row)


def _check_input(
    version: str,
    action: str,
    previous_version: str | None,
    reason: str,
    forced: bool,
    gate_report_id: int | None,
) -> None:
    check_name(version, "version", max_length=_NAME_LENGTH)
    check_choice(action, PROMOTION_ACTIONS, "action")
    if previous_version is not None:
        check_name(previous_version, "previous_version", max_length=_NAME_LENGTH)
    if not isinstance(reason, str) or len(reason) > _REASON_LENGTH:
        raise LogValidationError(
            "reason", f"a string of at most {_REASON_LENGTH} characters", reason
        )
    if not isinstance(forced, bool):
        raise LogValidationError("forced", "a bool", forced)
    if forced and not reason.strip():
        raise LogValidationError("reason", "a non-empty text when forced is true", reason)
    if gate_report_id is not None and (
        isinstance(gate_report_id, bool) or not isinstance(gate_report_id, int)
    ):
        raise LogValidationError(
            "gate_report_id", "an integer ope_report id or None", gate_report_id
        )
    if action == "rollback" and previous_version is None:
        raise LogValidationError("previous_version", "the version rolled back from", None)


def record_promotion(
    *,
    session: Session,
    version: str,
    action: str,
    previous_version: str | None,
    reason: str = "",
    forced: bool = False,
    gate_report_id: int | None = None,
) -> PromotionWrite:
    """Make ``version`` production, if production is still ``previous_version``.

    Promoting the current production again returns its row unchanged (``created=False``).
    Production having moved on since the caller read it raises :class:`ConflictError`.
    """
    _check_input(version, action, previous_version, reason, forced, gate_report_id)

    def write() -> PromotionWrite:
        if session.get(ModelVersion, version) is None:
            raise LogValidationError("version", "a registered model version", version)
        latest = _latest(session)
        current = None if latest is None else latest.version
        if action == "promote" and latest is not None and current == version:
            return PromotionWrite(row=latest, created=False)
        if current != previous_version:
            raise ConflictError(
                key_name="production",
                key=str(current),
                field="previous_version",
                stored=current,
                given=previous_version,
            )
        row = {
            "created_at": datetime.now(UTC),
            "version": version,
            "action": action,
            "previous_version": previous_version,
            "reason": reason,
            "forced": forced,
            "gate_report_id": gate_report_id,
        }
        inserted = session.connection().execute(insert(_PROMOTION).values(**row))
        stored = ModelPromotion(id=int(inserted.inserted_primary_key[0]), **row)
        return PromotionWrite(row=stored, created=True)

    result = run_write(session, write)
    if result.created:
        logger.info(
            "%s: production model %s -> %s%s",
            action,
            previous_version,
            version,
            " (forced)" if forced else "",
        )
    return result


def production_version(session: Session) -> str | None:
    """The production model version: the latest promotion or rollback's, or None."""
    latest = _latest(session)
    return None if latest is None else latest.version


def promotion_history(session: Session) -> list[ModelPromotion]:
    """Every promotion and rollback, oldest first."""
    statement = select(ModelPromotion).order_by(_PROMOTION.c.id)
    return [_detached(row) for row in session.exec(statement).all()]


__all__ = ["PromotionWrite", "production_version", "promotion_history", "record_promotion"]
