"""Bulk uploads on one stream must never stall (issue 17 point 10).

The stall seen over TCP: ``send_all`` wrote until the stream's send buffer was
full, and the flush made by that same write (the QMux core takes stream data
into TLS records at once and the sink acknowledges it) could empty the whole
buffer into a socket with room for it.  The ``StreamWritable`` event of that
drain was pumped while the writing task was not yet parked, so nobody was
woken; the task then parked on a lot nothing would ever unpark again (the
buffer was empty, everything acknowledged): both sides idle until the idle
timeout.

:func:`test_send_all_survives_a_drain_inside_its_own_write` reproduces it
deterministically with two real :class:`~mstls.qmux.connection.QMuxConnection`
joined by an in-memory byte pipe of unlimited room (every flush drains the
buffer) and trio's autojump clock (a stall jumps straight to the deadline).
:func:`test_bulk_upload_on_loopback_does_not_stall` is the bounded 127.0.0.1
stress test of the real drivers under a busy CPU.
"""

from __future__ import annotations

import functools
import hashlib
import socket
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import attrs
import pytest
import trio
import trio.testing

import mstls.trio
from mstls.core.send_stream import DEFAULT_SEND_BUFFER
from mstls.qmux.config import QMuxConfig
from mstls.qmux.connection import QMuxConnection
from mstls.trio._connection import Connection
from mstls.trio._driver import Core, Driver

from .test_trio_api import TIMEOUT, client_config, server_config

#: Receive windows far above the send buffer: credit never limits a flush.
WIDE_WINDOW = 16 * DEFAULT_SEND_BUFFER
#: Virtual seconds the deterministic test may take (the handshake deadline is later).
VIRTUAL_DEADLINE = 5.0
#: The stress test: bytes uploaded, the size of each send_all, and its stall bound.
STRESS_SIZE = 32 << 20
STRESS_CHUNK = 4 * DEFAULT_SEND_BUFFER
STRESS_DEADLINE = 30.0
#: Longer than the stall bound: a stall fails as such, not as an idle timeout.
STRESS_IDLE_TIMEOUT = 2 * STRESS_DEADLINE
#: The client's socket send buffer in the stress test (the kernel caps it at
#: wmem_max): room for a whole stream send buffer, the stall's condition.
SOCKET_BUFFER = 4 * DEFAULT_SEND_BUFFER
#: Work of one step of the CPU-burning thread (it checks its stop flag in between).
BURN_STEP = 10_000


class MemoryPipeDriver(Driver):
    """One QMux connection whose "socket" is an unbounded in-memory byte queue.

    What :meth:`flush` produces is appended to the peer's inbox at once (a socket
    that never refuses), and the peer's receive loop feeds it; the rest is the
    shared :class:`~mstls.trio._driver.Driver` machinery the TCP driver uses.
    """

    def __init__(self, conn: QMuxConnection) -> None:
        super().__init__()
        self.conn = conn
        self.core = Core(self, conn, "tcp", ("memory", 0))
        self.peer: MemoryPipeDriver | None = None
        self.inbox: deque[bytes] = deque()
        self.arrived = trio.lowlevel.ParkingLot()

    def cores(self) -> list[Core]:
        return [self.core]

    def timer(self) -> float | None:
        return self.conn.get_timer()

    def flush(self, now: float) -> None:
        peer = self.peer
        assert peer is not None
        while data := self.conn.data_to_send(now):
            peer.inbox.append(data)
        if peer.inbox:
            peer.arrived.unpark_all()

    async def loops(self, nursery: trio.Nursery) -> None:
        conn = self.conn
        while not conn.is_terminated:
            if not self.inbox:
                await self.sleep_until_readable(self.arrived.park)
            now = trio.current_time()
            while self.inbox:
                conn.receive_data(self.inbox.popleft(), now)
            timer = conn.get_timer()
            if timer is not None and timer <= now:
                conn.handle_timer(now)
            self.after_change()

    def close_transport(self) -> None:
        pass


def wide(config: QMuxConfig) -> QMuxConfig:
    return attrs.evolve(
        config,
        initial_max_data=WIDE_WINDOW,
        initial_max_stream_data=WIDE_WINDOW,
        max_data_window=WIDE_WINDOW,
        max_stream_data_window=WIDE_WINDOW,
    )


