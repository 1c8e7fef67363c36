"""How the API refuses a request: the JSON body of a refusal, the request-validation handler,
the table of domain errors with the status each one answers, and what a failure of the service
itself answers.

A database that cannot be reached, or that stays locked past ``Settings.db_timeout_seconds``
(SQLAlchemy's ``OperationalError``, ``InterfaceError`` or pool ``TimeoutError``; any other
``DBAPIError`` too), or a batch writer that stopped (``WriterStoppedError``), answers 503 with
``Retry-After`` and the JSON error body
``{"message": ..., "detail": [{"field": "database", ...}]}``, never the driver's text, the SQL or
the URL; any other unexpected error answers 500 in the same shape. Both are counted in
``loopbreak_http_errors_total{status, cause}``. A decision is answered 201 only after its write
committed, so a 503 means that it was not logged (a retry with the same ``decision_id`` is safe).
An overloaded worker answers 503 too (field ``server``, type ``overloaded``, cause label
``overloaded``; :mod:`api.admission`).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.metrics import ServiceMetrics
from loop.service import NoCandidatesError, UnknownCandidatesError
from proplog.errors import (
    ConflictError,
    LogValidationError,
    UnknownDecisionError,
    WriterStoppedError,
)

logger = logging.getLogger(__name__)

# Domain errors and how the API answers them: (status, type, the field to name when the error
# does not carry its own ``field``).
REFUSALS: dict[type[Exception], tuple[int, str, str]] = {
    LogValidationError: (status.HTTP_422_UNPROCESSABLE_CONTENT, "invalid", "body"),
    UnknownCandidatesError: (status.HTTP_422_UNPROCESSABLE_CONTENT, "unknown_items", "candidates"),
    NoCandidatesError: (status.HTTP_422_UNPROCESSABLE_CONTENT, "no_candidates", "candidates"),
    UnknownDecisionError: (status.HTTP_404_NOT_FOUND, "not_found", "decision_id"),
    ConflictError: (status.HTTP_409_CONFLICT, "conflict", "body"),
}

_BATCH_PREFIX = re.compile(r"^(?:events|decisions)\[\d+\]\.")
"""The log names a record's field inside its batch (``events[0].item_id``); the client sent
one record, so the answer names the field alone."""


def error_body(message: str, *, field: str, kind: str) -> dict[str, object]:
    """The service's error body: ``{"message": ..., "detail": [{"field", "message", "type"}]}``."""
    return {"message": message, "detail": [{"field": field, "message": message, "type": kind}]}


