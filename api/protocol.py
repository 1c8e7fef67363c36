"""How ``loopbreak serve`` runs under uvicorn: its HTTP/1.1 protocol and its event loop.

The protocol is uvicorn's httptools one (the C parser of Node.js's llhttp), with ``TCP_NODELAY``
set on every accepted connection; the event loop is uvloop (libuv). Against uvicorn's pure-Python
h11 protocol on asyncio's own loop, they take about a third of a millisecond less CPU per
decision on this project's 2-core machine (``loopbreak bench api``'s ``srv ms/req``, the
service's CPU per request, 3.1-3.3 ms with h11 against 2.8-3.0 ms at 200 decisions/s), which is
the budget that the service's latency at high rates depends on.

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


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with ``TCP_NODELAY`` on each TCP connection."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)  # type: ignore[arg-type]


def server_stack() -> dict[str, Any]:
    """The ``uvicorn.run`` options of the protocol and the event loop."""
    return {"http": NoDelayHttpToolsProtocol, "loop": "uvloop"}
