"""Auditing a logged decision: replay it from its decision id and compare, field by field.

The decision id seeds the sampler (``rng_for_decision``), and every policy decides as a
deterministic function of the scores, K and that generator. So the logged candidate scores and
the id are enough to recompute the slate and every propensity; any difference from the record is
reported with its position, its field, the logged value and the recomputed one. Propensities are
compared exactly by default (they are never rounded on the way to the log); a logged marginal of
None or NaN matches a policy whose marginals are not exact.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from explore.policy import Policy
from explore.seeding import rng_for_decision
from explore.slate import Slate

PROPENSITY_FIELDS = ("propensity", "cond_propensity", "prefix_propensity")


@dataclass(frozen=True)
class Mismatch:
    """One difference: ``position`` is None for whole-decision fields (length, exploration)."""

    position: int | None
    field: str
    logged: Any
    recomputed: Any


@dataclass(frozen=True)
class AuditResult:
    decision_id: str
    recomputed: Slate
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def describe(self) -> str:
        if self.ok:
            return f"decision {self.decision_id}: replay matches the log"
        lines = [f"decision {self.decision_id}: {len(self.mismatches)} mismatches"]
        for m in self.mismatches:
            where = "decision" if m.position is None else f"position {m.position}"
            lines.append(f"  {where} {m.field}: logged {m.logged!r}, recomputed {m.recomputed!r}")
        return "\n".join(lines)


def _as_floats(values: Sequence[float | None] | np.ndarray) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def _same(a: float, b: float, rtol: float) -> bool:
    if np.isnan(a) or np.isnan(b):
        return bool(np.isnan(a) and np.isnan(b))
    return a == b or abs(a - b) <= rtol * max(abs(a), abs(b))


def audit_decision(
    policy: Policy,
    *,
    scores: np.ndarray,
    decision_id: str | uuid.UUID,
    indices: Sequence[int] | np.ndarray,
    propensity: Sequence[float | None] | np.ndarray,
    cond_propensity: Sequence[float] | np.ndarray,
    prefix_propensity: Sequence[float] | np.ndarray,
    explored: Sequence[bool] | np.ndarray | None = None,
    exploration: dict[str, Any] | None = None,
    rtol: float = 0.0,
) -> AuditResult:
    """Recompute the decision ``decision_id`` with ``policy`` on the logged candidate ``scores``
    and compare it with what was logged: the chosen candidate ``indices`` (into the candidate
    list), the three propensities per position, and, when given, the explored flags and the
    logged exploration parameters (compared with ``Slate.exploration`` when the policy sets it,
    else with ``policy.params()``)."""
    logged_indices = np.asarray(indices, dtype=np.int64)
    k = logged_indices.size
    if k == 0:
        raise ValueError("indices must hold the logged slate; got an empty slate")
    slate = policy.decide(np.asarray(scores, dtype=np.float64), k, rng_for_decision(decision_id))
    out: list[Mismatch] = []
    logged = {
        "propensity": _as_floats(propensity),
        "cond_propensity": _as_floats(cond_propensity),
        "prefix_propensity": _as_floats(prefix_propensity),
    }
    for name, values in logged.items():
        if values.size != k:
            raise ValueError(
                f"{name} must have one value per slate position ({k}); got {values.size}"
            )
    if len(slate) != k:
        out.append(Mismatch(None, "length", k, len(slate)))
    for j in range(min(k, len(slate))):
        if logged_indices[j] != slate.indices[j]:
            out.append(Mismatch(j, "index", int(logged_indices[j]), int(slate.indices[j])))
        for name in PROPENSITY_FIELDS:
            mine = float(getattr(slate, name)[j])
            if not _same(float(logged[name][j]), mine, rtol):
                out.append(Mismatch(j, name, float(logged[name][j]), mine))
        if explored is not None and bool(explored[j]) != bool(slate.explored[j]):
            out.append(Mismatch(j, "explored", bool(explored[j]), bool(slate.explored[j])))
    if exploration is not None:
        used = slate.exploration if slate.exploration is not None else policy.params()
        if exploration != used:
            out.append(Mismatch(None, "exploration", exploration, used))
    return AuditResult(decision_id=str(decision_id), recomputed=slate, mismatches=out)
