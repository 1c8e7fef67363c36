"""The rules of the propensity log: what a valid decision and a valid event look like.

Owns every check that the store applies before it writes, each raising
:class:`proplog.errors.LogValidationError` with the field path (``slate[2].propensity``,
``candidate_scores[5]``, ``decision_id``). The pydantic models in :mod:`proplog.schema` call
:func:`validate_decision` and :func:`validate_event` from their ``model_validator``; the store
turns any pydantic ``ValidationError`` back into a ``LogValidationError`` with
:func:`from_pydantic_error`.

The validators also normalize, in place: ids that are UUIDs become their canonical lowercase
hyphenated form, datetimes become UTC, and JSON-valued fields become what a JSON round trip
gives back (so that a stored record compares equal to the one given).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from proplog.errors import LogValidationError
from vocab import EVENT_KINDS, EVENT_SOURCES, SURFACES

if TYPE_CHECKING:
    from proplog.schema import DecisionCreate, EventCreate

MAX_ID_LENGTH = 128
MAX_ITEM_ID = 2**63 - 1
"""Item ids are stored as int64."""
PREFIX_REL_TOL = 1e-9
"""Relative tolerance of ``prefix[k] == prefix[k-1] * cond[k]``."""
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2262, 1, 1, tzinfo=UTC)
"""A record's time is in ``[EARLIEST_TIME, LATEST_TIME)``: from the Unix epoch (time-ordered
UUIDs start there), to before the end of what pandas' nanosecond timestamps hold (2262-04-11),
which the exports and OPE read the log as. Times near Python's own limits (years 1 and 9999)
would overflow when converted to UTC."""
TIME_RANGE = "from 1970-01-01T00:00:00Z up to (not including) 2262-01-01T00:00:00Z"
"""The accepted range in words, for error messages."""


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def check_uuid(value: Any, field: str) -> str:
    """Return ``value`` as a canonical UUID string, or raise."""
    if type(value) is str and _CANONICAL_UUID.fullmatch(value):
        return value  # already canonical: what str(uuid.UUID(value)) gives back
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        raise LogValidationError(field, "a UUID string", value) from None


def check_aware_utc(value: Any, field: str) -> datetime:
    """Return ``value`` converted to UTC; a naive datetime is refused."""
    if not isinstance(value, datetime):
        raise LogValidationError(field, "a timezone-aware datetime", value)
    if value.tzinfo is None or value.utcoffset() is None:
        raise LogValidationError(
            field, "a timezone-aware datetime (naive datetimes are refused; use UTC)", value
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:  # within a day of datetime.min or datetime.max
        raise LogValidationError(
            field, f"a timezone-aware datetime {TIME_RANGE}", value.isoformat()
        ) from None


def time_in_range_message(value: datetime) -> str | None:
    """Why an aware ``value`` is outside the log's time range (:data:`EARLIEST_TIME`..
    :data:`LATEST_TIME`), or ``None`` when it is inside. Never overflows."""
    offset = value.utcoffset() or timedelta(0)
    naive = value.replace(tzinfo=None)
    # Compare the local wall time against the bounds shifted by the offset: no UTC conversion.
    if naive < EARLIEST_TIME.replace(tzinfo=None) + offset:
        return f"a time {TIME_RANGE}"
    if naive >= LATEST_TIME.replace(tzinfo=None) + offset:
        return f"a time {TIME_RANGE}"
    return None


def check_record_time(value: Any, field: str) -> datetime:
    """A record's time: timezone-aware, within the log's range, returned in UTC."""
    if isinstance(value, datetime) and value.tzinfo is not None and value.utcoffset() is not None:
        why = time_in_range_message(value)
        if why is not None:
            raise LogValidationError(field, why, value.isoformat())
    return check_aware_utc(value, field)


NUL = "\x00"
"""PostgreSQL's text cannot hold it (psycopg refuses the value), so no back end stores it."""


