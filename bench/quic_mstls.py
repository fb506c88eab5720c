"""The mstls side of the QUIC benchmark: a fast driver loop and the two roles.

Theory of operation
-------------------
:class:`_Loop` drives one sans-I/O object (a client
:class:`~mstls.quic.connection.QuicConnection` or a
:class:`~mstls.quic.endpoint.ServerEndpoint`) over one non-blocking UDP socket
from :mod:`mstls.io.udp`.  It is part of what is measured, so it is written
the way a fast driver should be.  Each turn:

1. read every ready datagram (GRO batches, up to :data:`RECEIVE_BATCH`) into
   one buffer and feed them all; the views are not copied, the connection
   decrypts each one before the next read overwrites the buffer;
2. run the timer if the deadline read last turn has passed;
3. let the application act (the client writes as much as the stream takes);
4. build the output (up to :data:`SEND_CALLS` calls of ``datagrams_to_send``)
   and send it with GSO in one call; what the socket refuses waits for
   writability and goes out before anything new;
5. read the next deadline (``get_timer``, once per turn) and sleep in
   ``select`` only if the turn left nothing to do.

``select`` is used, not epoll, because epoll rounds timeouts up to whole
milliseconds, which would oversleep pacing deadlines.  A server loop also
watches the control pipe from the parent (report requests, stop).
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from mstls.io.udp import (
    Address,
    DatagramCounters,
    detect_capabilities,
    new_receive_buffer,
    open_udp_socket,
    receive_datagrams,
    send_datagrams,
)
from mstls.quic.config import QuicConfig
from mstls.quic.connection import QuicConnection
from mstls.quic.endpoint import ServerEndpoint
from mstls.quic.sending import MAX_DATAGRAMS_PER_CALL
from mstls.tls.certificates import load_cert_chain, load_roots
from mstls.tls.config import TLSConfig
from mstls.tls.groups import SUPPORTED_GROUPS, NamedGroup

from .quic_common import (
    ACK,
    ALPN,
    CONNECTION_WINDOW,
    HOST,
    MIN_DATAGRAM,
    READ_MAX,
    SERVER_NAME,
    STREAM_WINDOW,
    WRITE_CHUNK,
    BenchError,
    Job,
    ServerStats,
    new_stats,
)

__all__ = ["MAX_WAIT", "RECEIVE_BATCH", "SEND_CALLS", "client", "server"]

#: Datagrams read per turn (about 300 kB at 1200 bytes).
RECEIVE_BATCH = 256
#: ``datagrams_to_send`` calls per turn (each gives at most 64 datagrams).
SEND_CALLS = 4
#: Longest sleep without a deadline (the control pipe is checked then).
MAX_WAIT = 0.05


class _Loop:
    """A tight loop over one non-blocking UDP socket for one sans-I/O QUIC object.

    Subclasses connect it to a client connection or a server endpoint through
    :meth:`feed`, :meth:`output`, :meth:`next_timer` and :meth:`fire_timer`.
    """

    def __init__(self, control: Connection | None = None) -> None:
        self.sock = open_udp_socket(HOST, 0)
        self.caps = detect_capabilities(self.sock)
        self.buffer = new_receive_buffer()
        self.control = control
        self.readers: list[Any] = [self.sock] if control is None else [self.sock, control]
        #: Output the socket would not take yet (EAGAIN): sent before anything new.
        self.blocked: list[tuple[Address, list[bytes]]] = []
        self.timer: float | None = None
        self.stopped = False
        #: Turns of the loop, timer firings and waits (diagnostics, reported by servers).
        self.turns = 0
        self.timers_fired = 0
        self.waits = 0

    def close(self) -> None:
        self.sock.close()

    def feed(self, batch: list[tuple[memoryview, Address]], now: float) -> None:
        raise NotImplementedError

    def output(self, now: float) -> tuple[list[tuple[Address, list[bytes]]], bool]:
        """Datagrams to send by destination, and whether more may be ready at once."""
        raise NotImplementedError

    def next_timer(self) -> float | None:
        raise NotImplementedError

    def fire_timer(self, now: float) -> None:
        raise NotImplementedError

    def on_control(self, message: Any) -> None:
        """A message from the parent (servers answer report requests)."""

    def run(
        self, done: Callable[[], bool], step: Callable[[float], None] | None, deadline: float
    ) -> None:
        """Turn until ``done()``; ``step(now)`` is the application's turn."""
        sock, caps, buffer = self.sock, self.caps, self.buffer
        feed, flush, next_timer = self.feed, self.flush, self.next_timer
        monotonic = time.monotonic
        while not done():
            now = monotonic()
            if now > deadline:
                raise BenchError("deadline passed in the mstls loop")
            self.turns += 1
            batch = receive_datagrams(sock, RECEIVE_BATCH, caps, buffer)
            if batch:
                feed(batch, now)
            timer = self.timer
            if timer is not None and timer <= now:
                self.timers_fired += 1
                self.fire_timer(now)
            if step is not None:
                step(now)
            busy = flush(now) or len(batch) >= RECEIVE_BATCH
            self.timer = timer = next_timer()
            if not busy:
                self.wait(timer)

    def flush(self, now: float) -> bool:
        """Send what is blocked, then the new output; True if more output may be ready."""
        if self.blocked and not self._send(self.blocked):
            return False
        groups, more = self.output(now)
        return self._send(groups) and more

    def _send(self, groups: list[tuple[Address, list[bytes]]]) -> bool:
        """Send ``groups``; keep what the socket refused in :attr:`blocked`; True if all left."""
        for index, (addr, datagrams) in enumerate(groups):
            sent = send_datagrams(self.sock, datagrams, addr, self.caps)
            if sent < len(datagrams):
                self.blocked = [(addr, datagrams[sent:]), *groups[index + 1 :]]
                return False
        self.blocked = []
        return True

    def wait(self, timer: float | None) -> None:
        """Sleep until the socket (or the control pipe) is ready, or the deadline ``timer``."""
        timeout = MAX_WAIT if timer is None else min(MAX_WAIT, timer - time.monotonic())
        if timeout <= 0:
            return
        self.waits += 1
        writers = [self.sock] if self.blocked else []
        readable, _, _ = select.select(self.readers, writers, [], timeout)
        if self.control is not None and self.control in readable:
            try:
                message = self.control.recv()
            except EOFError:  # the parent is gone
                self.stopped = True
                return
            self.on_control(message)


