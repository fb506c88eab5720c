"""The aioquic and qh3 sides of the QUIC benchmark: server and client roles on their asyncio APIs.

qh3 is a fork of aioquic with the same asyncio API (``qh3.asyncio``,
``qh3.quic.configuration``): one implementation plays both, the package chosen
by the scenario's ``stack`` (:func:`_api`, imported in the child process only,
so qh3 is needed only by its scenarios).  The server is the stack's own
``QuicServer`` with a stream handler; the client is a
``QuicConnectionProtocol`` on a socket bound to 127.0.0.1 (``connect`` binds
the wildcard address ``::``).  Data is written with ``writer.write`` and
``await writer.drain()`` per 64 KiB.  Things changed from the defaults, all to
compare like with like: the sockets get the buffer sizes mstls asks for, qh3
probes no larger datagrams (``probe_datagram_size=False``: the datagram size is
``--datagram``, as for the others), and in the ``x25519`` scenario the aioquic
client offers only x25519.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from types import ModuleType
from typing import Any

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

__all__ = ["STACKS", "client", "server"]

#: The Python packages these roles run on (``Scenario.stack``).
STACKS = ("aioquic", "qh3")
#: qh3 clients queue at most this many unsent bytes (mstls's send buffer is 1 MiB too).
SEND_BACKLOG = 1 << 20
#: How often a qh3 client with a full backlog looks again (about 1 % of it at 100 MB/s).
BACKLOG_POLL = 0.001


@dataclass(frozen=True)
class _Api:
    """What the roles use of one stack, and the two protocol classes built on it."""

    package: str
    tls: ModuleType
    configuration: Any  # QuicConfiguration
    connection: Any  # QuicConnection
    quic_server: Any  # QuicServer
    server_protocol: Any
    client_protocol: Any


@functools.cache
def _api(package: str) -> _Api:
    """Import ``package`` (aioquic or qh3) and build the roles' protocol classes on it."""
    if package not in STACKS:
        raise BenchError(f"not an aioquic-like stack: {package!r}")
    modules = {
        name: importlib.import_module(f"{package}.{name}")
        for name in ("tls", "asyncio.protocol", "asyncio.server", "quic.configuration",
                     "quic.connection", "quic.events")
    }  # fmt: skip
    protocol = modules["asyncio.protocol"].QuicConnectionProtocol
    handshake_completed = modules["quic.events"].HandshakeCompleted

    class ServerProtocol(protocol):  # type: ignore[misc,valid-type]
        """The stack's connection protocol, counting completed handshakes."""

        stats: ServerStats

        def quic_event_received(self, event: Any) -> None:
            if isinstance(event, handshake_completed):
                self.stats.on_handshake(_negotiated_group(self._quic))
            super().quic_event_received(event)

    class ClientProtocol(protocol):  # type: ignore[misc,valid-type]
        """The stack's connection protocol, counting received datagrams."""

        datagrams = 0
        sent = 0

        def datagram_received(self, data: bytes | str, addr: Any) -> None:
            self.datagrams += 1
            super().datagram_received(data, addr)

    return _Api(
        package,
        modules["tls"],
        modules["quic.configuration"].QuicConfiguration,
        modules["quic.connection"].QuicConnection,
        modules["asyncio.server"].QuicServer,
        ServerProtocol,
        ClientProtocol,
    )


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


def _negotiated_group(quic: Any) -> str | None:
    """The group an aioquic server used (read from its TLS context; best effort)."""
    context = getattr(quic, "tls", None)
    if getattr(context, "_x25519_private_key", None) is not None:
        return "x25519"
    keys = getattr(context, "_ec_private_keys", None)
    if keys:
        return str(keys[-1].curve.name)
    return None


def _raise_socket_buffers(transport: asyncio.BaseTransport) -> None:
    """Give aioquic's socket the buffer sizes mstls's sockets ask for (it keeps the
    OS defaults, about 200 kB, and loses datagrams to a full receive buffer)."""
    sock = transport.get_extra_info("socket")
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, option, DEFAULT_SOCKET_BUFFER)


