"""How ``loopbreak serve`` runs under uvicorn: its HTTP/1.1 protocol and its event loop.

The protocol is uvicorn's httptools one (the C parser of Node.js's llhttp), with ``TCP_NODELAY``
set on every accepted connection; the event loop is uvloop (libuv). Against uvicorn's pure-Python
h11 protocol on asyncio's own loop, they take about a third of a millisecond less CPU per
decision on this project's 2-core machine (``loopbreak bench api``'s ``srv ms/req``, the
service's CPU per request, 3.1-3.3 ms with h11 against 2.8-3.0 ms at 200 decisions/s), which is
the budget that the service's latency at high rates depends on. Each response leaves in one
write (:class:`OneWritePerResponse`) rather than uvicorn's two (head, then body), which saves a
system call and a packet per request on both ends.

``TCP_NODELAY``: with ``--workers`` above 1, uvicorn binds the listening socket itself (protocol
number 0), and the event loop sets ``TCP_NODELAY`` only on sockets whose protocol is
``IPPROTO_TCP``, so the accepted connections kept Nagle's algorithm: a response written in two
parts (head, then body) waited for the client's delayed ACK, about 40 ms per request (found by
``loopbreak bench api --workers 2``). Setting it again where it is set already (one worker) is
harmless. :mod:`bench.api_reference` serves with the same stack, so that the benchmark's ratio
measures the apps, not the servers.

A module of its own so that worker processes import it by name, and the command line does not
import uvicorn until it serves.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class OneWritePerResponse:
    """A connection's transport through which a response's head and body leave in one write.

    uvicorn writes a response's head when the app sends ``http.response.start`` and its body when
    the app sends ``http.response.body``, one system call and, with ``TCP_NODELAY``, one packet
    each. A write is held here until the next one, which it joins, or until the event loop's
    next turn (``call_soon``), so a head that no body follows in the same step (a streamed
    response, a reply without a body) still leaves at once after it. Everything else is the
    transport's own (flow control included); ``close`` sends what is held first."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._flush_due = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held is None:
            self._held = bytes(data)
            if not self._flush_due:
                self._flush_due = True
                self._loop.call_soon(self._flush_turn)
            return
        held, self._held = self._held, None
        self._transport.write(held + bytes(data))

    def _flush_turn(self) -> None:
        self._flush_due = False
        self.flush()

    def flush(self) -> None:
        """Send what is held, if the connection is still open."""
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with ``TCP_NODELAY`` on each TCP connection, and each
    response written once (:class:`OneWritePerResponse`)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        wrapped = OneWritePerResponse(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        super().connection_made(wrapped)  # type: ignore[arg-type]


def server_stack() -> dict[str, Any]:
    """The ``uvicorn.run`` options of the protocol and the event loop."""
    return {"http": NoDelayHttpToolsProtocol, "loop": "uvloop"}
