"""The request body limit, as a pure ASGI middleware: a body over ``max_bytes`` is refused with
413 and the service's error body before the app reads (parses) it.

A request whose ``Content-Length`` is over the limit is answered at once, without reading its
body. One without (``Transfer-Encoding: chunked``), or one that sends more than it announced, is
counted while the app reads it: at the limit the reading stops, the app's own answer (FastAPI's
400 for a body it could not read) is dropped, and 413 goes out instead. The 413 closes the
connection (the rest of the body is never read) and counts in
``loopbreak_rejected_requests_total{status="413"}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_body

logger = logging.getLogger(__name__)


class BodyTooLargeError(Exception):
    """Raised into the app's ``receive`` when the body passed the limit."""


class BodyLimitMiddleware:
    """Refuse HTTP request bodies over ``max_bytes`` with 413; ``on_refuse`` is called once per
    refusal (to count it)."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, on_refuse: Callable[[], None] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_refuse = on_refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        announced = _content_length(scope)
        if announced is not None and announced > self.max_bytes:
            await self._refuse(scope, send, f"Content-Length {announced}")
            return

        seen = 0
        over = False
        started = False

        async def limited_receive() -> Message:
            nonlocal seen, over
            if over:
                raise BodyTooLargeError
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    raise BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over and not started:
                return  # the app's answer to a body it could not read; the 413 replaces it
            started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLargeError:
            over = True
        if over and not started:
            await self._refuse(scope, send, f"more than {self.max_bytes} bytes streamed")

    async def _refuse(self, scope: Scope, send: Send, what: str) -> None:
        message = f"body: the request body must be at most {self.max_bytes} bytes"
        logger.info("%s %s refused with 413: %s", scope["method"], scope["path"], what)
        if self.on_refuse is not None:
            self.on_refuse()
        content = json.dumps(error_body(message, field="body", kind="body_too_large")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(content)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})


def _content_length(scope: Scope) -> int | None:
    """The request's Content-Length, or None when it has none (or an unreadable one, which the
    server refuses itself)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
