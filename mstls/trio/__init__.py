"""The native trio API: :func:`connect`, :func:`listen`, :func:`serve`.

::

    async with await mstls.trio.connect("example.net", 4433, config) as conn:
        stream = await conn.open_stream()
        await stream.send_all(b"hello")
        await stream.send_eof()
        reply = await stream.receive_some()

    async with await mstls.trio.listen("::", 4433, server_config) as listener:
        conn = await listener.accept()

    listener = await nursery.start(mstls.trio.serve, "::", 4433, server_config, handler)

The names and options are those of the blocking API (:mod:`mstls`; the table
of differences is in the API reference's index): ``transport="auto"``,
``lazy=True``, ``reuse_port``, ``socket_hook`` and the listener's handshake
counters included.  Streams are :class:`trio.abc.HalfCloseableStream` objects (:class:`Stream`), so
code written for trio streams runs over them.  Each socket has one background
I/O task (see :mod:`mstls.trio._driver`): :func:`connect` and :func:`listen`
run it as a trio system task, bounded by the object's life (it ends when the
connection terminates or the listener closes and never lets an exception
escape); :func:`serve` runs it in its own nursery.  Peer and network failures raise
the mstls exceptions, which are also :class:`trio.BrokenResourceError`; each
task's error queue (:mod:`mstls.errors`) receives the entries of the failures it
sees, exactly as a thread's does.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Awaitable, Callable

import trio

from .. import _errors as errors
from ..config import ClientConfig, ServerConfig
from ..exceptions import ConfigurationError, ConnectionIOError, ConnectionTerminated, Error
from ..io.udp import open_udp_socket
from ..qmux.connection import QMuxConnection
from ..quic.connection import QuicConnection
from ._connection import Connection, Listener
from ._driver import Driver, ListenerDriver, Spawner, system_spawner
from ._stream import DEFAULT_RECEIVE_SIZE, Stream
from ._tcp import TcpDriver, TcpListenerDriver, open_tcp_listener, open_tcp_socket, qmux_config
from ._udp import UdpClientDriver, UdpListenerDriver

__all__ = ["DEFAULT_RECEIVE_SIZE", "Connection", "Listener", "Stream", "connect", "listen", "serve"]

TRANSPORTS = ("udp", "tcp")


def _check_transport(transport: str) -> None:
    if transport not in TRANSPORTS:
        raise ConfigurationError(f"transport: expected 'udp' or 'tcp', got {transport!r}")


async def _resolve(host: str, port: int) -> tuple[str, int]:
    info = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    address = info[0][4]
    return str(address[0]), int(address[1])


async def _udp_client(host: str, port: int, config: ClientConfig) -> Driver:
    address = await _resolve(host, port)
    quic_config = config.quic_config(host)
    sock = open_udp_socket("::" if ":" in address[0] else "0.0.0.0", 0)
    now = trio.current_time()
    conn = QuicConnection(quic_config, is_client=True, now=now, peer_address=address)
    driver = UdpClientDriver(sock, conn)
    driver.start(system_spawner(f"mstls.trio udp client {host}:{port}"))
    return driver


async def _tcp_client(host: str, port: int, config: ClientConfig) -> Driver:
    settings = qmux_config(config, host)
    sock: socket.socket | None = None
    try:
        sock = await open_tcp_socket(host, port)
        peer = sock.getpeername()  # ENOTCONN if the server reset at once (a refusal)
    except OSError as exc:  # as the blocking API: one error model (brief E2)
        if sock is not None:
            sock.close()
        raise errors.recorded(
            ConnectionIOError(
                f"TCP connect to {host}:{port} failed: {exc}", errno=errors.errno_of(exc)
            )
        ) from exc
    conn = QMuxConnection(settings, is_client=True, now=trio.current_time())
    driver = TcpDriver(sock, conn, peer)
    driver.start(system_spawner(f"mstls.trio tcp client {host}:{port}"))
    return driver


_CLIENTS = {"udp": _udp_client, "tcp": _tcp_client}
#: ``transport="auto"``: how often the QUIC attempt is looked at for a first packet.
AUTO_POLL_INTERVAL = 0.02


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
    (Happy Eyeballs: QUIC first, TCP beside it after ``config.fallback_delay`` if
    no QUIC packet came back; the first handshake to complete wins and the other
    attempt is closed; :attr:`Connection.transport` names the winner).  With
    ``lazy=True`` (``"udp"``/``"tcp"``) it returns before the handshake: the first
    stream operation or :meth:`Connection.wait_handshake` starts it and waits
    (``"auto"`` always waits, since the handshake picks the transport).  A
    handshake failure raises :class:`~mstls.exceptions.HandshakeError` (or the
    connection's failure; ``"auto"``: the TCP attempt's, chained from the QUIC
    attempt's, both in the error queue); running out of time raises
    :class:`~mstls.exceptions.Timeout`.  Cancelling the call closes the attempts.
    """
    if transport not in (*TRANSPORTS, "auto"):
        raise ConfigurationError(f"transport: expected 'udp', 'tcp' or 'auto', got {transport!r}")
    drivers: list[Driver] = []
    try:
        with trio.move_on_after(math.inf if timeout is None else timeout):
            if transport == "auto":
                return await _connect_auto(host, port, config, drivers)
            drivers.append(await _CLIENTS[transport](host, port, config))
            connection = Connection(drivers[0].cores()[0], transport, started=False)
            if not lazy:
                await connection.wait_handshake()
            return connection
    except BaseException:
        for driver in drivers:
            driver.abort("connect failed")
        raise
    for driver in drivers:
        driver.abort("connect timed out")
    raise errors.timeout_error("connect", timeout)


