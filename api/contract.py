"""The service's OpenAPI document, made exact: every status an operation can answer is declared
with its body, so that a client generated from the document (or a schema test) meets no
undeclared answer.

FastAPI declares what the routes name (their success bodies, and 401/403/404/409 where a route or
:mod:`api.auth` names them) and a 422 in its own ``HTTPValidationError`` shape, which this
service never sends. :func:`install_openapi` rewrites the generated document once, on its first
request:

- every 4xx and 5xx is :class:`api.schemas.ErrorBody` (FastAPI's ``HTTPValidationError`` and
  ``ValidationError`` schemas are removed);
- an operation with a request body also declares 413 (:mod:`api.body_limit`) and 422;
- an operation under ``/v1/`` (they read or write the log) declares 503 with its
  ``Retry-After`` header, for an overloaded worker (:mod:`api.admission`) or a database that is
  unavailable (:mod:`api.errors`); every operation declares 500;
- ``DecisionRequest.k`` has this service's ``max_k`` as its maximum.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from api.settings import Settings

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}

DESCRIPTIONS: dict[str, str] = {
    "401": "no API key, or one that is malformed, unknown or revoked",
    "403": "the API key does not have the scope this operation needs",
    "404": "the named decision is not stored",
    "409": "the idempotency key was stored with different content; detail names the field",
    "413": "the request body is larger than the service reads (LOOPBREAK_MAX_BODY_BYTES)",
    "422": "the request breaks a rule; detail names each field and the expectation",
    "500": "an unexpected error; nothing was acknowledged",
    "503": "the service is overloaded (no request slot free within LOOPBREAK_QUEUE_TIMEOUT_MS: "
    "type overloaded, field server), or the database is unavailable or busy past the service's "
    "bound (field database); nothing was written, retry after Retry-After seconds",
}

RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def _error_response(code: str, given: dict[str, Any] | None) -> dict[str, Any]:
    described = (given or {}).get("description")
    if described in (None, "", "Validation Error"):  # FastAPI's default for its own 422 shape
        described = DESCRIPTIONS.get(code, "refused")
    response: dict[str, Any] = {
        "description": described,
        "content": {"application/json": {"schema": ERROR_REF}},
    }
    if code == "503":
        response["headers"] = RETRY_AFTER
    return response


def exact_responses(path: str, operation: dict[str, Any]) -> dict[str, Any]:
    """``operation``'s responses with every error declared as :class:`ErrorBody`."""
    responses = dict(operation.get("responses", {}))
    wanted = {"500"}
    if "requestBody" in operation:
        wanted |= {"413", "422"}
    if operation.get("parameters"):
        wanted.add("422")
    if path.startswith("/v1/"):
        wanted.add("503")
    for code in sorted(wanted | {c for c in responses if c[0] in "45"}):
        responses[code] = _error_response(code, responses.get(code))
    return responses


def exact_document(document: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The generated ``document``, made exact (see the module docstring)."""
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            operation["responses"] = exact_responses(path, operation)
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    k = schemas.get("DecisionRequest", {}).get("properties", {}).get("k")
    if k is not None:
        k["maximum"] = settings.max_k
    return document


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Serve :func:`exact_document` as the app's OpenAPI document (built once, then cached)."""
    generate = app.openapi
    exact: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        if not exact:
            exact.append(exact_document(generate(), settings))
        return exact[0]

    setattr(app, "openapi", openapi)  # noqa: B010 - FastAPI's documented way to replace it
