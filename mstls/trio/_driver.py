"""The trio driver's I/O: one background task per socket feeds a sans-I/O connection.

Theory of operation
-------------------
A *driver* owns one socket and the sans-I/O objects behind it: a client
:class:`~mstls.quic.connection.QuicConnection` (:class:`UdpClientDriver`) or a
:class:`~mstls.quic.endpoint.ServerEndpoint` with every server connection
(:class:`UdpListenerDriver`).  Trio runs one task at a time and the sans-I/O
calls never await, so no lock is needed: every change is a synchronous step
ending with :meth:`Driver.after_change`, which

1. sends what the connection produced (straight from the caller's task: an
   application task that writes flushes its own datagrams);
2. drains each session's events (:meth:`~mstls.session.Session.pump_events`)
   and wakes exactly the parked tasks they name (:class:`Waiters`);
3. moves the receive loop's timer: the loop sleeps inside a
   ``trio.move_on_at`` scope whose deadline is simply reassigned, so no extra
   wake-up channel is needed.

The receive loop waits until the socket is readable or the connection's next
deadline, reads a bounded batch of datagrams (brief T5) with
:func:`~mstls.quic.udp.receive_datagrams` (GRO-batched on Linux), runs due
timers and calls :meth:`Driver.after_change`.

Back-pressure: when the socket refuses datagrams (EAGAIN/ENOBUFS, brief E4)
the rest waits in a backlog, nothing more is pulled from the connection, and
a second task waits until the socket is writable.  Transport plug-ins (QMux over
TCP) provide the same hooks with their own two small loops.

Failures: anything unexpected in a loop (a fatal socket error) closes the
connections with INTERNAL_ERROR, so every waiter wakes and sees a
:class:`~mstls.exceptions.ConnectionTerminated`; nothing escapes the task
(brief E2).
"""

from __future__ import annotations

import contextlib
import math
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .. import errors
from ..codes import TransportErrorCode
from ..core.events import ConnectionTerminatedEvent
from ..quic.connection import QuicConnection
from ..quic.endpoint import ServerEndpoint
from ..quic.udp import detect_capabilities, new_receive_buffer, receive_datagrams, send_datagrams
from ..session import Session, Wakeups

__all__ = [
    "Core",
    "Driver",
    "ListenerDriver",
    "Spawner",
    "UdpClientDriver",
    "UdpListenerDriver",
    "Waiters",
    "system_spawner",
]

#: Datagrams read per wake-up of the receive loop (brief T5: bounded work).
MAX_DATAGRAMS_PER_READ = 256
#: Rounds of ``datagrams_to_send`` per flush.
MAX_FLUSH_ROUNDS = 16

#: Starts a background task: ``nursery.start_soon`` or the trio system nursery.
Spawner = Callable[[Callable[[], Awaitable[None]]], None]


def system_spawner(name: str) -> Spawner:
    """Run I/O in a trio system task (for objects created without a nursery)."""

    def spawn(fn: Callable[[], Awaitable[None]]) -> None:
        trio.lowlevel.spawn_system_task(fn, name=name)

    return spawn


class Waiters:
    """The parking lots of one connection: per stream, handshake, accept, open."""

    def __init__(self) -> None:
        self.connection = trio.lowlevel.ParkingLot()
        self.accept = trio.lowlevel.ParkingLot()
        self.open = trio.lowlevel.ParkingLot()
        self._streams: dict[int, trio.lowlevel.ParkingLot] = {}

    def stream(self, stream_id: int) -> trio.lowlevel.ParkingLot:
        lot = self._streams.get(stream_id)
        if lot is None:
            lot = self._streams[stream_id] = trio.lowlevel.ParkingLot()
        return lot

    def forget(self, stream_id: int) -> None:
        lot = self._streams.pop(stream_id, None)
        if lot is not None:
            lot.unpark_all()

    def notify(self, wake: Wakeups) -> None:
        if wake.connection:
            self.wake_all()
            return
        lots = self._streams
        for stream_id in wake.streams:
            lot = lots.get(stream_id)
            if lot is not None:
                lot.unpark_all()
        if wake.accept:
            self.accept.unpark_all()
        if wake.open:
            self.open.unpark_all()

    def wake_all(self) -> None:
        for lot in (self.connection, self.accept, self.open, *self._streams.values()):
            lot.unpark_all()


class Core:
    """What a Connection and its Streams share: the driver, the connection, its session."""

    __slots__ = ("conn", "driver", "session", "waiters")

    def __init__(self, driver: Driver, conn: Any, session: Session, waiters: Waiters) -> None:
        self.driver = driver
        self.conn = conn
        self.session = session
        self.waiters = waiters

    def after_change(self) -> None:
        self.driver.after_change(self)