class _ClientLoop(_Loop):
    """The loop of one client connection."""

    def __init__(self, conn: QuicConnection) -> None:
        super().__init__()
        self.conn = conn
        self.peer = conn.peer_address

    def feed(self, batch: list[tuple[memoryview, Address]], now: float) -> None:
        receive = self.conn.receive_datagram
        for data, addr in batch:
            receive(data, addr, now)

    def output(self, now: float) -> tuple[list[tuple[Address, list[bytes]]], bool]:
        produce = self.conn.datagrams_to_send
        out = produce(now)
        calls = 1
        while len(out) == calls * MAX_DATAGRAMS_PER_CALL and calls < SEND_CALLS:
            out += produce(now)
            calls += 1
        more = len(out) == calls * MAX_DATAGRAMS_PER_CALL
        return ([(self.peer, out)] if out else []), more

    def next_timer(self) -> float | None:
        return self.conn.get_timer()

    def fire_timer(self, now: float) -> None:
        self.conn.handle_timer(now)


class _ServerLoop(_Loop):
    """The loop of a server endpoint; answers the parent's report requests."""

    def __init__(self, endpoint: ServerEndpoint, control: Connection, stats: ServerStats) -> None:
        super().__init__(control)
        self.endpoint = endpoint
        self.app = _ServerApp(endpoint, stats, self.caps.counters)

    def feed(self, batch: list[tuple[memoryview, Address]], now: float) -> None:
        receive = self.endpoint.receive_datagram
        for data, addr in batch:
            receive(data, addr, now)  # type: ignore[arg-type]  # views are accepted

    def output(self, now: float) -> tuple[list[tuple[Address, list[bytes]]], bool]:
        out = self.endpoint.datagrams_to_send(now)
        if not out:
            return [], False
        groups: list[tuple[Address, list[bytes]]] = []
        start, addr = 0, out[0][1]
        for index in range(1, len(out)):
            if out[index][1] != addr:
                groups.append((addr, [data for data, _ in out[start:index]]))
                start, addr = index, out[index][1]
        groups.append((addr, [data for data, _ in out[start:]]))
        return groups, len(out) >= MAX_DATAGRAMS_PER_CALL

    def next_timer(self) -> float | None:
        return self.endpoint.get_timer()

    def fire_timer(self, now: float) -> None:
        self.endpoint.handle_timer(now)

    def on_control(self, message: Any) -> None:
        if message[0] == "report":
            assert self.control is not None
            report = self.app.stats.report()
            report["loop"] = {"turns": self.turns, "timers": self.timers_fired, "waits": self.waits}
            self.control.send(("report", report))
        elif message[0] == "stop":
            self.stopped = True