def refusal(
    metrics: ServiceMetrics,
    status_code: int,
    message: str,
    *,
    field: str = "body",
    kind: str = "invalid",
    detail: list[dict[str, object]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """:func:`error_body` with ``status_code`` (or ``detail`` as given), counted as a
    rejection."""
    metrics.rejected.labels(str(status_code)).inc()
    body = error_body(message, field=field, kind=kind)
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(status_code=status_code, content=body, headers=headers)


def _location(error: Mapping[str, Any]) -> str:
    """The client's field path of a validation error: ``candidates.3``, ``context.local_time``;
    ``body`` for the body as a whole (including JSON that does not parse, which pydantic locates
    at a character offset)."""
    if error["type"] == "json_invalid":
        return "body"
    loc = list(error["loc"])
    if loc and loc[0] in ("body", "path", "query", "header", "cookie"):
        loc = loc[1:]  # where FastAPI found it; the client knows its field by name
    return ".".join(str(p) for p in loc) or "body"


def _reason(error: Mapping[str, Any]) -> str:
    """pydantic's message, except where it speaks of Python rather than of the request."""
    if error["type"] == "json_invalid":
        return f"must be valid JSON ({error.get('ctx', {}).get('error', 'JSON decode error')})"
    if error["type"] in ("model_attributes_type", "dict_type") and _location(error) == "body":
        return "must be a JSON object (with Content-Type: application/json)"
    if error["type"] == "missing" and _location(error) == "body":
        return "must be a JSON object; the request has no body"
    return str(error["msg"]).removeprefix("Value error, ")


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors() or [{"loc": (), "msg": "invalid request", "type": "invalid"}]
    detail: list[dict[str, object]] = [
        {"field": _location(e), "message": _reason(e), "type": e["type"]} for e in errors
    ]
    first = detail[0]
    return refusal(
        request.app.state.metrics,
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        f"{first['field']}: {first['message']}",
        detail=detail,
    )


def _client_field(exc: Exception, default: str) -> str:
    named = getattr(exc, "field", None) or getattr(exc, "where", None) or default
    return _BATCH_PREFIX.sub("", str(named))


def _client_message(exc: Exception) -> str:
    if isinstance(exc, LogValidationError):
        return f"{_BATCH_PREFIX.sub('', exc.field)} must be {exc.expected}; got {exc.got!r}"
    return _BATCH_PREFIX.sub("", str(exc))


async def _refuse(request: Request, exc: Exception) -> JSONResponse:
    status_code, kind, field = next(v for t, v in REFUSALS.items() if isinstance(exc, t))
    return refusal(
        request.app.state.metrics,
        status_code,
        _client_message(exc),
        field=_client_field(exc, field),
        kind=kind,
    )


# Errors of the database itself (not of the request): each answers 503, with its cause label.
UNAVAILABLE: dict[type[Exception], str] = {
    WriterStoppedError: "log_writer_stopped",  # the worker's batch writer no longer writes
    sa_exc.OperationalError: "database_unavailable",  # unreachable, locked past the timeout
    sa_exc.InterfaceError: "database_unavailable",  # connection closed under the driver
    sa_exc.TimeoutError: "database_unavailable",  # no pooled connection within the timeout
    sa_exc.DBAPIError: "database_error",  # any other error the driver raised
}


def retry_after_s(db_timeout_seconds: float) -> int:
    """What a 503 for the log tells a client to wait (``Retry-After``, whole seconds): the
    service's bound on a wait for the database, at least 1."""
    return max(1, math.ceil(db_timeout_seconds))


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    cause = next(c for t, c in UNAVAILABLE.items() if isinstance(exc, t))
    orig = getattr(exc, "orig", None) or exc
    logger.warning(
        "%s %s: database error (%s), answered 503: %s",
        request.method,
        request.url.path,
        cause,
        f"{type(orig).__name__}: {str(orig).splitlines()[0] if str(orig) else ''}",
    )
    retry_after = retry_after_s(request.app.state.settings.db_timeout_seconds)
    request.app.state.metrics.http_errors.labels("503", cause).inc()
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content=error_body(
            f"the log is unavailable ({cause}); nothing was written, retry in {retry_after} s",
            field="database",
            kind=cause,
        ),
        headers={"Retry-After": str(retry_after)},
    )


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    """Any other error: a JSON 500 (Starlette logs the traceback and re-raises after it)."""
    request.app.state.metrics.http_errors.labels("500", "internal").inc()
    return JSONResponse(
        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        content=error_body("internal error", field="server", kind="internal"),
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own refusals (no such path 404, a method the path does not take 405) in the
    service's error shape, with their headers (``Allow``); FastAPI's 400 for a body it could not
    decode is the 422 of any other unparsable body."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == status.HTTP_400_BAD_REQUEST:  # a body FastAPI could not decode
        return refusal(
            request.app.state.metrics,
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "body: must be valid JSON in UTF-8 (the body could not be decoded)",
            field="body",
            kind="json_invalid",
        )
    field = "method" if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED else "path"
    kind = "method_not_allowed" if field == "method" else "not_found"
    message = f"{field}: {request.method if field == 'method' else request.url.path} "
    message += f"({exc.detail})"
    return refusal(
        request.app.state.metrics,
        exc.status_code,
        message,
        field=field,
        kind=kind,
        headers=exc.headers,
    )


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    for error_type in REFUSALS:
        app.add_exception_handler(error_type, _refuse)
    for error_type in UNAVAILABLE:
        app.add_exception_handler(error_type, _unavailable)
    app.add_exception_handler(Exception, _internal)