async def memory_pair(nursery: trio.Nursery) -> tuple[Connection, Connection]:
    """A connected client and server joined by :class:`MemoryPipeDriver`."""
    now = trio.current_time()
    client = MemoryPipeDriver(
        QMuxConnection(wide(client_config().qmux_config("localhost")), is_client=True, now=now)
    )
    server = MemoryPipeDriver(
        QMuxConnection(wide(server_config().qmux_config()), is_client=False, now=now)
    )
    client.peer, server.peer = server, client
    for driver in (client, server):
        driver.start(nursery.start_soon)
    client.conn.connect(now)
    client.after_change()
    pair = Connection(client.core, "tcp"), Connection(server.core, "tcp")
    for conn in pair:
        await conn.wait_handshake()
    return pair


async def test_send_all_survives_a_drain_inside_its_own_write(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each send_all is larger than the send buffer and every flush empties the buffer:
    the writer must go on although the StreamWritable of that drain fired before it
    could park."""
    size = 3 * DEFAULT_SEND_BUFFER + 1
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    received = bytearray()
    all_read = trio.Event()
    with trio.fail_after(VIRTUAL_DEADLINE):
        async with trio.open_nursery() as nursery:
            client, server = await memory_pair(nursery)
            stream = await client.open_stream()

            async def read_all() -> None:
                peer_stream = await server.accept_stream()
                while chunk := await peer_stream.receive_some(DEFAULT_SEND_BUFFER):
                    received.extend(chunk)
                all_read.set()

            nursery.start_soon(read_all)
            await stream.send_all(payload)
            await stream.send_eof()
            await all_read.wait()
            await client.aclose()
            nursery.cancel_scope.cancel()
    assert bytes(received) == payload


@contextmanager
def busy_cpu() -> Iterator[None]:
    """A thread burning CPU (and taking the GIL) for the duration: the load of issue 17."""
    stop = threading.Event()

    def burn() -> None:
        while not stop.is_set():
            sum(range(BURN_STEP))

    thread = threading.Thread(target=burn, name="busy-cpu", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def wide_send_buffer(sock: socket.socket) -> None:
    """Ask for a :data:`SOCKET_BUFFER` bytes send buffer (capped by the kernel)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)


@pytest.mark.network
@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_bulk_upload_on_loopback_does_not_stall(transport: str) -> None:
    """32 MiB on one stream over 127.0.0.1 with a busy CPU: every byte arrives, in order.

    Each ``send_all`` is several send buffers long and starts once the reader has
    caught up, so the kernel and the peer's credit have room for a whole buffer:
    the condition of the stall (the windows have grown after the first rounds).
    """
    digest = hashlib.sha256()
    expected = hashlib.sha256()
    received = 0
    progress = trio.lowlevel.ParkingLot()

    async def handler(conn: mstls.trio.Connection) -> None:
        nonlocal received
        stream = await conn.accept_stream()
        while chunk := await stream.receive_some(STRESS_CHUNK):
            received += len(chunk)
            digest.update(chunk)
            progress.unpark_all()
        await stream.send_eof()
        await trio.sleep_forever()  # until the listener closes the connection

    with busy_cpu(), trio.fail_after(STRESS_DEADLINE):
        async with trio.open_nursery() as nursery:
            serve = functools.partial(
                mstls.trio.serve,
                "127.0.0.1",
                0,
                server_config(idle_timeout=STRESS_IDLE_TIMEOUT),
                handler,
                transport=transport,
            )
            listener = await nursery.start(serve)
            port = listener.address[1]
            conn = await mstls.trio.connect(
                "127.0.0.1",
                port,
                client_config(idle_timeout=STRESS_IDLE_TIMEOUT),
                transport=transport,
                timeout=TIMEOUT,
            )
            wide_send_buffer(conn._core.driver.sock)  # type: ignore[attr-defined]
            async with conn:
                stream = await conn.open_stream()
                for index in range(STRESS_SIZE // STRESS_CHUNK):
                    chunk = index.to_bytes(4, "big") * (STRESS_CHUNK // 4)
                    expected.update(chunk)
                    await stream.send_all(chunk)
                    while received < (index + 1) * STRESS_CHUNK:
                        await progress.park()
                await stream.send_eof()
                assert await stream.receive_some() == b""  # the server read it all
            await listener.aclose()
            nursery.cancel_scope.cancel()
    assert received == STRESS_SIZE
    assert digest.hexdigest() == expected.hexdigest()
