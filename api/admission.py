"""Admission control: at most ``Settings.max_in_flight`` requests under ``/v1/`` are served at once
by a worker; one that cannot get a slot within ``Settings.queue_timeout_ms`` is shed.

A shed request is answered 503 with ``Retry-After: 1`` and the service's error body
(:func:`api.errors.error_body`, field ``server``, type ``overloaded``), before its body is read,
and counted in ``loopbreak_http_errors_total{status="503",cause="overloaded"}``. Nothing was
written for it, so a retry is safe. ``/healthz`` and ``/metrics`` are never held back: a
supervisor must see a busy worker as alive.

Why this bounds every wait: a request holds its slot from before its body is read until its
answer is sent, and while it holds one it waits only on things that are never held by a request
waiting for a slot (the event loop, the bounded database threads of :mod:`api.deps`, the batch
writer's thread, each of which frees itself without waiting on any request). So the slots are
always given back, and a waiting request is either admitted or shed within the timeout: no queue
of unbounded length forms in front of the database, and no cycle of waits can form.

The limiter runs on the worker's event loop only (no locks): the fast path (a free slot) takes
it without awaiting; a waiter is a future in a FIFO queue, handed the slot of the request that
finishes, or dropped when its timeout passes.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error_body

logger = logging.getLogger(__name__)

GUARDED_PREFIX = "/v1/"
"""Paths under admission control: the ones that decide, write or read the log."""
RETRY_AFTER_S = 1
"""What a shed request is told to wait (seconds): the queue turns over in about 0.1 s, so a
retry a second later finds a slot unless the overload persists."""
OVERLOADED_MESSAGE = (
    "the service is overloaded: no request slot was free within the queue timeout; nothing was "
    "written, retry after Retry-After seconds"
)


class AdmissionLimiter:
    """At most ``limit`` holders at once; :meth:`acquire` waits at most ``timeout_s``.

    Only for use on one event loop (the worker's); ``in_flight`` and ``waiting`` are exact there.
    """

    def __init__(self, limit: int, timeout_s: float) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1; got {limit}")
        self.limit = limit
        self.timeout_s = max(0.0, timeout_s)
        self.in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> bool:
        """Take a slot: True at once when one is free, else when one is handed over within the
        timeout; False when the timeout passed first (the request is to be shed)."""
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            return True
        if self.timeout_s <= 0:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.timeout_s)
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():  # handed a slot as the time ran out
                return True
            waiter.cancel()
            return False
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot handed to a request that went away
            else:
                waiter.cancel()
            raise
        return True

    def release(self) -> None:
        """Give a slot back: to the oldest live waiter, else to the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on; in_flight is unchanged
                return
        self.in_flight -= 1


class AdmissionMiddleware:
    """The ASGI middleware that holds a slot of ``limiter`` around each ``/v1/`` request and
    answers 503 ``overloaded`` when none comes in time; ``on_shed`` is called once per shed
    request (to count it)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: AdmissionLimiter,
        on_shed: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.on_shed = on_shed
        self._body = json.dumps(
            error_body(OVERLOADED_MESSAGE, field="server", kind="overloaded")
        ).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(GUARDED_PREFIX):
            await self.app(scope, receive, send)
            return
        if not await self.limiter.acquire():
            await self._shed(scope, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.limiter.release()

    async def _shed(self, scope: Scope, send: Send) -> None:
        if self.on_shed is not None:
            self.on_shed()
        logger.debug("%s %s shed: overloaded", scope["method"], scope["path"])
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(self._body)).encode()),
                    (b"retry-after", str(RETRY_AFTER_S).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self._body})