async def _connect_auto(
    host: str, port: int, config: ClientConfig, drivers: list[Driver]
) -> Connection:
    """Happy Eyeballs as in the blocking API (``mstls._blocking.transports``); the
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
    await loser.aclose(0, "other transport won")
    return winner


async def _quic_answered(quic: Connection, delay: float) -> bool:
    """Whether any QUIC packet came back within ``delay`` seconds."""
    core = quic._core
    with trio.move_on_after(delay):
        while core.conn.bytes_received == 0 and not core.session.handshake_done:
            with trio.move_on_after(AUTO_POLL_INTERVAL):
                await core.waiters.connection.park()
        return True
    return False


async def _first_handshake(connections: list[Connection]) -> Connection | None:
    """The first connection whose handshake completed; ``None`` if every one failed.

    The watchers only look (they run in child tasks, whose error queues are not
    the caller's): the failures are raised by the caller.
    """
    won: list[Connection] = []
    async with trio.open_nursery() as nursery:

        async def watch(connection: Connection) -> None:
            await connection._handshake_settled()
            if not connection._core.session.failed and not won:
                won.append(connection)
                nursery.cancel_scope.cancel()

        for connection in connections:
            nursery.start_soon(watch, connection)
    return won[0] if won else None


SocketHook = Callable[[socket.socket], object]


async def _listen(
    host: str,
    port: int,
    config: ServerConfig,
    transport: str,
    spawn: Spawner,
    *,
    reuse_port: bool = False,
    socket_hook: SocketHook | None = None,
) -> Listener:
    _check_transport(transport)
    config.check_admission()  # before a socket is bound
    driver: ListenerDriver
    if transport == "tcp":
        sock = open_tcp_listener(host, port, reuse_port=reuse_port)
        if socket_hook is not None:
            socket_hook(sock)
        driver = TcpListenerDriver(
            sock,
            qmux_config(config),
            spawn,
            rate_limiter=config.source_rate_limiter(),
            max_handshakes=config.max_tcp_handshakes,
        )
    else:
        endpoint = config.server_endpoint()
        sock = open_udp_socket(host, port, reuse_port=reuse_port)
        if socket_hook is not None:
            socket_hook(sock)
        driver = UdpListenerDriver(sock, endpoint)
    driver.start(spawn)
    return Listener(driver, transport, sock.getsockname())


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
    ``socket_hook(sock)`` is called with the bound socket before it is used (for
    example to attach a reuseport steering program).
    """
    spawn = system_spawner(f"mstls.trio {transport} listener {host}:{port}")
    return await _listen(
        host, port, config, transport, spawn, reuse_port=reuse_port, socket_hook=socket_hook
    )


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
    task_status: trio.TaskStatus[Listener] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept connections forever, running ``await handler(connection)`` for each.

    Use ``listener = await nursery.start(serve, host, port, config, handler)``;
    the socket's I/O and every handler run in this task's nursery.  A handler's
    connection is closed (code 0) when the handler returns.  A
    :class:`~mstls.exceptions.ConnectionTerminated` escaping a handler is the
    normal end of that connection and is dropped; any other exception propagates
    and ends ``serve`` (as with :func:`trio.serve_listeners`).  Closing the
    listener ends ``serve`` once the handlers have returned.
    """
    async with trio.open_nursery() as nursery:
        listener = await _listen(
            host,
            port,
            config,
            transport,
            nursery.start_soon,
            reuse_port=reuse_port,
            socket_hook=socket_hook,
        )
        async with listener:
            task_status.started(listener)
            while True:
                try:
                    connection = await listener.accept()
                except (trio.ClosedResourceError, errors.ListenerClosed):
                    break
                nursery.start_soon(_run_handler, handler, connection)


async def _run_handler(handler: Handler, connection: Connection) -> None:
    async with connection:
        try:
            await handler(connection)
        except* ConnectionTerminated:
            pass  # the peer (or the network) ended this connection: nothing left to do
