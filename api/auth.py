"""Who may call the service: API keys with scopes, checked on every protected route.

Owns the check of a request's key, the scope each route needs, the short-lived cache of
verified keys, the 401/403 refusals, and what the OpenAPI document says about them.

- A client sends its token (``lb_<key_id>_<secret>``, made by ``loopbreak keys create``; see
  :mod:`proplog.api_keys`) as ``Authorization: Bearer <token>`` or as ``X-API-Key: <token>``;
  when both are present the ``Authorization`` header is the one checked. A token anywhere else
  (the query string, a cookie) is not read.
- Scopes by route (:func:`scope_of`): ``/v1/decisions...`` needs ``decide``, ``/v1/events...``
  needs ``events``, ``/healthz`` is open (it names the model, policy and the database URL with
  its password masked, nothing secret), and every other route, ``/metrics`` included, needs
  ``admin``, so a route added later is closed until it is given a scope here. ``admin`` implies
  ``decide`` and ``events`` (:meth:`proplog.api_keys.ApiKeyRecord.allows`).
- No key, a malformed header (``Bearer`` needs exactly one space before the token), or a key
  that is unknown, revoked or has a wrong secret: 401 with ``WWW-Authenticate: Bearer``; a live
  key without the route's scope: 403. Both answer the service's error body
  ``{"message": ..., "detail": [{"field": "authorization", "message": ..., "type":
  "unauthorized" | "forbidden"}]}``, which never says which part of a bad token was wrong, are
  counted in ``loopbreak_rejected_requests_total{status}``, and are logged without the token.
  The key is checked before the request body is validated, but a body that is not JSON at all is
  still answered 422 (FastAPI reads it first), and one over the size limit 413.
- A verified key is trusted for ``Settings.key_cache_seconds`` (default 5 s) before the log is
  read again, so that a request does not cost a key lookup and a revocation takes effect within
  that time. The cache is keyed by the SHA-256 of the token and holds only keys that verified;
  0 turns it off.
- ``Settings.auth`` false (``LOOPBREAK_AUTH=false``) lets every request through, with a warning
  at start (:func:`warn_at_start`); the OpenAPI document is the same either way.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Security, status
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from starlette.routing import BaseRoute

from api.errors import refusal
from api.schemas import ErrorBody
from api.settings import Settings
from proplog.api_keys import ADMIN_SCOPE, ApiKeyRecord, has_live_key, parse_token, verify

logger = logging.getLogger(__name__)

FIELD = "authorization"
"""The field every refusal of this module names."""

OPEN_PATHS = frozenset({"/healthz"})
"""Routes that need no key."""
PATH_SCOPES = (("/v1/decisions", "decide"), ("/v1/events", "events"))
"""The scope of each path and the paths below it; any other path needs ``admin``."""

_BEARER = re.compile(r"Bearer ([^\s]+)", re.IGNORECASE)
_CACHE_ENTRIES = 10_000
"""Verified keys kept at most (only tokens that verified are kept, so this bounds nothing an
outsider controls; it keeps a service with very many keys from growing without end)."""


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    status.HTTP_401_UNAUTHORIZED: {
        "model": ErrorBody,
        "description": "no API key, or one that is malformed, unknown or revoked",
    },
    status.HTTP_403_FORBIDDEN: {
        "model": ErrorBody,
        "description": "the API key does not have the scope this route needs",
    },
}

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="lb_<key_id>_<secret>",
    description="An API key from `loopbreak keys create`: `Authorization: Bearer <token>`.",
)
api_key_scheme = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="apiKey",
    description="The same token in `X-API-Key: <token>` instead of `Authorization`.",
)


class AuthError(Exception):
    """A request refused for its key: 401 (``unauthorized``) or 403 (``forbidden``)."""

    def __init__(self, status_code: int, message: str, *, scope: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.kind = "forbidden" if status_code == status.HTTP_403_FORBIDDEN else "unauthorized"
        self.challenge = (
            f'Bearer error="insufficient_scope", scope="{scope}"' if scope else "Bearer"
        )


class KeyCache:
    """Verified keys by the SHA-256 of their token, each trusted until ``ttl_s`` after its
    verification (monotonic clock); thread-safe. ``ttl_s`` 0 keeps nothing."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[ApiKeyRecord, float]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str, now: float) -> ApiKeyRecord | None:
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if now >= entry[1]:
                del self._entries[digest]
                return None
            return entry[0]

    def put(self, digest: str, record: ApiKeyRecord, now: float) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            if len(self._entries) >= _CACHE_ENTRIES:
                self._entries = {d: e for d, e in self._entries.items() if now < e[1]}
                if len(self._entries) >= _CACHE_ENTRIES:
                    self._entries.clear()
            self._entries[digest] = (record, now + self.ttl_s)


def scope_of(path: str) -> str | None:
    """The scope a route's path needs; None for an open one."""
    if path in OPEN_PATHS:
        return None
    for prefix, scope in PATH_SCOPES:
        if path == prefix or path.startswith(prefix + "/"):
            return scope
    return ADMIN_SCOPE


