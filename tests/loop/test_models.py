"""The promotion rule and rollback (``loop.models``) on each back end, with gate records written
as ``loopbreak ope gate`` writes them: refused without a READY gate, allowed by one whose window
starts at or after the candidate's training cut against the current production, refused when the
window overlaps the training data or the baseline is not production, forced with a stored reason;
rollback walks back through the promotions; bad input names the field and writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from loop.models import (
    PromotionRefusedError,
    history,
    list_versions,
    promote,
    rollback,
    show_version,
    training_cut,
)
from proplog.errors import LogValidationError
from proplog.registry import record_model_version, record_ope_report

CUT = "2026-01-03T00:00:00+00:00"


def register(engine: Engine, version: str, window: dict[str, str] | None = None) -> None:
    params: dict[str, Any] = {} if window is None else {"training_window": window}
    with Session(engine) as session:
        record_model_version(
            session=session, version=version, kind="baseline", params=params, metrics={},
            path=f"/models/{version}.npz",
        )  # fmt: skip


def gate(
    engine: Engine, candidate: str, baseline: str, *, first: str, decision: str = "ready"
) -> int:
    """A gate record shaped like ``run_gate``'s (a log replay's evaluation window)."""
    payload = {
        "candidate": candidate,
        "baseline": baseline,
        "evaluation": {"window": {"first_decision": first, "last_decision": first}},
    }
    with Session(engine) as session:
        return record_ope_report(
            session=session, candidate=candidate, baseline=baseline, payload=payload,
            decision=decision, reasons=[],
        )  # fmt: skip


@pytest.fixture
def registry(engine: Engine) -> Engine:
    """``v1`` in production (first promotion, no gate), ``v2`` trained up to ``CUT``."""
    register(engine, "v1", {"first": "2026-01-01T00:00:00+00:00", "last": "2026-01-02T00:00:00"})
    register(engine, "v2", {"first": "2026-01-01T00:00:00+00:00", "last": "x", "cut": CUT})
    first = promote(engine, "v1")
    assert first.changed and first.previous is None and first.gate_report_id is None
    return engine


def test_training_cut_prefers_cut_over_last() -> None:
    assert training_cut({"training_window": {"last": CUT}}).isoformat() == CUT  # type: ignore[union-attr]
    assert training_cut({"training_window": {"last": "2020-01-01", "cut": CUT}}).isoformat() == CUT  # type: ignore[union-attr]
    assert training_cut({}) is None


def test_promotion_is_refused_without_a_ready_gate(registry: Engine) -> None:
    with pytest.raises(PromotionRefusedError, match="no ope_report for candidate v2"):
        promote(registry, "v2")
    gate(registry, "v2", "production", first="2026-01-04T00:00:00+00:00", decision="not_ready")
    with pytest.raises(PromotionRefusedError, match="decided 'not_ready'"):
        promote(registry, "v2")
    assert [r.version for r in history(registry)] == ["v1"]


def test_a_ready_gate_after_the_cut_against_production_allows_it(registry: Engine) -> None:
    gate(registry, "v2", "production", first="2026-01-02T12:00:00+00:00")  # overlaps
    gate(registry, "v2", "v0", first="2026-01-04T00:00:00+00:00")  # not production's
    qualifying = gate(registry, "v2", "v1", first=CUT)  # at the cut is after the training data
    result = promote(registry, "v2")
    assert result.changed and result.previous == "v1" and not result.forced
    assert result.gate_report_id == qualifying
    shown = show_version(registry, "v2")
    assert shown.production and [g.qualifies for g in shown.gates] == [False, False, True]
    assert "before the candidate's training cut" in (shown.gates[0].why_not or "")
    assert "not the current production" in (shown.gates[1].why_not or "")
    assert [(v.version, v.production) for v in list_versions(registry)] == [
        ("v1", False),
        ("v2", True),
    ]


def test_a_ready_gate_on_the_training_window_is_refused(registry: Engine) -> None:
    gate(registry, "v2", "production", first="2026-01-02T23:59:59+00:00")
    with pytest.raises(PromotionRefusedError, match="training cut 2026-01-03T00:00:00"):
        promote(registry, "v2")


def test_force_bypasses_the_gate_and_stores_the_reason(registry: Engine) -> None:
    result = promote(registry, "v2", force_reason="incident 42: v1 serves stale items")
    assert result.changed and result.forced and result.gate_report_id is None
    row = history(registry)[-1]
    assert (row.version, row.forced, row.reason) == (
        "v2",
        True,
        "incident 42: v1 serves stale items",
    )


def test_rollback_restores_the_previous_version_step_by_step(registry: Engine) -> None:
    register(registry, "v3")
    promote(registry, "v2", force_reason="test")
    promote(registry, "v3", force_reason="test")
    assert rollback(registry, reason="p99 latency").version == "v2"
    assert rollback(registry).version == "v1"
    assert show_version(registry, "v1").production
    assert [(r.action, r.version, r.previous_version) for r in history(registry)][-2:] == [
        ("rollback", "v2", "v3"),
        ("rollback", "v1", "v2"),
    ]
    with pytest.raises(LogValidationError, match="only v1 was ever promoted"):
        rollback(registry)


@pytest.mark.parametrize(
    ("call", "field", "message"),
    [
        (lambda e: promote(e, "v9"), "version", "known: v1, v2"),
        (lambda e: promote(e, ""), "version", "non-empty"),
        (lambda e: promote(e, "v2", force_reason=" "), "force_reason", "non-empty text"),
        (lambda e: promote(e, "v2", force_reason=""), "force_reason", "non-empty text"),
        (lambda e: show_version(e, "v9"), "version", "registered model version"),
        (lambda e: rollback(e), "rollback", "a version before the current one"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(
    registry: Engine, call: Any, field: str, message: str
) -> None:
    with pytest.raises(LogValidationError, match=message) as caught:
        call(registry)
    assert caught.value.field == field
    assert [r.version for r in history(registry)] == ["v1"]


def test_rollback_with_no_history_names_the_field(engine: Engine) -> None:
    with pytest.raises(LogValidationError, match="no production version") as caught:
        rollback(engine)
    assert caught.value.field == "rollback"
    assert history(engine) == []
