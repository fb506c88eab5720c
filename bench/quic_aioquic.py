"""The aioquic side of the QUIC benchmark: server and client roles on ``aioquic.asyncio``.

The server is aioquic's own :class:`~aioquic.asyncio.server.QuicServer` with a
stream handler; the client is a :class:`~aioquic.asyncio.QuicConnectionProtocol`
on a socket bound to 127.0.0.1 (``aioquic.asyncio.connect`` binds the wildcard
address ``::``).  Data is written with ``writer.write`` and ``await
writer.drain()`` per 64 KiB.  Two things are changed from aioquic's defaults,
both to compare like with like: its sockets get the buffer sizes mstls asks
for, and in the ``x25519`` scenario its client offers only x25519.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from aioquic import tls as aioquic_tls
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection as AioquicConnection
from aioquic.quic.events import HandshakeCompleted, QuicEvent

from mstls.io.udp import DEFAULT_SOCKET_BUFFER

from .quic_common import (
    ACK,
    ALPN,
    CONNECTION_WINDOW,
    HOST,
    READ_MAX,
    SERVER_NAME,
    STREAM_WINDOW,
    WRITE_CHUNK,
    BenchError,
    Job,
    ServerStats,
    new_stats,
)

__all__ = ["client", "server"]


class _Count:
    """Datagrams and bytes seen by a wrapped ``datagram_received``."""

    __slots__ = ("bytes", "datagrams")

    def __init__(self) -> None:
        self.datagrams = 0
        self.bytes = 0


def _counting(receive: Callable[[Any, Any], None], count: _Count) -> Callable[[Any, Any], None]:
    def datagram_received(data: Any, addr: Any) -> None:
        count.datagrams += 1
        count.bytes += len(data)
        receive(data, addr)

    return datagram_received


def _negotiated_group(quic: AioquicConnection) -> str | None:
    """The group an aioquic server used (read from its TLS context; best effort)."""
    context = getattr(quic, "tls", None)
    if getattr(context, "_x25519_private_key", None) is not None:
        return "x25519"
    keys = getattr(context, "_ec_private_keys", None)
    if keys:
        return str(keys[-1].curve.name)
    return None


class _ServerProtocol(QuicConnectionProtocol):
    """aioquic's connection protocol, counting completed handshakes."""

    stats: ServerStats

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted):
            self.stats.on_handshake(_negotiated_group(self._quic))
        super().quic_event_received(event)


def _raise_socket_buffers(transport: asyncio.BaseTransport) -> None:
    """Give aioquic's socket the buffer sizes mstls's sockets ask for (it keeps the
    OS defaults, about 200 kB, and loses datagrams to a full receive buffer)."""
    sock = transport.get_extra_info("socket")
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, option, DEFAULT_SOCKET_BUFFER)


def _config(job: Job, *, server: bool) -> QuicConfiguration:
    configuration = QuicConfiguration(
        is_client=not server,
        alpn_protocols=[ALPN],
        max_datagram_size=job.datagram,
        max_data=CONNECTION_WINDOW,
        max_stream_data=STREAM_WINDOW,
    )
    if server:
        configuration.load_cert_chain(job.cert, job.key)
    else:
        configuration.server_name = SERVER_NAME
        configuration.load_verify_locations(cafile=job.ca)
    return configuration


async def _sink(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stats: ServerStats
) -> None:
    """Read a stream to its end, discarding, then answer :data:`ACK` and the FIN."""
    while data := await reader.read(READ_MAX):
        stats.stream_bytes += len(data)
    writer.write(ACK)
    writer.write_eof()
    stats.mark()