class Driver:
    """Shared by every transport: event pumping, wake-ups and the timer scope."""

    def __init__(self) -> None:
        self._timer_scope: trio.CancelScope | None = None
        self._stop_scope = trio.CancelScope()
        self.closed = False
        self.done = trio.Event()

    # Implemented by transports -----------------------------------------------------------
    def cores(self) -> list[Core]:
        raise NotImplementedError

    def timer(self) -> float | None:
        raise NotImplementedError

    def flush(self, now: float) -> None:
        raise NotImplementedError

    async def loops(self, nursery: trio.Nursery) -> None:
        raise NotImplementedError

    def close_transport(self) -> None:
        raise NotImplementedError

    # Shared ---------------------------------------------------------------------------------
    def after_change(self, only: Core | None = None) -> None:
        """Send what is due, wake the parked tasks concerned, move the loop's timer."""
        if self.closed:
            return
        self.flush(trio.current_time())
        for core in self.cores() if only is None else (only,):
            wake = core.session.pump_events()
            if wake:
                core.waiters.notify(wake)
        scope = self._timer_scope
        if scope is not None:
            deadline = self.timer()
            scope.deadline = math.inf if deadline is None else deadline

    def start(self, spawn: Spawner) -> None:
        spawn(self._run)

    async def _run(self) -> None:
        try:
            with self._stop_scope:
                async with trio.open_nursery() as nursery:
                    await self.loops(nursery)
                    nursery.cancel_scope.cancel()
        finally:
            self.stop()

    async def guarded(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Run one I/O loop; an unexpected exception fails the connections (E2)."""
        try:
            await loop()
        except Exception as exc:  # never escapes: the application sees ConnectionIOError
            if not self.closed:
                self.fail_all(exc)
            self.stop()

    def fail_all(self, exc: BaseException) -> None:
        """A fatal I/O error: fail every connection with ConnectionIOError (E2), close
        it locally (no more sending) and wake everyone."""
        now = trio.current_time()
        reason = f"{type(exc).__name__}: {exc}"
        for core in self.cores():
            session = core.session
            if not session.failed:
                event = ConnectionTerminatedEvent(
                    error_code=TransportErrorCode.INTERNAL_ERROR,
                    frame_type=None,
                    reason=reason,
                    by_peer=False,
                    is_application=False,
                    kind="io_error",
                )
                factory, entries = errors.terminated_from_event(
                    event,
                    transport=session.transport,
                    during_handshake=not session.handshake_done,
                    cause=exc,
                )
                session.channel.fail(entries, factory)
            with contextlib.suppress(Exception):
                if not core.conn.is_terminated:
                    core.conn.close(
                        TransportErrorCode.INTERNAL_ERROR, reason, is_application=False, now=now
                    )
            session.pump_events()
            core.waiters.wake_all()

    def stop(self) -> None:
        """Stop the loops and release the transport; parked tasks wake and re-check."""
        if self.closed:
            return
        for core in self.cores():
            core.waiters.notify(core.session.pump_events())
        self.closed = True
        self._stop_scope.cancel()
        self.close_transport()
        for core in self.cores():
            core.waiters.wake_all()
        self.done.set()

    async def sleep_until_readable(self, wait: Callable[[], Awaitable[None]]) -> bool:
        """Run ``wait`` until it returns (True) or the next deadline passes (False)."""
        deadline = self.timer()
        with trio.move_on_at(math.inf if deadline is None else deadline) as scope:
            self._timer_scope = scope
            try:
                await wait()
            finally:
                self._timer_scope = None
        return not scope.cancelled_caught


class _UdpDriver(Driver):
    """Receive, feed, send for one UDP socket; see the module documentation."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock
        self.caps = detect_capabilities(sock)
        self._buffer = new_receive_buffer()
        self._backlog: deque[tuple[bytes, Any]] = deque()
        self._writable_needed = trio.Event()

    # Implemented by the client and listener -------------------------------------------------
    def feed(self, data: bytes, addr: Any, now: float) -> None:
        raise NotImplementedError

    def outgoing(self, now: float) -> list[tuple[bytes, Any]]:
        raise NotImplementedError

    def handle_timer(self, now: float) -> None:
        raise NotImplementedError

    def finished(self) -> bool:
        return False

    # Loops ---------------------------------------------------------------------------------
    async def loops(self, nursery: trio.Nursery) -> None:
        nursery.start_soon(self.guarded, self._send_loop)
        await self.guarded(self._receive_loop)

    async def _receive_loop(self) -> None:
        sock = self.sock

        async def readable() -> None:
            await trio.lowlevel.wait_readable(sock)

        while not self.finished():
            got_data = await self.sleep_until_readable(readable)
            if self.closed:
                return
            now = trio.current_time()
            if got_data:
                self._receive(now)
            timer = self.timer()
            if timer is not None and timer <= now:
                self.handle_timer(now)
            self.after_change()

    def _receive(self, now: float) -> None:
        batch = receive_datagrams(self.sock, MAX_DATAGRAMS_PER_READ, self.caps, self._buffer)
        feed = self.feed
        for data, addr in batch:
            feed(bytes(data), addr, now)  # views die at the next read; the core may keep data

    async def _send_loop(self) -> None:
        while True:
            await self._writable_needed.wait()
            await trio.lowlevel.wait_writable(self.sock)
            if self.closed:
                return
            self._writable_needed = trio.Event()
            pending = list(self._backlog)
            self._backlog.clear()
            if self._send(pending):
                self.after_change()

    # Sending -------------------------------------------------------------------------------
    def flush(self, now: float) -> None:
        if self._backlog:
            return  # the socket is full: the send loop goes first
        for _ in range(MAX_FLUSH_ROUNDS):
            out = self.outgoing(now)
            if not out or not self._send(out):
                return

    def _send(self, out: list[tuple[bytes, Any]]) -> bool:
        """Send ``out`` in runs of one address; keep what the socket refused. True: all sent."""
        index, count = 0, len(out)
        while index < count:
            addr = out[index][1]
            end = index + 1
            while end < count and out[end][1] == addr:
                end += 1
            group = [d for d, _ in out[index:end]]
            try:
                sent = send_datagrams(self.sock, group, addr, self.caps)
            except OSError:
                sent = len(group)  # unsendable (bad address): lost like any datagram
            index += sent
            if index < end:
                self._backlog.extend(out[index:])
                self._writable_needed.set()
                return False
        return True

    def close_transport(self) -> None:
        trio.lowlevel.notify_closing(self.sock)
        self.sock.close()


class UdpClientDriver(_UdpDriver):
    """One client connection on its own UDP socket."""

    def __init__(self, sock: socket.socket, conn: QuicConnection) -> None:
        super().__init__(sock)
        self.conn = conn
        self.core = Core(self, conn, Session(conn, transport="udp"), Waiters())
        self._cores = [self.core]

    def cores(self) -> list[Core]:
        return self._cores

    def feed(self, data: bytes, addr: Any, now: float) -> None:
        self.conn.receive_datagram(data, addr, now)

    def outgoing(self, now: float) -> list[tuple[bytes, Any]]:
        addr = self.conn.peer_address
        return [(d, addr) for d in self.conn.datagrams_to_send(now)]

    def timer(self) -> float | None:
        return self.conn.get_timer()

    def handle_timer(self, now: float) -> None:
        self.conn.handle_timer(now)

    def finished(self) -> bool:
        return bool(self.conn.is_terminated)


class ListenerDriver(Driver):
    """A driver with an accept queue: connections are offered once their handshake completed."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, Core] = {}
        self._handshaking: list[Core] = []
        self.accepted: deque[Core] = deque()
        self.accept_lot = trio.lowlevel.ParkingLot()

    def adopt(self, conn: Any, transport: str) -> Core:
        """Track a new server connection until it is accepted or ends."""
        core = Core(self, conn, Session(conn, transport=transport), Waiters())
        self.live[id(conn)] = core
        self._handshaking.append(core)
        return core

    def forget(self, core: Core) -> None:
        self.live.pop(id(core.conn), None)
        if core in self._handshaking:
            self._handshaking.remove(core)

    def cores(self) -> list[Core]:
        return list(self.live.values())

    def after_change(self, only: Core | None = None) -> None:
        super().after_change(only)
        ready = [c for c in self._handshaking if c.session.handshake_done or c.session.failed]
        for core in ready:
            self._handshaking.remove(core)
            if core.session.handshake_done and not core.session.failed:
                self.accepted.append(core)
        if ready:
            self.accept_lot.unpark_all()

    def stop(self) -> None:
        super().stop()
        self.accept_lot.unpark_all()

    def close_all(self, reason: str) -> None:
        """Close every connection (application code 0) and send the CONNECTION_CLOSEs."""
        now = trio.current_time()
        for core in self.cores():
            if not core.conn.is_terminated:
                core.conn.close(0, reason, now=now)
        self.after_change()


class UdpListenerDriver(_UdpDriver, ListenerDriver):
    """A listening UDP socket: every server connection behind one ServerEndpoint."""

    def __init__(self, sock: socket.socket, endpoint: ServerEndpoint) -> None:
        super().__init__(sock)
        self.endpoint = endpoint

    def cores(self) -> list[Core]:
        out = list(self.live.values())
        terminated = self.endpoint.terminated
        while terminated:  # forgotten by the endpoint: pumped once more, then dropped
            core = self.live.get(id(terminated.popleft()))
            if core is not None:
                self.forget(core)
        return out

    def feed(self, data: bytes, addr: Any, now: float) -> None:
        endpoint = self.endpoint
        endpoint.receive_datagram(data, addr, now)
        while endpoint.accepted:
            self.adopt(endpoint.accepted.popleft(), "udp")

    def outgoing(self, now: float) -> list[tuple[bytes, Any]]:
        return self.endpoint.datagrams_to_send(now)

    def timer(self) -> float | None:
        return self.endpoint.get_timer()

    def handle_timer(self, now: float) -> None:
        self.endpoint.handle_timer(now)
