"""The HTTP/1.1 protocol ``loopbreak serve`` gives uvicorn: uvicorn's own (h11), with
``TCP_NODELAY`` set on every accepted connection.

With ``--workers`` above 1, uvicorn binds the listening socket itself (protocol number 0), and
asyncio sets ``TCP_NODELAY`` only on sockets whose protocol is ``IPPROTO_TCP``, so the accepted
connections kept Nagle's algorithm: a response written in two parts (head, then body) waited for
the client's delayed ACK, about 40 ms per request (found by ``loopbreak bench api --workers 2``;
:mod:`bench.api_reference` does the same). Setting it again where asyncio set it (one worker) is
harmless. A module of its own so that worker processes import it by name, and the command line
does not import uvicorn until it serves.
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with ``TCP_NODELAY`` on each TCP connection."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)  # type: ignore[arg-type]
