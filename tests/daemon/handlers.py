"""Python service handlers used by the daemon tests (``tests.daemon.handlers:NAME``)."""

from __future__ import annotations

import os

import trio

from mstlsd.identity import Peer


async def greet(stream: trio.abc.HalfCloseableStream, peer: Peer) -> None:
    """Answer ``hello <client> <name-sent>`` then FIN."""
    data = b""
    while chunk := await stream.receive_some():
        data += chunk
    who = peer.common_name or "anonymous"
    await stream.send_all(b"hello %s %s via %s" % (who.encode(), data, peer.transport.encode()))
    await stream.send_eof()


async def explode(stream: trio.abc.HalfCloseableStream, peer: Peer) -> None:
    """Fail: the daemon must reset the stream with HANDLER_FAILED."""
    raise RuntimeError("boom")


def not_async(stream: object, peer: object) -> None:
    """Not a coroutine function: refused at configuration time."""


async def whoami(stream: trio.abc.HalfCloseableStream, peer: Peer) -> None:
    """Answer ``WORKER PID`` (``$MSTLSD_WORKER``, ``-`` outside a multi-worker daemon), FIN."""
    worker = os.environ.get("MSTLSD_WORKER", "-")
    await stream.send_all(f"{worker} {os.getpid()}".encode())
    await stream.send_eof()


#: How long :func:`linger` goes on after its stream has ended on the wire.
LINGER = 0.3


async def linger(stream: trio.abc.HalfCloseableStream, peer: Peer) -> None:
    """Read to the end, answer ``done`` and FIN, then keep working for :data:`LINGER`
    seconds (a service cleaning up after its stream ended: a backend to close)."""
    while await stream.receive_some():
        pass
    await stream.send_all(b"done")
    await stream.send_eof()
    await trio.sleep(LINGER)
