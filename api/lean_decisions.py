"""The lean path of ``POST /v1/decisions``: the common request answered without FastAPI's
per-request machinery, and every other one handed to the FastAPI route unchanged.

A decision's own work (scoring, exploring, the record, the durable write) costs about a
millisecond of CPU; FastAPI's routing, ``Request`` object, dependency solving (the key check's
three security parameters) and ``Response`` object added about a quarter of that again. This
ASGI app sits first in the router for ``POST /v1/decisions`` and answers a request itself only
when all of these hold:

- its key passes from the worker's key cache (:func:`api.auth.passes_from_cache`), or keys are
  off;
- its body is JSON (no ``Content-Type``, or ``application/json`` or ``application/*+json``, as
  FastAPI reads it) that validates as :class:`api.schemas.DecisionRequest`, the same
  ``json.loads`` and the same model validation in Python mode that FastAPI runs.

Then it answers with :func:`api.routes.decisions.answer`, the route's own function, so the
decision, the record, the metrics and the answer's bytes and headers are the route's. Anything
else (no key, an uncached key, a body that does not parse or validate, another content type)
goes to the FastAPI route with the body already read, replayed, and gets its exact answer: the
lean path never refuses anything itself. The admission limit and the body limit are middleware
around the router, and an error raised while deciding reaches the app's exception handlers, on
either path. The OpenAPI document still comes from the FastAPI route alone.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from pydantic import ValidationError
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Message, Receive, Scope, Send

from api.auth import passes_from_cache, scope_of
from api.routes.decisions import answer
from api.schemas import DecisionRequest

PATH = "/v1/decisions"

_JSON = b"application/json"


def _reads_as_json(content_type: bytes | None) -> bool:
    """Whether FastAPI would parse a body of this ``Content-Type`` as JSON (and no more: a
    type this says no to is left to the route, which decides)."""
    if content_type is None:
        return True
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == _JSON or (media.startswith(b"application/") and media.endswith(b"+json"))


HANDED_ON = "loopbreak.lean_handed_on"
"""The ASGI scope key that marks a request the lean path handed to the router's other routes."""


class LeanRoute(Route):
    """``POST /v1/decisions`` first in the router, except for a request it handed on."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope.get(HANDED_ON):
            return Match.NONE, {}
        return super().matches(scope)


class LeanDecisions:
    """The ASGI app of the lean path."""

    scope_needed = scope_of(PATH) or ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        messages, body = await _read_body(receive)
        if body is None:
            await self._hand_on(scope, messages, receive, send)
            return
        authorization = api_key = content_type = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"x-api-key":
                api_key = value
            elif name == b"content-type":
                content_type = value
        state = scope["app"].state
        passes, key_id = passes_from_cache(
            state,
            None if authorization is None else authorization.decode("latin-1"),
            None if api_key is None else api_key.decode("latin-1"),
            self.scope_needed,
        )
        request = _decision_request(body) if passes and _reads_as_json(content_type) else None
        if request is None:
            await self._hand_on(scope, messages, receive, send)
            return
        if key_id is not None:
            scope.setdefault("state", {})["api_key_id"] = key_id
        answered = await answer(state, request)
        if isinstance(answered, Response):
            await answered(scope, receive, send)
            return
        status_code, content = answered
        await send(
            {
                "type": "http.response.start",
                "status": status_code,
                "headers": [  # as a starlette Response with media_type application/json has
                    (b"content-length", str(len(content)).encode("latin-1")),
                    (b"content-type", _JSON),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})

    async def _hand_on(
        self, scope: Scope, messages: list[Message], receive: Receive, send: Send
    ) -> None:
        """The FastAPI route's answer (through the router again, which now passes this path
        by), reading the messages already received first."""
        scope[HANDED_ON] = True
        await scope["app"].router(scope, _replaying(messages, receive), send)


async def _read_body(receive: Receive) -> tuple[list[Message], bytes | None]:
    """Every message of the request body, and the body (None when the client went away)."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        if not message.get("more_body", False):
            break
    if len(messages) == 1:
        return messages, messages[0].get("body", b"")
    return messages, b"".join(m.get("body", b"") for m in messages)


def _decision_request(body: bytes) -> DecisionRequest | None:
    """The validated request, as FastAPI would make it from ``body``; None when it would not."""
    try:
        return DecisionRequest.model_validate(json.loads(body))
    except (ValueError, ValidationError):  # json's errors, and UnicodeDecodeError, are ValueErrors
        return None


def _replaying(messages: list[Message], receive: Receive) -> Callable[[], Awaitable[Message]]:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


def install_lean_decisions(app: FastAPI) -> None:
    """Put the lean path first in ``app``'s router, before the FastAPI route of
    ``POST /v1/decisions`` that it hands the rest to."""
    app.router.routes.insert(
        0, LeanRoute(PATH, endpoint=LeanDecisions(), methods=["POST"], include_in_schema=False)
    )