class _ServerApp:
    """The mstls server application: counts handshakes, drains streams, answers each FIN."""

    def __init__(
        self, endpoint: ServerEndpoint, stats: ServerStats, counters: DatagramCounters
    ) -> None:
        self.endpoint = endpoint
        self.stats = stats
        self.fresh: list[QuicConnection] = []  # accepted, handshake not complete yet
        self.live: list[QuicConnection] = []  # handshake complete
        self.seen: list[QuicConnection] = []
        self.reading: list[tuple[QuicConnection, int]] = []
        stats.counts = lambda: (counters.received, sum(c.bytes_received for c in self.seen))

    def step(self, now: float) -> None:
        accepted = self.endpoint.accepted
        while accepted:
            conn = accepted.popleft()
            self.fresh.append(conn)
            self.seen.append(conn)
        if self.fresh:
            self._check_handshakes()
        for conn in self.live:
            for stream_id in conn.streams.accept_pending():
                self.reading.append((conn, stream_id))
        if self.reading:
            self._drain()

    def _check_handshakes(self) -> None:
        waiting = []
        for conn in self.fresh:
            # Not is_established: the client's Finished and its close may arrive in one batch.
            if conn.handshake_complete:
                group = getattr(conn.tls, "group", None)
                self.stats.on_handshake(None if group is None else _group_name(group))
                self.live.append(conn)
            elif not conn.is_terminated:
                waiting.append(conn)
        self.fresh = waiting
        self.live = [conn for conn in self.live if not conn.is_terminated]

    def _drain(self) -> None:
        still = []
        for conn, stream_id in self.reading:
            data, fin = conn.streams.read(stream_id, READ_MAX)
            self.stats.stream_bytes += len(data)
            if fin:
                conn.streams.write(stream_id, ACK, fin=True)
                self.stats.mark()
            else:
                still.append((conn, stream_id))
        self.reading = still


def _group_name(group: int) -> str:
    try:
        return NamedGroup(group).name
    except ValueError:
        return hex(group)


class _Upload:
    """The mstls client's application: write the payload and FIN, then read the answer."""

    def __init__(self, conn: QuicConnection, size: int) -> None:
        self.conn = conn
        self.streams = conn.streams
        self.stream_id = self.streams.open_stream()
        self.remaining = size
        self.partial: memoryview | None = None
        self.answer = b""
        self.done = False

    def finished(self) -> bool:
        return self.done or self.conn.is_terminated

    def step(self, now: float) -> None:
        if self.remaining:
            self._write()
        else:
            data, fin = self.streams.read(self.stream_id, READ_MAX)
            self.answer += data
            self.done = fin

    def _write(self) -> None:
        write, stream_id, chunk = self.streams.write, self.stream_id, WRITE_CHUNK
        while self.remaining:
            piece: bytes | memoryview
            if self.partial is not None:
                piece = self.partial
            else:
                piece = chunk if self.remaining >= len(chunk) else chunk[: self.remaining]
            size = len(piece)
            taken = write(stream_id, piece, self.remaining == size)
            self.remaining -= taken
            if taken < size:
                self.partial = memoryview(piece)[taken:]
                return
            self.partial = None


