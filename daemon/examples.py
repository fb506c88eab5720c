"""Example ``python`` service handlers (``handler = "mstlsd.examples:NAME"``).

A handler is ``async def handler(stream, peer)``: ``stream`` is a
:class:`trio.abc.HalfCloseableStream` (the client's bytes after the preamble),
``peer`` a :class:`mstlsd.identity.Peer`.  Return when done (the daemon then
sends FIN if the handler has not); raise to have the stream reset with
``HANDLER_FAILED`` (0x106).
"""

from __future__ import annotations

import trio

from .identity import Peer

__all__ = ["uppercase", "whoami"]


async def whoami(stream: trio.abc.HalfCloseableStream, peer: Peer) -> None:
    """Tell the client who the daemon thinks it is, one ``key: value`` per line."""
    lines = [
        f"transport: {peer.transport}",
        f"address: {peer.address[0]}:{peer.address[1]}",
        f"subject: {peer.subject or '-'}",
        f"dns: {', '.join(peer.dns_names) or '-'}",
        f"spki-sha256: {peer.spki_sha256 or '-'}",
    ]
    await stream.send_all(("\n".join(lines) + "\n").encode())
    await stream.send_eof()


async def uppercase(stream: trio.abc.HalfCloseableStream, peer: Peer) -> None:
    """Echo in upper case, as the bytes arrive."""
    while data := await stream.receive_some():
        await stream.send_all(data.upper())
    await stream.send_eof()