def _config(api: _Api, job: Job, *, server: bool) -> Any:
    options: dict[str, Any] = {"probe_datagram_size": False} if api.package == "qh3" else {}
    configuration = api.configuration(
        is_client=not server,
        alpn_protocols=[ALPN],
        max_datagram_size=job.datagram,
        max_data=CONNECTION_WINDOW,
        max_stream_data=STREAM_WINDOW,
        **options,
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


async def _serve(api: _Api, job: Job, control: Connection) -> None:
    loop = asyncio.get_running_loop()
    stats, count = new_stats(job), _Count()
    stats.counts = lambda: (count.datagrams, count.bytes)
    tasks: set[asyncio.Task[None]] = set()
    stop = asyncio.Event()

    def on_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = loop.create_task(_sink(reader, writer, stats))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def create_protocol(quic: Any, **kwargs: Any) -> Any:
        protocol = api.server_protocol(quic, **kwargs)
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

    configuration = _config(api, job, server=True)
    transport, server = await loop.create_datagram_endpoint(
        lambda: api.quic_server(
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


async def _connect(
    api: _Api, configuration: Any, port: int
) -> tuple[Any, asyncio.DatagramTransport]:
    """Connect from 127.0.0.1 (``aioquic.asyncio.connect`` binds the wildcard ``::``)."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: api.client_protocol(api.connection(configuration=configuration)),
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


async def _drain(protocol: Any, writer: asyncio.StreamWriter) -> None:
    """``await writer.drain()``; qh3's writers have no protocol to wait on, so there the
    client waits while more than :data:`SEND_BACKLOG` bytes are queued on the stream."""
    if getattr(writer, "_protocol", None) is not None:
        await writer.drain()
        return
    stream_id = writer.get_extra_info("stream_id")
    while protocol._quic.get_send_buffer_size(stream_id) > SEND_BACKLOG:
        await asyncio.sleep(BACKLOG_POLL)


async def _bulk(api: _Api, job: Job, port: int) -> dict[str, Any]:
    configuration = _config(api, job, server=False)
    protocol, transport = await _connect(api, configuration, port)
    try:
        reader, writer = await protocol.create_stream()
        received, sent = protocol.datagrams, protocol.sent
        cpu = time.process_time()
        start = time.perf_counter()
        remaining, chunk = job.size, WRITE_CHUNK
        while remaining:
            piece = chunk if remaining >= len(chunk) else chunk[:remaining]
            writer.write(piece)
            await _drain(protocol, writer)
            remaining -= len(piece)
        writer.write_eof()
        answer = await reader.read()
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        if answer != ACK:
            raise BenchError(f"{api.package} server answered {answer!r}")
        return {
            "seconds": elapsed,
            "client_cpu": cpu,
            "client_datagrams_received": protocol.datagrams - received,
            "client_datagrams_sent": protocol.sent - sent,
        }
    finally:
        protocol.close()
        transport.close()


async def _handshakes(api: _Api, job: Job, port: int) -> dict[str, Any]:
    configuration = _config(api, job, server=False)
    times = []
    for _ in range(1 + job.handshakes):  # the first is a warm-up
        start = time.perf_counter()
        protocol, transport = await _connect(api, configuration, port)
        times.append(time.perf_counter() - start)
        protocol.close()
        transport.close()
    return {"handshake_seconds": times[1:]}


def _offer_only_x25519(api: _Api) -> None:
    """Make aioquic clients in this process offer only x25519.

    aioquic has no setting for it: its client sends secp256r1, secp384r1 and
    x25519 shares and its server takes the first.  The TLS context's group list
    is replaced after construction (client process only; the server is stock).
    """
    context = api.tls.Context
    original = context.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if not hasattr(self, "_supported_groups"):
            raise BenchError(f"{api.package} has no _supported_groups: cannot restrict its groups")
        self._supported_groups = [api.tls.Group.X25519]

    context.__init__ = init


def server(job: Job, control: Connection) -> None:
    asyncio.run(_serve(_api(job.scenario.stack), job, control))


def client(job: Job, port: int) -> dict[str, Any]:
    api = _api(job.scenario.stack)
    if job.scenario.groups == ("x25519",):
        _offer_only_x25519(api)
    elif job.scenario.groups:
        raise BenchError(f"aioquic clients can be limited to x25519 only: {job.scenario.groups}")
    run = _bulk if job.scenario.kind == "bulk" else _handshakes
    return asyncio.run(asyncio.wait_for(run(api, job, port), job.timeout))
