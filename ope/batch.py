"""The OPE input contract (DESIGN.md §5): a typed, frozen batch of per-row arrays.

One row per logged decision, or per decision and position for slates (then ``decision_id``
groups the rows of one decision and ``slot`` names the position). Estimators never need a dense
rounds × actions array.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from ope.moments import WeightStats


class OpeInputError(ValueError):
    """Bad OPE input; the message names the column and the first bad row."""


_ROW = re.compile(r"at row (\d+)$")


def _column(name: str, values: object, n: int | None) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raw = np.asarray(values, dtype=object)
        for row, value in enumerate(raw if raw.ndim == 1 else ()):
            try:
                float(value)
            except (TypeError, ValueError):
                raise OpeInputError(f"{name} must be numeric; got {value!r} at row {row}") from None
        raise OpeInputError(f"{name} must be a 1-D numeric column") from None
    if array.ndim != 1:
        raise OpeInputError(f"{name} must be 1-D; got shape {array.shape}")
    if n is not None and array.size != n:
        raise OpeInputError(f"{name} must have {n} rows like reward; got {array.size}")
    return array


SLATE_PSCORES = (
    "pscore_slate",
    "target_pscore_slate",
    "pscore_cascade",
    "target_pscore_cascade",
    "target_pscore_item",
)


def _slate_columns(
    given: dict[str, object], n: int, decision: np.ndarray
) -> dict[str, np.ndarray | None]:
    """Validated slate propensity columns: logging ones in (0, 1], target ones in [0, 1], each
    pair given together, whole-slate ones constant within a decision."""
    unknown = sorted(set(given) - set(SLATE_PSCORES))
    if unknown:
        raise OpeInputError(f"unknown slate propensity column(s): {', '.join(unknown)}")
    out: dict[str, np.ndarray | None] = dict.fromkeys(SLATE_PSCORES)
    for kind in ("slate", "cascade"):
        names = (f"pscore_{kind}", f"target_pscore_{kind}")
        present = [name in given for name in names]
        if any(present) and not all(present):
            missing = names[present.index(False)]
            raise OpeInputError(f"{missing} must come with {names[present.index(True)]}")
        for name in names if all(present) else ():
            values = _column(name, given[name], n)
            logging_side = not name.startswith("target")
            bad = ~np.isfinite(values) | (values > 1.0)
            bad |= (values <= 0.0) if logging_side else (values < 0.0)
            if bad.any():
                row = _first(bad)
                span = "(0, 1]" if logging_side else "[0, 1]"
                raise OpeInputError(f"{name} must be in {span}; got {values[row]} at row {row}")
            if kind == "slate":
                _, first_row = np.unique(decision, return_index=True)  # codes are 0..D-1
                differs = values != values[first_row][decision]
                if differs.any():
                    row = _first(differs)
                    raise OpeInputError(
                        f"{name} must be the same on every row of a decision; got "
                        f"{values[row]} at row {row}"
                    )
            out[name] = values
    if "target_pscore_item" in given:  # the pseudo-inverse estimator's; no logging-side twin
        values = _column("target_pscore_item", given["target_pscore_item"], n)
        bad = ~np.isfinite(values) | (values < 0.0) | (values > 1.0)
        if bad.any():
            row = _first(bad)
            raise OpeInputError(
                f"target_pscore_item must be in [0, 1]; got {values[row]} at row {row}"
            )
        out["target_pscore_item"] = values
    return out


def decision_keys(ids: np.ndarray) -> np.ndarray:
    """uint64 identities of decision ids, stable across processes: ints keep their value, other
    ids hash by their text (pandas' SipHash with its fixed key)."""
    if ids.dtype.kind in "iu":
        return ids.astype(np.int64).astype(np.uint64)
    return pd.util.hash_array(ids.astype(str).astype(object))


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


BEHAVIORS = ("independent", "cascade", "standard")
"""User-behaviour models of the ``behavior`` column, by code: a row's reward depends on the item
at its own slot (0), on the items at its slot and above (1), or on the whole slate (2)."""


def _behavior_column(values: object | None, n: int) -> np.ndarray | None:
    """The optional ``behavior`` column as int codes 0, 1, 2; names in ``BEHAVIORS`` are read as
    their codes."""
    if values is None:
        return None
    raw = np.asarray(values)
    if raw.dtype.kind in "OUS" and raw.ndim == 1:
        code = {name: float(index) for index, name in enumerate(BEHAVIORS)}
        raw = np.array([code.get(v, v) if isinstance(v, str) else v for v in raw], dtype=object)
    codes = _column("behavior", raw, n)
    bad = ~np.isin(codes, (0.0, 1.0, 2.0))
    if bad.any():
        row = _first(bad)
        raise OpeInputError(
            "behavior must be 0 (independent), 1 (cascade) or 2 (standard); got "
            f"{codes[row]} at row {row}"
        )
    return codes.astype(np.int64)


def _optional_finite(name: str, values: object | None, n: int) -> np.ndarray | None:
    if values is None:
        return None
    array = _column(name, values, n)
    if np.any(~np.isfinite(array)):
        row = _first(~np.isfinite(array))
        raise OpeInputError(f"{name} must be finite; got {array[row]} at row {row}")
    return array


@dataclass(frozen=True)
class OpeBatch:
    """Validated per-row arrays.

    Attributes:
        reward: (n,) observed reward of the logged action.
        pscore: (n,) logging propensity of the logged action, in (0, 1].
        target_pscore: (n,) the target policy's probability of the logged action, in [0, 1].
        decision: (n,) int group of each row (one group per logged decision).
        slot: (n,) int position of each row, or all zeros.
        q_hat: (n,) optional reward model at the logged action (and position), q̂(x_i, a_i);
            finite. None when the input has no reward model.
        v_hat: (n,) optional reward model averaged over the target policy at the row's context
            (and position), v̂_i = Σ_a π_e(a | x_i) q̂(x_i, a); finite, or None.
        pscore_slate, target_pscore_slate: (n,) optional probability of the whole logged slate
            under the logging and the target policy, the same on every row of a decision
            (standard slate IPS).
        pscore_cascade, target_pscore_cascade: (n,) optional probability of the slate's prefix
            up to and including the row's slot (reward-interaction IPS).
        target_pscore_item: (n,) optional probability that the target's slate contains the
            row's item at any position (the pseudo-inverse estimator, ``ope.pseudo_inverse``).
        v_hat_cascade: (n,) optional reward model at the row's slot averaged over the target's
            choice there given the logged items above it,
            ĉ_ik = Σ_a π_e(a at k | x_i, a_i1..a_i,k−1) q̂(x_i, a, k); finite, or None (the
            cascade doubly robust estimator, ``ope.cascade_dr``).
        behavior: (n,) optional int user-behaviour model of each row, 0 (independent), 1
            (cascade) or 2 (standard) as in ``BEHAVIORS``: which positions the row's reward
            depends on (adaptive IPS, ``ope.adaptive_ips``); or None.
        keys: (n_decisions,) uint64 identity of each decision, the same in whichever chunk of a
            larger log it is read (a hash of its ``decision_id``, or its row number in the whole
            input); the bootstrap draws from it. None: 0, 1, 2, ...
    """

    reward: np.ndarray
    pscore: np.ndarray
    target_pscore: np.ndarray
    decision: np.ndarray
    slot: np.ndarray
    q_hat: np.ndarray | None = None
    v_hat: np.ndarray | None = None
    keys: np.ndarray | None = None
    pscore_slate: np.ndarray | None = None
    target_pscore_slate: np.ndarray | None = None
    pscore_cascade: np.ndarray | None = None
    target_pscore_cascade: np.ndarray | None = None
    target_pscore_item: np.ndarray | None = None
    v_hat_cascade: np.ndarray | None = None
    behavior: np.ndarray | None = None

    @classmethod
    def from_arrays(
        cls,
        *,
        reward: object,
        pscore: object,
        target_pscore: object,
        decision_id: object | None = None,
        slot: object | None = None,
        q_hat: object | None = None,
        v_hat: object | None = None,
        slate_pscores: dict[str, object] | None = None,
        v_hat_cascade: object | None = None,
        behavior: object | None = None,
        row_offset: int = 0,
    ) -> OpeBatch:
        """Validate and build; errors name the column and the first bad row, counted from
        ``row_offset`` (the chunk's first row in the whole input)."""
        try:
            return cls._validated(
                reward=reward, pscore=pscore, target_pscore=target_pscore,
                decision_id=decision_id, slot=slot, q_hat=q_hat, v_hat=v_hat,
                slate_pscores=slate_pscores or {}, v_hat_cascade=v_hat_cascade,
                behavior=behavior, row_offset=row_offset,
            )  # fmt: skip
        except OpeInputError as error:
            if not row_offset:
                raise
            shifted = _ROW.sub(lambda m: f"at row {int(m[1]) + row_offset}", str(error))
            raise OpeInputError(shifted) from None

    @classmethod
    def _validated(
        cls,
        *,
        reward: object,
        pscore: object,
        target_pscore: object,
        decision_id: object | None,
        slot: object | None,
        q_hat: object | None,
        v_hat: object | None,
        slate_pscores: dict[str, object],
        v_hat_cascade: object | None,
        behavior: object | None,
        row_offset: int,
    ) -> OpeBatch:
        r = _column("reward", reward, None)
        n = r.size
        if n == 0:
            raise OpeInputError("reward must have at least one row; got 0")
        p = _column("pscore", pscore, n)
        t = _column("target_pscore", target_pscore, n)
        if np.any(~np.isfinite(r)):
            row = _first(~np.isfinite(r))
            raise OpeInputError(f"reward must be finite; got {r[row]} at row {row}")
        bad = ~np.isfinite(p) | (p <= 0.0) | (p > 1.0)
        if bad.any():
            row = _first(bad)
            raise OpeInputError(f"pscore must be in (0, 1]; got {p[row]} at row {row}")
        bad = ~np.isfinite(t) | (t < 0.0) | (t > 1.0)
        if bad.any():
            row = _first(bad)
            raise OpeInputError(f"target_pscore must be in [0, 1]; got {t[row]} at row {row}")
        if decision_id is None:
            decision = np.arange(n)
            keys = np.arange(row_offset, row_offset + n).astype(np.uint64)
        else:
            ids = np.asarray(decision_id)
            if ids.shape != (n,):
                raise OpeInputError(f"decision_id must have {n} rows like reward; got {ids.size}")
            decision, uniques = pd.factorize(ids)
            if np.any(decision < 0):
                row = _first(decision < 0)
                raise OpeInputError(f"decision_id must not be missing; got {ids[row]} at row {row}")
            keys = decision_keys(np.asarray(uniques))
        if slot is None:
            slots = np.zeros(n, dtype=np.int64)
        else:
            s = _column("slot", slot, n)
            bad = ~np.isfinite(s) | (s < 0) | (s != np.round(s))
            if bad.any():
                row = _first(bad)
                raise OpeInputError(
                    f"slot must be a non-negative integer; got {s[row]} at row {row}"
                )
            slots = s.astype(np.int64)
        return cls(
            reward=r,
            pscore=p,
            target_pscore=t,
            decision=decision,
            slot=slots,
            q_hat=_optional_finite("q_hat", q_hat, n),
            v_hat=_optional_finite("v_hat", v_hat, n),
            keys=keys,
            **_slate_columns(slate_pscores, n, decision),
            v_hat_cascade=_optional_finite("v_hat_cascade", v_hat_cascade, n),
            behavior=_behavior_column(behavior, n),
        )

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, *, row_offset: int = 0) -> OpeBatch:
        """From a DataFrame with columns reward, pscore, target_pscore
        [, decision_id, slot, q_hat, v_hat, the slate propensities, v_hat_cascade, behavior];
        optional columns are read when present.
        ``row_offset``: the frame's first row in the whole input (see ``from_arrays``)."""
        missing = [c for c in ("reward", "pscore", "target_pscore") if c not in frame.columns]
        if missing:
            raise OpeInputError(f"missing required column(s): {', '.join(missing)}")
        return cls.from_arrays(
            reward=frame["reward"].to_numpy(),
            pscore=frame["pscore"].to_numpy(),
            target_pscore=frame["target_pscore"].to_numpy(),
            decision_id=frame["decision_id"].to_numpy() if "decision_id" in frame else None,
            slot=frame["slot"].to_numpy() if "slot" in frame else None,
            q_hat=frame["q_hat"].to_numpy() if "q_hat" in frame else None,
            v_hat=frame["v_hat"].to_numpy() if "v_hat" in frame else None,
            slate_pscores={c: frame[c].to_numpy() for c in SLATE_PSCORES if c in frame},
            v_hat_cascade=frame["v_hat_cascade"].to_numpy() if "v_hat_cascade" in frame else None,
            behavior=frame["behavior"].to_numpy() if "behavior" in frame else None,
            row_offset=row_offset,
        )

    @property
    def decision_key(self) -> np.ndarray:
        """(n_decisions,) uint64 decision identities (see ``keys``)."""
        if self.keys is not None:
            return self.keys
        return np.arange(self.n_decisions, dtype=np.uint64)

    @property
    def n_rows(self) -> int:
        return int(self.reward.size)

    @cached_property
    def n_decisions(self) -> int:
        return int(self.decision.max()) + 1

    @cached_property
    def n_slots(self) -> int:
        return int(self.slot.max()) + 1

    @cached_property
    def min_pscore(self) -> float:
        return float(self.pscore.min())

    @cached_property
    def weight(self) -> np.ndarray:
        """Importance weights target_pscore / pscore (computed once)."""
        return self.target_pscore / self.pscore

    @cached_property
    def one_row_per_decision(self) -> bool:
        """Whether every row is its own decision (then ``decision`` is 0, 1, 2, ...)."""
        return self.n_decisions == self.n_rows

    @cached_property
    def weight_stats(self) -> WeightStats:
        """The weight diagnostics' sums over this batch (computed once for all estimators)."""
        return WeightStats.of(self.weight)

    @cached_property
    def value_range(self) -> tuple[float, float]:
        """Smallest and largest of the reward and the reward-model columns."""
        columns = [
            c for c in (self.reward, self.q_hat, self.v_hat, self.v_hat_cascade) if c is not None
        ]
        return float(min(c.min() for c in columns)), float(max(c.max() for c in columns))
