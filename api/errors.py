"""How the API refuses a request: the JSON body of a refusal, the request-validation handler,
and the table of domain errors with the status each one answers."""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.metrics import ServiceMetrics
from loop.service import NoCandidatesError, UnknownCandidatesError
from proplog.errors import ConflictError, LogValidationError, UnknownDecisionError

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


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    for error_type in REFUSALS:
        app.add_exception_handler(error_type, _refuse)