async def _serve(job: Job, control: Connection) -> None:
    loop = asyncio.get_running_loop()
    stats, count = new_stats(job), _Count()
    stats.counts = lambda: (count.datagrams, count.bytes)
    tasks: set[asyncio.Task[None]] = set()
    stop = asyncio.Event()

    def on_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = loop.create_task(_sink(reader, writer, stats))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def create_protocol(quic: AioquicConnection, **kwargs: Any) -> _ServerProtocol:
        protocol = _ServerProtocol(quic, **kwargs)
        protocol.stats = stats
        return protocol

    def on_control() -> None:
        try:
            message = control.recv()
        except EOFError:
            stop.set()
            return
        if message[0] == "report":
            control.send(("report", stats.report()))
        elif message[0] == "stop":
            stop.set()

    configuration = _config(job, server=True)
    transport, server = await loop.create_datagram_endpoint(
        lambda: QuicServer(
            configuration=configuration, create_protocol=create_protocol, stream_handler=on_stream
        ),
        local_addr=(HOST, 0),
    )
    _raise_socket_buffers(transport)
    server.datagram_received = _counting(server.datagram_received, count)  # type: ignore[method-assign,assignment]
    loop.add_reader(control.fileno(), on_control)
    try:
        control.send(("ready", transport.get_extra_info("sockname")[1]))
        await asyncio.wait_for(stop.wait(), job.timeout)
    finally:
        loop.remove_reader(control.fileno())
        server.close()


class _ClientProtocol(QuicConnectionProtocol):
    """aioquic's connection protocol, counting received datagrams."""

    datagrams = 0
    sent = 0

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        self.datagrams += 1
        super().datagram_received(data, addr)


async def _connect(
    configuration: QuicConfiguration, port: int
) -> tuple[_ClientProtocol, asyncio.DatagramTransport]:
    """Connect from 127.0.0.1 (``aioquic.asyncio.connect`` binds the wildcard ``::``)."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _ClientProtocol(AioquicConnection(configuration=configuration)),
        local_addr=(HOST, 0),
    )
    _raise_socket_buffers(transport)
    send = transport.sendto

    def sendto(data: Any, addr: Any = None) -> None:
        protocol.sent += 1
        send(data, addr)

    transport.sendto = sendto  # type: ignore[method-assign]
    try:
        protocol.connect((HOST, port))
        await protocol.wait_connected()
    except BaseException:
        transport.close()
        raise
    return protocol, transport


async def _bulk(job: Job, port: int) -> dict[str, Any]:
    configuration = _config(job, server=False)
    protocol, transport = await _connect(configuration, port)
    try:
        reader, writer = await protocol.create_stream()
        received, sent = protocol.datagrams, protocol.sent
        cpu = time.process_time()
        start = time.perf_counter()
        remaining, chunk = job.size, WRITE_CHUNK
        while remaining:
            piece = chunk if remaining >= len(chunk) else chunk[:remaining]
            writer.write(piece)
            await writer.drain()
            remaining -= len(piece)
        writer.write_eof()
        answer = await reader.read()
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        if answer != ACK:
            raise BenchError(f"aioquic server answered {answer!r}")
        return {
            "seconds": elapsed,
            "client_cpu": cpu,
            "client_datagrams_received": protocol.datagrams - received,
            "client_datagrams_sent": protocol.sent - sent,
        }
    finally:
        protocol.close()
        transport.close()


async def _handshakes(job: Job, port: int) -> dict[str, Any]:
    configuration = _config(job, server=False)
    times = []
    for _ in range(1 + job.handshakes):  # the first is a warm-up
        start = time.perf_counter()
        protocol, transport = await _connect(configuration, port)
        times.append(time.perf_counter() - start)
        protocol.close()
        transport.close()
    return {"handshake_seconds": times[1:]}


def _offer_only_x25519() -> None:
    """Make aioquic clients in this process offer only x25519.

    aioquic has no setting for it: its client sends secp256r1, secp384r1 and
    x25519 shares and its server takes the first.  The TLS context's group list
    is replaced after construction (client process only; the server is stock).
    """
    original = aioquic_tls.Context.__init__

    def init(self: aioquic_tls.Context, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if not hasattr(self, "_supported_groups"):
            raise BenchError("this aioquic has no _supported_groups: cannot restrict its groups")
        self._supported_groups = [aioquic_tls.Group.X25519]

    aioquic_tls.Context.__init__ = init  # type: ignore[method-assign]


def server(job: Job, control: Connection) -> None:
    asyncio.run(_serve(job, control))


def client(job: Job, port: int) -> dict[str, Any]:
    if job.scenario.groups == ("x25519",):
        _offer_only_x25519()
    elif job.scenario.groups:
        raise BenchError(f"aioquic clients can be limited to x25519 only: {job.scenario.groups}")
    run = _bulk if job.scenario.kind == "bulk" else _handshakes
    return asyncio.run(asyncio.wait_for(run(job, port), job.timeout))