def _config(job: Job, *, server: bool) -> QuicConfig:
    scenario = job.scenario
    tls: TLSConfig
    if server:
        chain, key = load_cert_chain(job.cert, job.key)
        tls = TLSConfig(alpn_protocols=[ALPN], certificate_chain=chain, private_key=key)
    else:
        groups = [NamedGroup[name] for name in scenario.groups]
        tls = TLSConfig(
            alpn_protocols=[ALPN],
            server_name=SERVER_NAME,
            trusted_roots=load_roots(cafile=job.ca, use_system=False),
            groups=groups or SUPPORTED_GROUPS,
        )
    path: dict[str, Any] = {}
    if not scenario.pmtu:
        if job.datagram == MIN_DATAGRAM or scenario.kind == "handshake":
            path = {"pmtu_discovery": False}
        else:  # probe straight up to the requested size (loopback takes it)
            path = {"pmtu_discovery": True, "pmtu_max": job.datagram}
    return QuicConfig(
        tls=tls,
        initial_max_data=CONNECTION_WINDOW,
        initial_max_stream_data=STREAM_WINDOW,
        max_data_window=CONNECTION_WINDOW,
        max_stream_data_window=STREAM_WINDOW,
        **path,
    )


def server(job: Job, control: Connection) -> None:
    endpoint = ServerEndpoint(_config(job, server=True))
    loop = _ServerLoop(endpoint, control, new_stats(job))
    try:
        deadline = time.monotonic() + job.timeout
        control.send(("ready", loop.sock.getsockname()[1]))
        loop.run(lambda: loop.stopped, loop.app.step, deadline)
    finally:
        loop.close()


def _connect(config: QuicConfig, port: int, deadline: float) -> _ClientLoop:
    """A client connection whose handshake completed (its Finished is sent)."""
    now = time.monotonic()
    conn = QuicConnection(config, is_client=True, now=now, peer_address=(HOST, port))
    loop = _ClientLoop(conn)
    try:
        conn.connect(now)
        loop.run(lambda: conn.is_established or conn.is_terminated, None, deadline)
        if not conn.is_established:
            raise BenchError(f"mstls handshake failed: {conn.close_info}")
    except BaseException:
        loop.close()
        raise
    return loop


def _close(loop: _ClientLoop) -> None:
    now = time.monotonic()
    loop.conn.close(now=now)
    loop.flush(now)
    loop.close()


def _bulk_client(job: Job, port: int) -> dict[str, Any]:
    deadline = time.monotonic() + job.timeout
    loop = _connect(_config(job, server=False), port, deadline)
    try:
        upload = _Upload(loop.conn, job.size)
        counters = loop.caps.counters
        sent, received = counters.sent, counters.received
        cpu = time.process_time()
        start = time.perf_counter()
        loop.run(upload.finished, upload.step, deadline)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        if not upload.done or upload.answer != ACK:
            raise BenchError(f"no answer from the server: {loop.conn.close_info}")
        return {
            "seconds": elapsed,
            "client_cpu": cpu,
            "client_datagrams_sent": counters.sent - sent,
            "client_datagrams_received": counters.received - received,
        }
    finally:
        _close(loop)


def _handshake_client(job: Job, port: int) -> dict[str, Any]:
    deadline = time.monotonic() + job.timeout
    config = _config(job, server=False)
    times = []
    for _ in range(1 + job.handshakes):  # the first is a warm-up
        start = time.perf_counter()
        loop = _connect(config, port, deadline)
        times.append(time.perf_counter() - start)
        _close(loop)
    return {"handshake_seconds": times[1:]}


def client(job: Job, port: int) -> dict[str, Any]:
    if job.scenario.kind == "bulk":
        return _bulk_client(job, port)
    return _handshake_client(job, port)
