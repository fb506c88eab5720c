"""``mstls tunnel --listen ADDR --to HOST:PORT --service S``: a local TCP port to a service.

Every TCP connection accepted on ``ADDR`` becomes one stream of a single
multiplexed mstls connection to ``HOST:PORT``, starting with the preamble
``S\\n``; bytes are relayed both ways with half-close propagated
(:func:`mstlsd.relay.relay`).  If the daemon resets the stream (refused
service, backend down) the local TCP connection is reset too, and the reason
is printed.

The shared connection is kept alive by the library's keep-alive
(``ClientConfig.keepalive``: a PING, or QMux's QX_PING, after ``--keepalive``
seconds without sending; RFC 9000 §10.1.2), so a quiet tunnel does not idle
out: the default, :data:`DEFAULT_KEEPALIVE`, is a third of the default 30 s idle
timeout.  A watcher notices when the connection ends all the same (the daemon
restarted or drained, an idle timeout shorter than ``--keepalive``, the network
went away) and forgets it; the next local TCP connection then opens a new one,
and a stream that cannot be opened on a connection that just died is retried
once on a new connection, so the local client does not see the restart.
"""

from __future__ import annotations

import argparse
import contextlib
import struct

import trio

from mstls import ConnectionTerminated, Error
from mstls.trio import Connection, Stream

from ..preamble import encode_preamble
from ..relay import relay
from .common import EXIT_USAGE, CliError, describe_failure, open_connection, report

__all__ = ["DEFAULT_KEEPALIVE", "OPEN_ATTEMPTS", "Tunnel", "run_tunnel"]

#: Seconds without sending after which the tunnel's connection sends a PING (``--keepalive``).
DEFAULT_KEEPALIVE = 10.0
#: Tries to open the stream of one local connection: the current connection, then a new one.
OPEN_ATTEMPTS = 2
#: What a dead connection raises from the watcher's accept_stream().
_ENDED = (Error, trio.ClosedResourceError, trio.BrokenResourceError)


class Tunnel:
    """One mstls connection shared by every local TCP connection; reopened when it ends."""

    def __init__(self, args: argparse.Namespace, preamble: bytes) -> None:
        self.args = args
        self.preamble = preamble
        self.host, self.port = args.to
        self._conn: Connection | None = None
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self._unwatched: list[Connection] = []
        self.served = 0
        #: Connections opened so far (1 + reconnections).
        self.connects = 0

    def attach(self, nursery: trio.Nursery) -> None:
        """Run the watchers in ``nursery`` (including that of a connection made before)."""
        self._nursery = nursery
        for conn in self._unwatched:
            nursery.start_soon(self._watch, conn)
        self._unwatched.clear()

    async def connection(self) -> Connection:
        async with self._lock:
            if self._conn is None:
                conn = await open_connection(self.args, self.host, self.port, quiet=True)
                self._conn = conn
                self.connects += 1
                again = "re" if self.connects > 1 else ""
                report(f"tunnel {again}connected to {self.host}:{self.port} over {conn.transport}")
                if self._nursery is None:
                    self._unwatched.append(conn)
                else:
                    self._nursery.start_soon(self._watch, conn)
            return self._conn

    async def _watch(self, conn: Connection) -> None:
        """Wait for ``conn`` to end, then forget it (the next local connection reconnects)."""
        reason = "closed"
        try:
            while True:  # the daemon opens no stream: this waits for the end
                unexpected = await conn.accept_stream()
                unexpected.reset(0)
        except _ENDED as exc:
            reason = describe_failure(exc)
        if self._conn is conn:
            report(f"tunnel: the connection ended ({reason}); reconnecting when needed")
        await self._drop(conn)

    async def _drop(self, conn: Connection) -> None:
        if self._conn is conn:
            self._conn = None
        await conn.aclose()

    async def _open(self) -> tuple[Connection, Stream] | None:
        """A stream with the preamble sent, reconnecting once if the connection just died."""
        for attempt in range(1, OPEN_ATTEMPTS + 1):
            try:
                conn = await self.connection()
            except CliError:
                return None
            try:
                stream = await conn.open_stream()
                await stream.send_all(self.preamble)
            except Error as exc:
                await self._drop(conn)
                if attempt == OPEN_ATTEMPTS:
                    report(f"tunnel: {describe_failure(exc)}")
                    return None
                continue
            return conn, stream
        return None

    async def handle(self, local: trio.SocketStream) -> None:
        """Relay one local TCP connection over a new stream."""
        async with local:
            opened = await self._open()
            if opened is None:
                _abort(local)
                return
            conn, stream = opened
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
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror}", EXIT_USAGE) from None
    address = listeners[0].socket.getsockname()
    report(
        f"tunnel listening on {address[0]}:{address[1]} -> {tunnel.host}:{tunnel.port} "
        f"service {args.service!r}"
    )
    async with trio.open_nursery() as nursery:
        tunnel.attach(nursery)
        await trio.serve_listeners(tunnel.handle, listeners)
    return 0
