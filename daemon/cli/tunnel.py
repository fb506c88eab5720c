"""``mstls tunnel --listen ADDR --to HOST:PORT --service S``: a local TCP port to a service.

Every TCP connection accepted on ``ADDR`` becomes one stream of a single
multiplexed mstls connection to ``HOST:PORT``, starting with the preamble
``S\\n``; bytes are relayed both ways with half-close propagated
(:func:`mstlsd.relay.relay`).  If the daemon resets the stream (refused
service, backend down) the local TCP connection is reset too, and the reason
is printed.  If the mstls connection ends, the next TCP connection opens a new
one.
"""

from __future__ import annotations

import argparse
import contextlib
import struct

import trio

from mstls import ConnectionTerminated, Error
from mstls.trio import Connection

from ..preamble import encode_preamble
from ..relay import relay
from .common import EXIT_USAGE, CliError, describe_failure, open_connection, report

__all__ = ["Tunnel", "run_tunnel"]


class Tunnel:
    """One mstls connection shared by every local TCP connection; reopened when it ends."""

    def __init__(self, args: argparse.Namespace, preamble: bytes) -> None:
        self.args = args
        self.preamble = preamble
        self.host, self.port = args.to
        self._conn: Connection | None = None
        self._lock = trio.Lock()
        self.served = 0

    async def connection(self) -> Connection:
        async with self._lock:
            if self._conn is None:
                self._conn = await open_connection(self.args, self.host, self.port, quiet=True)
                report(f"tunnel connected to {self.host}:{self.port} over {self._conn.transport}")
            return self._conn

    async def _drop(self, conn: Connection) -> None:
        if self._conn is conn:
            self._conn = None
            await conn.aclose()

    async def handle(self, local: trio.SocketStream) -> None:
        """Relay one local TCP connection over a new stream."""
        async with local:
            try:
                conn = await self.connection()
            except CliError:
                _abort(local)
                return
            try:
                stream = await conn.open_stream()
                await stream.send_all(self.preamble)
            except Error as exc:
                report(f"tunnel: {describe_failure(exc)}")
                await self._drop(conn)
                _abort(local)
                return
            async with stream:
                outcome = await relay(local, stream)
                self.served += 1
                if outcome.failed == "a":  # the local side broke: abandon the stream
                    with contextlib.suppress(Error):
                        stream.reset(0)
                elif outcome.failed == "b":
                    report(f"tunnel: {describe_failure(outcome.error or Error())}")
                    _abort(local)
                    if isinstance(outcome.error, ConnectionTerminated):
                        await self._drop(conn)


def _abort(local: trio.SocketStream) -> None:
    """Make the local close a TCP reset, so the local client sees a failure, not an end."""
    with contextlib.suppress(OSError):
        local.socket.setsockopt(
            trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, struct.pack("ii", 1, 0)
        )


async def run_tunnel(args: argparse.Namespace) -> int:
    try:
        preamble = encode_preamble(args.service)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    host, port = args.listen
    tunnel = Tunnel(args, preamble)
    await tunnel.connection()  # fail early if the remote side is not there
    listeners = await trio.open_tcp_listeners(port, host=host)
    address = listeners[0].socket.getsockname()
    report(
        f"tunnel listening on {address[0]}:{address[1]} -> {tunnel.host}:{tunnel.port} "
        f"service {args.service!r}"
    )
    await trio.serve_listeners(tunnel.handle, listeners)
    return 0
