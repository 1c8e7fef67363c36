"""How the API refuses a request: the JSON body of a refusal, the request-validation handler,
the table of domain errors with the status each one answers, and what a failure of the service
itself answers.

A database that cannot be reached, or that stays locked past ``Settings.db_timeout_seconds``
(SQLAlchemy's ``OperationalError``, ``InterfaceError`` or pool ``TimeoutError``; any other
``DBAPIError`` too) answers 503 with ``Retry-After`` and the JSON error body
``{"message": ..., "detail": [{"field": "database", ...}]}``, never the driver's text, the SQL or
the URL; any other unexpected error answers 500 in the same shape. Both are counted in
``loopbreak_http_errors_total{status, cause}``. A decision is answered 201 only after its write
committed, so a 503 means that it was not logged (a retry with the same ``decision_id`` is safe).
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc

from api.metrics import ServiceMetrics
from loop.service import NoCandidatesError, UnknownCandidatesError
from proplog.errors import ConflictError, LogValidationError, UnknownDecisionError

logger = logging.getLogger(__name__)

# Domain errors and how the API answers them: (status, the field to name when the error does not
# carry its own ``field``).
REFUSALS: dict[type[Exception], tuple[int, str | None]] = {
    LogValidationError: (status.HTTP_422_UNPROCESSABLE_CONTENT, None),
    UnknownCandidatesError: (status.HTTP_422_UNPROCESSABLE_CONTENT, "candidates"),
    NoCandidatesError: (status.HTTP_422_UNPROCESSABLE_CONTENT, "candidates"),
    UnknownDecisionError: (status.HTTP_404_NOT_FOUND, "decision_id"),
    ConflictError: (status.HTTP_409_CONFLICT, None),
}


def refusal(
    metrics: ServiceMetrics, status_code: int, message: str, **extra: object
) -> JSONResponse:
    """The body ``{"message": ..., **extra}`` with ``status_code``, counted as a rejection."""
    metrics.rejected.labels(str(status_code)).inc()
    return JSONResponse(status_code=status_code, content={"message": message, **extra})


def _location(loc: tuple[object, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    detail = [
        {"field": _location(tuple(e["loc"])), "message": e["msg"], "type": e["type"]}
        for e in errors
    ]
    return refusal(
        request.app.state.metrics,
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        f"{_location(tuple(first['loc']))}: {first['msg']}",
        detail=detail,
    )


async def _refuse(request: Request, exc: Exception) -> JSONResponse:
    status_code, field = next(v for t, v in REFUSALS.items() if isinstance(exc, t))
    named = getattr(exc, "field", None) or field
    return refusal(
        request.app.state.metrics, status_code, str(exc), **({"field": named} if named else {})
    )


# Errors of the database itself (not of the request): each answers 503, with its cause label.
UNAVAILABLE: dict[type[Exception], str] = {
    sa_exc.OperationalError: "database_unavailable",  # unreachable, locked past the timeout
    sa_exc.InterfaceError: "database_unavailable",  # connection closed under the driver
    sa_exc.TimeoutError: "database_unavailable",  # no pooled connection within the timeout
    sa_exc.DBAPIError: "database_error",  # any other error the driver raised
}


def error_body(message: str, *, field: str, kind: str) -> dict[str, object]:
    """The service's error body: ``{"message": ..., "detail": [{"field", "message", "type"}]}``."""
    return {"message": message, "detail": [{"field": field, "message": message, "type": kind}]}


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
    retry_after = max(1, math.ceil(request.app.state.settings.db_timeout_seconds))
    request.app.state.metrics.http_errors.labels("503", cause).inc()
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content=error_body(
            f"the database is unavailable; nothing was written, retry in {retry_after} s",
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


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    for error_type in REFUSALS:
        app.add_exception_handler(error_type, _refuse)
    for error_type in UNAVAILABLE:
        app.add_exception_handler(error_type, _unavailable)
    app.add_exception_handler(Exception, _internal)
