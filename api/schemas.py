"""The HTTP contract: request and response bodies of ``/v1/decisions`` and ``/v1/events``.
The responses are the API's own models, not the log's, so that the log can change its records
without changing what clients receive.

Unknown fields are refused, so that a misspelt field is an error rather than silently ignored.
So is a NUL character (``\\u0000``) in any field, and a time outside the log's range
(:data:`proplog.validation.TIME_RANGE`), each naming the field. Numbers are strict: ``"10"``,
``true`` or ``2.5`` is not an integer, and ``true`` is not a number.

Every refusal and failure has one body, :class:`ErrorBody`: ``{"message": ..., "detail":
[{"field", "message", "type"}, ...]}``, where ``field`` is the request's own field path
(``candidates.3``, ``context.local_time``), or ``body``, ``authorization``, ``database``,
``server`` for what is not a field.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from proplog.validation import NUL, time_in_range_message
from vocab import EventKind, EventSource, Surface

Identifier = Annotated[str, Field(min_length=1, max_length=128)]
ItemId = Annotated[int, Field(strict=True, ge=0, le=2**63 - 1)]
MAX_K = 500
"""The schema's bound on ``k``; a service serves at most its own ``max_k`` (``Settings.max_k``,
at most this), which its OpenAPI document states."""


class ErrorDetail(BaseModel):
    """One reason a request was refused or failed."""

    field: str = Field(
        description="The request's field path (e.g. candidates.3), or body, "
        "authorization, database, server"
    )
    message: str
    type: str = Field(description="A machine-readable kind, e.g. int_type, conflict, unknown")


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx answer."""

    message: str = Field(description="The first reason, in words, starting with its field")
    detail: list[ErrorDetail] = Field(min_length=1)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        """Every field, before its own parsing: PostgreSQL's text cannot hold a NUL."""
        if isinstance(value, str) and NUL in value:
            raise ValueError("must be a string without NUL (\\u0000) characters")
        return value


def _iso_text(value: Any) -> Any:
    """A time must come as ISO 8601 text: a number (seconds? milliseconds?) is refused."""
    if value is not None and not isinstance(value, str | datetime):
        raise ValueError("must be an ISO 8601 time with its UTC offset, as text")
    return value


def _in_log_range(value: datetime | None) -> datetime | None:
    """An aware time inside the log's range (years 1970..2261, UTC), else ``ValueError``."""
    why = None if value is None else time_in_range_message(value)
    if why is not None:
        raise ValueError(f"must be {why}")
    return value


class RequestContext(_Body):
    """What the client knows about the request."""

    device: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = Field(
        default=None, description="ISO 3166-1 alpha-2 country code, e.g. US"
    )
    local_time: AwareDatetime | None = Field(
        default=None, description="The user's local time with its UTC offset (ISO 8601)"
    )
    query: Annotated[str, Field(max_length=512)] | None = None
    source_item: ItemId | None = None

    _local_time_as_text = field_validator("local_time", mode="before")(_iso_text)
    _local_time_in_range = field_validator("local_time")(_in_log_range)


class DecisionRequest(_Body):
    user_id: Identifier
    surface: Surface
    context: RequestContext = Field(default_factory=RequestContext)
    decision_id: uuid.UUID | None = Field(
        default=None, description="Client idempotency key; the server makes one when absent"
    )
    deferred: Annotated[bool, Field(strict=True)] = Field(
        default=False,
        description="The slate may not be shown (below the fold, a prefetch): it counts as "
        "shown only once POST /v1/decisions/{decision_id}/activate is called before "
        "activation_expires_at",
    )
    candidates: Annotated[list[ItemId], Field(min_length=1, max_length=10_000)] | None = Field(
        default=None,
        description="Unique item ids of the catalog to rank; the whole catalog when absent",
    )
    k: Annotated[int, Field(strict=True, ge=1, le=MAX_K)] = Field(
        default=10,
        description="Slate length: at most the service's max_k, and at most the number of "
        "candidates when they are given",
    )

    @field_validator("candidates")
    @classmethod
    def _unique(cls, value: list[int] | None) -> list[int] | None:
        seen: set[int] = set()
        for item in value or ():
            if item in seen:
                raise ValueError(f"must be unique item ids; {item} appears twice")
            seen.add(item)
        return value

    @field_validator("k")
    @classmethod
    def _at_most_candidates(cls, value: int, info: ValidationInfo) -> int:
        """A slate longer than the candidate list is refused, not silently shortened."""
        candidates = info.data.get("candidates")
        if candidates is not None and value > len(candidates):
            raise ValueError(
                f"must be at most the number of candidates ({len(candidates)}); got {value}"
            )
        return value


class PolicyInfo(BaseModel):
    name: str
    version: str
    params: dict[str, object]


class SlatePosition(BaseModel):
    """One position of a slate. ``propensity`` is ``None`` only when marginals are not exact."""

    position: int
    item_id: int
    score: float
    propensity: float | None
    cond_propensity: float
    prefix_propensity: float
    explored: bool


class DecisionResponse(BaseModel):
    decision_id: str
    created_at: AwareDatetime
    user_id: str
    surface: str
    policy: PolicyInfo
    model_version: str
    marginals_exact: bool
    slate: list[SlatePosition] = Field(description="Per position (0 = top), with its propensities")
    replayed: bool = Field(description="True when this decision_id was already stored")
    deferred: bool = Field(
        description="True when the decision was asked for deferred: it counts as shown only "
        "once activated"
    )
    activation_expires_at: AwareDatetime | None = Field(
        description="A deferred decision counts as shown only if activated before this time; "
        "null when not deferred"
    )


class EventRequest(_Body):
    event_id: Identifier
    user_id: Identifier
    item_id: ItemId
    kind: EventKind
    value: float = Field(default=0.0, ge=0.0, strict=True, description="e.g. seconds watched")
    source: EventSource
    decision_id: uuid.UUID | None = Field(
        default=None, description="The decision whose slate showed the item (source rec)"
    )
    position: Annotated[int, Field(strict=True, ge=0)] | None = Field(
        default=None,
        description="The item's position in that decision's slate; only with decision_id. "
        "Without it, item_id must still be an item of that slate",
    )
    created_at: AwareDatetime | None = Field(
        default=None, description="When it happened; the server's time when absent"
    )

    _created_at_as_text = field_validator("created_at", mode="before")(_iso_text)
    _created_at_in_range = field_validator("created_at")(_in_log_range)

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("value must be a finite number")
        return value


class EventResponse(BaseModel):
    event_id: str
    created: bool = Field(description="False when this event_id was already stored (a no-op)")


class ActivationResponse(BaseModel):
    """The answer to ``POST /v1/decisions/{decision_id}/activate``."""

    decision_id: str
    activated_at: AwareDatetime = Field(description="When the decision was (first) activated")
    activated: bool = Field(description="Always true: the decision counts as shown")
    replayed: bool = Field(description="True when the decision was already activated")