def check_no_nul(value: Any, field: str) -> Any:
    """``value`` unchanged unless it is a string with a NUL character."""
    if isinstance(value, str) and NUL in value:
        raise LogValidationError(field, "a string without NUL (\\u0000) characters", value)
    return value


def check_name(value: Any, field: str, *, max_length: int = MAX_ID_LENGTH) -> str:
    """A non-empty string of at most ``max_length`` characters, without NUL."""
    if not isinstance(value, str) or not 1 <= len(value) <= max_length:
        raise LogValidationError(field, f"a string of 1..{max_length} characters", value)
    return check_no_nul(value, field)


def check_optional_text(value: Any, field: str) -> str | None:
    """``None`` or a string without NUL."""
    if value is not None and not isinstance(value, str):
        raise LogValidationError(field, "a string or null", value)
    return check_no_nul(value, field)


def check_choice(value: Any, choices: Sequence[str], field: str) -> str:
    if value not in choices:
        raise LogValidationError(field, "one of " + ", ".join(choices), value)
    return value


def check_finite(value: Any, field: str) -> float:
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise LogValidationError(field, "a finite number", value)
    return value


def check_probability(value: Any, field: str) -> float:
    """A propensity: finite and in (0, 1]."""
    if not isinstance(value, int | float) or not math.isfinite(value) or not 0 < value <= 1:
        raise LogValidationError(field, "in (0, 1]", value)
    return value


