"""The serving protocol's transport wrapper (:class:`api.protocol.OneWritePerResponse`) on a real
socket: a response's head is held until its body joins it, a write that nothing follows leaves
on the loop's next turn, and closing sends what is held first."""

from __future__ import annotations

import asyncio
import socket

from api.protocol import OneWritePerResponse


async def _pair() -> tuple[OneWritePerResponse, socket.socket]:
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    return OneWritePerResponse(transport, loop), peer  # type: ignore[arg-type]


def _received(peer: socket.socket) -> bytes:
    try:
        return peer.recv(65536)
    except BlockingIOError:
        return b""


def test_head_and_body_leave_together() -> None:
    async def run() -> None:
        wrapped, peer = await _pair()
        wrapped.write(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n")
        assert _received(peer) == b"" and wrapped.get_write_buffer_size() > 0  # held
        wrapped.write(b"{}")
        await asyncio.sleep(0)
        assert _received(peer) == b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}"
        wrapped.write(b"HTTP/1.1 204 No Content\r\n\r\n")  # nothing follows in this step
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert _received(peer) == b"HTTP/1.1 204 No Content\r\n\r\n"
        wrapped.write(b"last words")
        wrapped.close()
        await asyncio.sleep(0)
        assert _received(peer) == b"last words"
        assert wrapped.is_closing()  # the transport's own, through the wrapper
        peer.close()

    asyncio.run(run())