def _presented_token(authorization: str | None, api_key: str | None) -> str:
    """The token that the ``Authorization`` and ``X-API-Key`` headers (None: absent) carry, else
    :class:`AuthError` 401 saying what is missing."""
    if authorization is not None:
        match = _BEARER.fullmatch(authorization)
        if match is None:
            raise AuthError(
                status.HTTP_401_UNAUTHORIZED,
                "authorization: the Authorization header must be 'Bearer <token>', with one "
                "space and no other white space",
            )
        return match.group(1)
    if api_key is not None:
        if not api_key or any(c.isspace() for c in api_key):
            raise AuthError(
                status.HTTP_401_UNAUTHORIZED,
                "authorization: the X-API-Key header must be the token alone",
            )
        return api_key
    raise AuthError(
        status.HTTP_401_UNAUTHORIZED,
        "authorization: an API key is required: send 'Authorization: Bearer <token>' (make "
        "one with `loopbreak keys create`)",
    )


def _digest(token: str) -> str:
    """The key cache's key of a well-formed token: its SHA-256."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _invalid() -> AuthError:
    return AuthError(
        status.HTTP_401_UNAUTHORIZED,
        "authorization: the API key is not valid (malformed, unknown or revoked)",
    )


def require(scope: str) -> Callable[..., ApiKeyRecord | None]:
    """The dependency of a route that needs ``scope``: the request's live key (None when
    ``Settings.auth`` is off), else :class:`AuthError`. Its two security parameters only put
    the schemes in the OpenAPI document; the headers are read here, strictly. A cached key is
    checked on the event loop; only a lookup in the log goes to one of the worker's bounded
    database threads (:class:`api.deps.BlockingPool`)."""

    async def check(
        request: Request,
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
        _api_key: Annotated[str | None, Security(api_key_scheme)],
    ) -> ApiKeyRecord | None:
        settings: Settings = request.app.state.settings
        if not settings.auth:
            return None
        headers = request.headers
        token = _presented_token(headers.get("authorization"), headers.get("x-api-key"))
        if parse_token(token) is None:
            raise _invalid()
        digest = _digest(token)
        cache: KeyCache = request.app.state.key_cache
        now = time.monotonic()
        record = cache.get(digest, now)
        if record is None:
            record = await request.app.state.blocking.run(verify, request.app.state.engine, token)
            if record is None:
                raise _invalid()
            cache.put(digest, record, now)
        if not record.allows(scope):
            raise AuthError(
                status.HTTP_403_FORBIDDEN,
                f"authorization: API key {record.key_id} does not have the scope {scope!r} "
                f"(it has {', '.join(record.scopes)})",
                scope=scope,
            )
        request.state.api_key_id = record.key_id
        return record

    check.__name__ = f"require_{scope}"
    return check


def passes_from_cache(
    state: Any, authorization: str | None, api_key: str | None, scope: str
) -> tuple[bool, str | None]:
    """Whether a request with these headers passes :func:`require`'s check of ``scope`` without
    reading the log, and its key id: keys off, or a well-formed token whose key is in the cache
    and has the scope. ``(False, None)`` says only that the full check must decide (a missing,
    malformed, unknown, uncached or under-scoped key), never that the request is refused."""
    settings: Settings = state.settings
    if not settings.auth:
        return True, None
    try:
        token = _presented_token(authorization, api_key)
    except AuthError:
        return False, None
    if parse_token(token) is None:
        return False, None
    record = state.key_cache.get(_digest(token), time.monotonic())
    if record is None or not record.allows(scope):
        return False, None
    return True, record.key_id


async def _refuse(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AuthError)
    response = refusal(
        request.app.state.metrics,
        exc.status_code,
        exc.message,
        field=FIELD,
        kind=exc.kind,
        headers={"WWW-Authenticate": exc.challenge},
    )
    logger.info(
        "%s %s refused %d: %s", request.method, request.url.path, exc.status_code, exc.message
    )
    return response


def include_routes(app: FastAPI, routers: tuple[APIRouter, ...], settings: Settings) -> None:
    """Include every route of ``routers`` in ``app``, each behind the key check of its scope
    (:func:`scope_of`), with its 401/403 answers and security schemes in the OpenAPI document;
    and set up the key cache and the refusal handler."""
    app.state.key_cache = KeyCache(settings.key_cache_seconds)
    app.add_exception_handler(AuthError, _refuse)
    for router in routers:
        for route in router.routes:
            scope = scope_of(route.path) if isinstance(route, APIRoute) else None
            one: list[BaseRoute] = [route]
            if scope is None:
                app.include_router(APIRouter(routes=one))
            else:
                app.include_router(
                    APIRouter(routes=one),
                    dependencies=[Depends(require(scope))],
                    responses=AUTH_RESPONSES,
                )


def warn_at_start(settings: Settings, engine: Engine) -> None:
    """Say loudly when keys are off, or when no request can pass because no key is live."""
    if not settings.auth:
        logger.warning(
            "API KEYS ARE OFF (LOOPBREAK_AUTH=false): anyone who can reach this service can "
            "decide for and post events of any user. Serve like this only on a private network."
        )
    elif not has_live_key(engine):
        logger.warning(
            "no live API key in the log (%s): every request but /healthz will be refused with "
            "401. Run `loopbreak keys create --name NAME --scope decide --scope events --db "
            "URL` on this log and send its token as 'Authorization: Bearer <token>'",
            settings.safe_database_url,
        )