def check_non_negative_int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LogValidationError(field, "an integer >= 0", value)
    return value


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays become plain Python values; anything else is refused."""
    for method in ("tolist", "item"):
        convert = getattr(value, method, None)
        if callable(convert):
            return convert()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_JSON_SCALARS = (str, int, bool, type(None))


def _is_flat_json(value: Any) -> bool:
    """A dict of str keys to str, int, bool, None or finite float: a JSON round trip gives back
    an equal copy of it (the common exploration record: ``{"epsilon": 0.1, "pool": 100}``)."""
    return type(value) is dict and all(
        type(k) is str and (type(v) in _JSON_SCALARS or (type(v) is float and math.isfinite(v)))
        for k, v in value.items()
    )


def to_json_value(value: Any, field: str) -> Any:
    """Return ``value`` as a JSON round trip gives it back (numpy values become Python ones).

    NaN and infinities are refused: PostgreSQL's JSON has no such values.
    """
    if _is_flat_json(value):
        return dict(value)
    try:
        return json.loads(json.dumps(value, allow_nan=False, default=_json_default))
    except (TypeError, ValueError) as exc:
        raise LogValidationError(
            field, f"JSON-serializable with finite numbers ({exc})", value
        ) from None


def _candidates_look_valid(d: DecisionCreate, distinct: set[int]) -> bool:
    """The common case in a few C-level passes; ``False`` sends the record to the detailed checks.

    Sound, not complete: ``True`` only when every rule of :func:`_explain_candidates` holds.
    """
    ids, scores = d.candidate_ids, d.candidate_scores
    # This runs after pydantic, which made every id an int and every score a float. A sum of
    # floats is finite only if every term is (a NaN or an infinity carries through; a finite
    # sum that overflows only sends valid scores to the detailed checks).
    return (
        bool(ids)
        and min(ids) >= 0
        and max(ids) <= MAX_ITEM_ID
        and len(distinct) == len(ids)
        and len(scores) == len(ids)
        and math.isfinite(sum(scores))
    )


def _check_candidates(d: DecisionCreate, distinct: set[int]) -> None:
    if not _candidates_look_valid(d, distinct):
        _explain_candidates(d)


def _explain_candidates(d: DecisionCreate) -> None:
    """Raise for the first broken rule of the candidates, naming the field."""
    if not d.candidate_ids:
        raise LogValidationError("candidate_ids", "a non-empty list", d.candidate_ids)
    first_index: dict[int, int] = {}
    for i, item in enumerate(d.candidate_ids):
        check_non_negative_int(item, f"candidate_ids[{i}]")
        if item > MAX_ITEM_ID:
            raise LogValidationError(f"candidate_ids[{i}]", f"at most {MAX_ITEM_ID} (int64)", item)
        if item in first_index:
            raise LogValidationError(
                f"candidate_ids[{i}]",
                f"unique (duplicate of candidate_ids[{first_index[item]}])",
                item,
            )
        first_index[item] = i
    if len(d.candidate_scores) != len(d.candidate_ids):
        raise LogValidationError(
            "candidate_scores",
            f"the same length as candidate_ids ({len(d.candidate_ids)})",
            f"length {len(d.candidate_scores)}",
        )
    for i, score in enumerate(d.candidate_scores):
        check_finite(score, f"candidate_scores[{i}]")


def _slate_looks_valid(d: DecisionCreate, candidates: set[int]) -> bool:
    """Every rule of :func:`_explain_slate` as one quick pass that builds no messages.

    Sound, not complete: ``True`` only when the slate is valid; ``False`` sends the record to
    :func:`_explain_slate`, which names the broken field (or accepts, for example, an int score).
    The tests are written out inline (``0.0 < x <= 1.0`` on an exact float, and
    ``math.isclose(prefix, previous * cond, rel_tol=PREFIX_REL_TOL)`` as its formula): this runs
    for every position of every logged decision.
    """
    if not d.slate:
        return False
    seen: set[int] = set()
    exact = d.marginals_exact
    previous = 1.0
    for k, s in enumerate(d.slate):
        item, propensity = s.item_id, s.propensity
        cond, prefix, score = s.cond_propensity, s.prefix_propensity, s.score
        if (
            s.position != k
            or type(item) is not int
            or item < 0
            or item in seen
            or item not in candidates
            or type(score) is not float
            or not -math.inf < score < math.inf
            or type(cond) is not float
            or not 0.0 < cond <= 1.0
            or type(prefix) is not float
            or not 0.0 < prefix <= 1.0
        ):
            return False
        want = previous * cond
        if abs(prefix - want) > PREFIX_REL_TOL * max(abs(prefix), abs(want)):
            return False
        if propensity is None:
            if exact:
                return False
        elif (
            type(propensity) is not float
            or not 0.0 < propensity <= 1.0
            or (exact and propensity < prefix * (1 - PREFIX_REL_TOL))
        ):
            return False
        seen.add(item)
        previous = prefix
    return True


def _check_slate(d: DecisionCreate, candidates: set[int]) -> None:
    if not _slate_looks_valid(d, candidates):
        _explain_slate(d)


def _explain_slate(d: DecisionCreate) -> None:
    """Raise for the first broken rule of the slate, naming the field (``slate[3].propensity``)."""
    if not d.slate:
        raise LogValidationError("slate", "a non-empty list", d.slate)
    candidates = set(d.candidate_ids)
    seen: dict[int, int] = {}
    for k, s in enumerate(d.slate):
        at = f"slate[{k}]"
        if s.position != k:
            raise LogValidationError(
                f"{at}.position", f"{k} (positions are 0..K-1 in slate order)", s.position
            )
        check_non_negative_int(s.item_id, f"{at}.item_id")
        if s.item_id in seen:
            raise LogValidationError(
                f"{at}.item_id",
                f"not already in the slate (duplicate of slate[{seen[s.item_id]}])",
                s.item_id,
            )
        seen[s.item_id] = k
        if s.item_id not in candidates:
            raise LogValidationError(
                f"{at}.item_id", "one of candidate_ids (unknown item id)", s.item_id
            )
        check_finite(s.score, f"{at}.score")
        if s.propensity is None:
            if d.marginals_exact:
                raise LogValidationError(
                    f"{at}.propensity", "a number when marginals_exact is true", None
                )
        else:
            check_probability(s.propensity, f"{at}.propensity")
        check_probability(s.cond_propensity, f"{at}.cond_propensity")
        check_probability(s.prefix_propensity, f"{at}.prefix_propensity")
        if k == 0:
            want, how = s.cond_propensity, "slate[0].cond_propensity"
        else:
            want = d.slate[k - 1].prefix_propensity * s.cond_propensity
            how = f"slate[{k - 1}].prefix_propensity * {at}.cond_propensity"
        if not math.isclose(s.prefix_propensity, want, rel_tol=PREFIX_REL_TOL, abs_tol=0.0):
            raise LogValidationError(
                f"{at}.prefix_propensity",
                f"{how} = {want!r} (to {PREFIX_REL_TOL:g} relative)",
                s.prefix_propensity,
            )
        # An exact marginal P(item at k) can never be below P(this exact prefix).
        if (
            d.marginals_exact
            and s.propensity is not None
            and s.propensity < s.prefix_propensity * (1 - PREFIX_REL_TOL)
        ):
            raise LogValidationError(
                f"{at}.propensity",
                f">= {at}.prefix_propensity ({s.prefix_propensity!r}) when marginals are exact",
                s.propensity,
            )


def validate_decision(d: DecisionCreate) -> None:
    """Check every rule of a decision record; normalize ids, datetimes and JSON in place."""
    d.decision_id = check_uuid(d.decision_id, "decision_id")
    d.created_at = check_record_time(d.created_at, "created_at")
    check_name(d.user_id, "user_id")
    check_choice(d.surface, SURFACES, "surface")
    for name in ("device", "country", "local_time", "query", "arm"):
        check_optional_text(getattr(d, name), name)
    for name in ("policy_name", "policy_version", "model_version"):
        check_name(getattr(d, name), name)
    if d.source_item is not None:
        check_non_negative_int(d.source_item, "source_item")
    if not isinstance(d.exploration, dict):
        raise LogValidationError("exploration", "a JSON object (dict)", d.exploration)
    d.exploration = to_json_value(d.exploration, "exploration")
    candidates = set(d.candidate_ids)  # one set for both checks: built once per record
    _check_candidates(d, candidates)
    _check_slate(d, candidates)


def validate_event(e: EventCreate) -> None:
    """Check every rule of an event that needs no database; normalize in place."""
    check_name(e.event_id, "event_id")
    e.created_at = check_record_time(e.created_at, "created_at")
    check_name(e.user_id, "user_id")
    check_non_negative_int(e.item_id, "item_id")
    check_choice(e.kind, EVENT_KINDS, "kind")
    check_choice(e.source, EVENT_SOURCES, "source")
    if not isinstance(e.value, int | float) or not math.isfinite(e.value) or e.value < 0:
        raise LogValidationError("value", "a finite number >= 0", e.value)
    if e.decision_id is not None:
        e.decision_id = check_uuid(e.decision_id, "decision_id")
    if e.position is not None:
        check_non_negative_int(e.position, "position")
        if e.decision_id is None:
            raise LogValidationError("position", "given only together with decision_id", e.position)


def _format_loc(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def from_pydantic_error(exc: ValidationError) -> LogValidationError:
    """The first error of a pydantic ``ValidationError`` as a ``LogValidationError``.

    An error that one of our validators raised comes back as it was (with the location pydantic
    adds in front of it); a type error becomes ``"<path> must be <pydantic's message>"``.
    """
    first = exc.errors()[0]
    path = _format_loc(first["loc"])
    original = first.get("ctx", {}).get("error")
    if isinstance(original, LogValidationError):
        return original.with_prefix(f"{path}.") if path else original
    if first["type"] == "missing":
        return LogValidationError(path or "<record>", "given (field required)", "nothing")
    message = first["msg"]
    for lead in ("Input should be ", "Value error, "):
        if message.startswith(lead):
            message = message[len(lead) :]
    return LogValidationError(path or "<record>", message, first.get("input"))
