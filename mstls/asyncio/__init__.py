"""The native asyncio API: :func:`connect`, :func:`listen`, :func:`serve`.

::

    async with await mstls.asyncio.connect("example.net", 4433, config) as conn:
        stream = await conn.open_stream()
        stream.write(b"hello")
        await stream.drain()
        stream.write_eof()
        reply = await stream.read()

    listener = await mstls.asyncio.serve("::", 4433, server_config, handler)
    ...
    await listener.aclose()

The names and options are those of the trio API (:mod:`mstls.trio`):
``transport="udp"|"tcp"|"auto"``, ``lazy=True``, ``reuse_port``, ``socket_hook``,
the listener's handshake counters, the datagrams of RFC 9221 (``send_datagram``,
``receive_datagram``, ``max_datagram_size``) and a QUIC client's ``migrate()``
(RFC 9000 §9, :mod:`mstls.asyncio._paths`).  Streams add asyncio's StreamReader and
StreamWriter methods (``read``, ``readexactly``, ``readline``, ``write`` +
``drain``, ``write_eof``, ``close`` + ``wait_closed``), where ``drain()`` waits
for the peer's flow-control credit, so a sender's memory stays bounded when the
peer stops reading (see :mod:`mstls.asyncio._stream`).

Each socket is watched by the running loop (``add_reader``, one ``call_at``
timer per socket; see :mod:`mstls.asyncio._driver`); no background task runs.
Works on any loop with ``add_reader``: the default selector loop and uvloop.
Peer and network failures raise the mstls exceptions; each asyncio task's error
queue (:mod:`mstls.errors`) receives the entries of the failures it sees, as a
thread's does.  A connection's death raises its exception in every waiting
reader and writer (never EOF); a peer's reset raises
:class:`~mstls.exceptions.StreamReset` with its code; a cancelled read or write
loses no data.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from .. import _errors as errors
from ..config import ClientConfig, ServerConfig
from ..exceptions import ConfigurationError, ConnectionIOError, Error
from ..io.udp import open_udp_socket
from ..qmux.connection import QMuxConnection
from ..quic.connection import QuicConnection
from ._connection import Connection, Listener
from ._driver import Driver, ListenerDriver
from ._stream import DEFAULT_RECEIVE_SIZE, READLINE_LIMIT, WRITE_HIGH_WATER, Stream
from ._tcp import TcpDriver, TcpListenerDriver, connected_socket, open_tcp_listener, qmux_config
from ._udp import UdpClientDriver, UdpListenerDriver

__all__ = [
    "DEFAULT_RECEIVE_SIZE",
    "READLINE_LIMIT",
    "WRITE_HIGH_WATER",
    "Connection",
    "Listener",
    "Stream",
    "connect",
    "listen",
    "serve",
]

TRANSPORTS = ("udp", "tcp")
#: ``transport="auto"``: how often the QUIC attempt is looked at for a first packet.
AUTO_POLL_INTERVAL = 0.02


def _check_transport(transport: str) -> None:
    if transport not in TRANSPORTS:
        raise ConfigurationError(f"transport: expected 'udp' or 'tcp', got {transport!r}")


async def _resolve(host: str, port: int) -> tuple[str, int]:
    loop = asyncio.get_running_loop()
    info = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    address = info[0][4]
    return str(address[0]), int(address[1])


async def _udp_client(host: str, port: int, config: ClientConfig) -> Driver:
    address = await _resolve(host, port)
    loop = asyncio.get_running_loop()
    quic_config = config.quic_config(host)
    sock = open_udp_socket("::" if ":" in address[0] else "0.0.0.0", 0)
    conn = QuicConnection(quic_config, is_client=True, now=loop.time(), peer_address=address)
    driver = UdpClientDriver(loop, sock, conn)
    driver.start()
    return driver


async def _tcp_client(host: str, port: int, config: ClientConfig) -> Driver:
    settings = qmux_config(config, host)
    sock, peer = await connected_socket(host, port)
    loop = asyncio.get_running_loop()
    conn = QMuxConnection(settings, is_client=True, now=loop.time())
    driver = TcpDriver(loop, sock, conn, peer)
    driver.start()
    return driver


_CLIENTS = {"udp": _udp_client, "tcp": _tcp_client}


async def connect(
    host: str,
    port: int,
    config: ClientConfig,
    *,
    transport: str = "udp",
    timeout: float | None = None,
    lazy: bool = False,
) -> Connection:
    """Connect to ``host:port`` and wait for the handshake (at most ``timeout`` seconds).

    ``transport`` is ``"udp"`` (QUIC), ``"tcp"`` (QMux over TLS/TCP) or ``"auto"``
    (QUIC first, TCP beside it after ``config.fallback_delay`` if no QUIC packet
    came back; the first handshake to complete wins, the other attempt is
    closed; :attr:`Connection.transport` names the winner).  With ``lazy=True``
    (``"udp"``/``"tcp"``) it returns before the handshake: the first stream
    operation or :meth:`Connection.wait_handshake` starts it.  A handshake
    failure raises :class:`~mstls.exceptions.HandshakeError` (or the
    connection's failure); running out of time raises
    :class:`~mstls.exceptions.Timeout`.  Cancelling the call closes the attempts.
    """
    if transport not in (*TRANSPORTS, "auto"):
        raise ConfigurationError(f"transport: expected 'udp', 'tcp' or 'auto', got {transport!r}")
    drivers: list[Driver] = []
    limit = asyncio.timeout(timeout)
    try:
        async with limit:
            if transport == "auto":
                return await _connect_auto(host, port, config, drivers)
            drivers.append(await _CLIENTS[transport](host, port, config))
            connection = Connection(drivers[0].cores()[0], transport, started=False)
            if not lazy:
                await connection.wait_handshake()
            return connection
    except BaseException as exc:
        expired = isinstance(exc, TimeoutError) and limit.expired()
        for driver in drivers:
            driver.abort("connect timed out" if expired else "connect failed")
        if expired:
            raise errors.timeout_error("connect", timeout) from None
        raise


async def _connect_auto(
    host: str, port: int, config: ClientConfig, drivers: list[Driver]
) -> Connection:
    """QUIC first, TCP after ``fallback_delay`` (as the blocking and trio APIs); the
    attempts' drivers go into ``drivers`` so that :func:`connect` aborts them on
    failure, timeout or cancellation."""
    drivers.append(await _udp_client(host, port, config))
    quic = Connection(drivers[0].cores()[0], "udp", started=False)
    quic._start_handshake()
    if await _quic_answered(quic, config.fallback_delay):
        await quic.wait_handshake()
        return quic
    try:
        drivers.append(await _tcp_client(host, port, config))
    except ConnectionIOError as tcp_error:  # TCP impossible: QUIC it is
        try:
            await quic.wait_handshake()
        except Error as quic_error:
            raise quic_error from tcp_error
        return quic
    tcp = Connection(drivers[1].cores()[0], "tcp", started=False)
    tcp._start_handshake()
    winner = await _first_handshake([quic, tcp])
    if winner is None:  # both failed: raise them here, into this task's error queue
        try:
            await quic.wait_handshake()
        except Error as first:
            try:
                await tcp.wait_handshake()
            except Error as last:
                raise last from first
            raise
    assert winner is not None
    loser = tcp if winner is quic else quic
    drivers.remove(winner._core.driver)
    loser.close(0, "other transport won")
    return winner


async def _quic_answered(quic: Connection, delay: float) -> bool:
    """Whether any QUIC packet came back within ``delay`` seconds."""
    core = quic._core
    try:
        async with asyncio.timeout(delay):
            while core.conn.bytes_received == 0 and not core.session.handshake_done:
                try:
                    async with asyncio.timeout(AUTO_POLL_INTERVAL):
                        await core.waiters.connection.park()
                except TimeoutError:
                    continue
            return True
    except TimeoutError:
        return False


async def _first_handshake(connections: list[Connection]) -> Connection | None:
    """The first connection whose handshake completed; ``None`` if every one failed.
    The watchers only look: the failures are raised by the caller."""
    tasks = [asyncio.ensure_future(c._handshake_settled()) for c in connections]
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task, connection in zip(tasks, connections, strict=True):
                if task in done and not connection._core.session.failed:
                    return connection
        return None
    finally:
        for task in tasks:
            task.cancel()


SocketHook = Callable[[socket.socket], object]


async def listen(
    host: str,
    port: int,
    config: ServerConfig,
    *,
    transport: str = "udp",
    reuse_port: bool = False,
    socket_hook: SocketHook | None = None,
) -> Listener:
    """Listen on ``host:port`` (port 0: any; see :attr:`Listener.address`).

    ``transport`` is ``"udp"`` (QUIC) or ``"tcp"`` (QMux over TLS/TCP).
    ``reuse_port`` sets SO_REUSEPORT so several processes share the port;
    ``socket_hook(sock)`` is called with the bound socket before it is used.
    """
    _check_transport(transport)
    config.check_admission()  # before a socket is bound
    loop = asyncio.get_running_loop()
    driver: ListenerDriver
    if transport == "tcp":
        sock = open_tcp_listener(host, port, reuse_port=reuse_port)
        if socket_hook is not None:
            socket_hook(sock)
        tcp = TcpListenerDriver(
            loop,
            sock,
            qmux_config(config),
            rate_limiter=config.source_rate_limiter(),
            max_handshakes=config.max_tcp_handshakes,
        )
        tcp.start()
        driver = tcp
    else:
        endpoint = config.server_endpoint()
        sock = open_udp_socket(host, port, reuse_port=reuse_port)
        if socket_hook is not None:
            socket_hook(sock)
        udp = UdpListenerDriver(loop, sock, endpoint)
        udp.start()
        driver = udp
    return Listener(driver, transport, sock.getsockname())


Handler = Callable[[Connection], Awaitable[object]]


async def serve(
    host: str,
    port: int,
    config: ServerConfig,
    handler: Handler,
    *,
    transport: str = "udp",
    reuse_port: bool = False,
    socket_hook: SocketHook | None = None,
) -> Listener:
    """Listen and run ``await handler(connection)`` in a new task for each connection.

    Returns the :class:`Listener` at once, already serving (as
    :func:`asyncio.start_server` does).  A handler's connection is closed (code
    0) when the handler returns.  A :class:`~mstls.exceptions.ConnectionTerminated`
    escaping a handler is the normal end of that connection and is dropped; any
    other exception goes to the loop's exception handler.  ``await
    listener.aclose()`` stops accepting, closes every connection and waits for
    the handlers to return.
    """
    listener = await listen(
        host, port, config, transport=transport, reuse_port=reuse_port, socket_hook=socket_hook
    )
    loop = asyncio.get_running_loop()

    async def accept_loop() -> None:
        while True:
            try:
                connection = await listener.accept()
            except errors.ListenerClosed:
                errors.clear_error()
                return
            listener._run_handler(handler, connection)

    task = loop.create_task(accept_loop())
    listener._tasks.add(task)
    task.add_done_callback(listener._tasks.discard)
    return listener
