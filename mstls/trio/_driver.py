"""The trio driver's core: wake-ups, the shared change step, the I/O task's life.

Theory of operation
-------------------
A *driver* owns one socket and the sans-I/O objects behind it (see
:mod:`mstls.trio._udp` for QUIC, :mod:`mstls.trio._tcp` for QMux).  Trio runs
one task at a time and the sans-I/O calls never await, so no lock is needed:
every change is a synchronous step ending with :meth:`Driver.after_change`,
whichever task made it (the I/O task after input or a timer, an application
task after a write or a close).  That step

1. sends what the connection produced, straight from the caller's task (an
   application task that writes flushes its own output; only what the socket
   refuses is left to the I/O task, which waits until it is writable);
2. drains each session's events (:meth:`~mstls.session.Session.pump_events`)
   and wakes exactly the parked tasks they name (:class:`Waiters`);
3. moves the receive loop's timer: the loop sleeps inside a
   ``trio.move_on_at`` scope whose deadline is simply reassigned, so no
   wake-up channel is needed.

A transport implements :meth:`Driver.loops` (its receive and send loops),
:meth:`Driver.flush`, :meth:`Driver.timer`, :meth:`Driver.cores` and
:meth:`Driver.close_transport`.  The loops run in a nursery of the driver's
own task, started through a :data:`Spawner`: a trio system task for objects
made without a nursery (:func:`mstls.trio.connect`, :func:`mstls.trio.listen`),
or the caller's nursery (:func:`mstls.trio.serve`).

Failures: an unexpected exception in a loop (a fatal socket error) fails every
connection of the driver with :class:`~mstls.exceptions.ConnectionIOError`
through the session's channel (brief E2), so every parked task wakes and sees
it; nothing escapes the task.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .. import _errors as errors
from ..codes import TransportErrorCode
from ..core.admission import MAX_RECORDED_FAILURES
from ..core.events import ConnectionTerminatedEvent
from ..core.lifecycle import TerminationKind
from ..exceptions import Error
from ..session import Session, Wakeups

__all__ = ["Core", "Driver", "ListenerDriver", "Spawner", "Waiters", "system_spawner"]

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
        self.datagram = trio.lowlevel.ParkingLot()
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
        if wake.datagram:
            self.datagram.unpark_all()

    def wake_all(self) -> None:
        lots = (self.connection, self.accept, self.open, self.datagram)
        for lot in (*lots, *self._streams.values()):
            lot.unpark_all()


class Core:
    """What a Connection and its Streams share: the driver, the connection, its session."""

    __slots__ = ("conn", "driver", "peer_address", "session", "waiters")

    def __init__(self, driver: Driver, conn: Any, transport: str, peer_address: Any) -> None:
        self.driver = driver
        self.conn = conn
        self.session = Session(conn, transport=transport)
        self.waiters = Waiters()
        self.peer_address = peer_address

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
        self.move_timer()

    def move_timer(self) -> None:
        """Move the receive loop's sleep to the next deadline."""
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
                    kind=TerminationKind.IO_ERROR,
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

    def abort(self, reason: str) -> None:
        """Close every connection locally (code 0), send what that produces, stop."""
        now = trio.current_time()
        for core in self.cores():
            with contextlib.suppress(Exception):  # best effort: we are giving up anyway
                if not core.conn.is_terminated:
                    core.conn.close(0, reason, now=now)
        self.after_change()
        self.stop()

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
            # Break the driver <-> core cycle: a dead connection is then freed by
            # reference counting, not left for the full garbage collection.
            core.driver = STOPPED
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


class ListenerDriver(Driver):
    """A driver with an accept queue: connections are offered once their handshake completed."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, Core] = {}
        #: Connections whose handshake is still running, oldest first (id(conn) -> core).
        self.handshaking: dict[int, Core] = {}
        self.accepted: deque[Core] = deque()
        #: The latest failed handshakes as (peer address, exception), newest last.
        self.handshake_failures: deque[tuple[Any, Error | None]] = deque(
            maxlen=MAX_RECORDED_FAILURES
        )
        #: Every failed handshake since the listener started.
        self.failed_handshakes = 0
        self.accept_lot = trio.lowlevel.ParkingLot()

    def adopt(self, core: Core) -> None:
        """Track a new server connection until it is accepted or ends."""
        self.live[id(core.conn)] = core
        self.handshaking[id(core.conn)] = core

    def forget(self, core: Core) -> None:
        self.live.pop(id(core.conn), None)
        self.handshaking.pop(id(core.conn), None)

    def cores(self) -> list[Core]:
        return list(self.live.values())

    def after_change(self, only: Core | None = None) -> None:
        super().after_change(only)
        self.check_handshakes()

    def check_handshakes(self) -> None:
        """Offer connections whose handshake completed; drop those that failed first."""
        self.check_handshakes_of(list(self.handshaking.values()))

    def check_handshakes_of(self, cores: list[Core]) -> None:
        """:meth:`check_handshakes` for ``cores`` only: those whose events were just
        pumped are the only ones whose handshake can have moved (O(len(cores)))."""
        handshaking = self.handshaking
        ready = [
            c
            for c in cores
            if (c.session.ready or c.session.failed) and handshaking.get(id(c.conn)) is c
        ]
        for core in ready:
            del handshaking[id(core.conn)]
            if core.session.ready and not core.session.failed:  # ready: 0-RTT accepted too
                self.accepted.append(core)
            else:
                self._record_failure(core)
        if ready:
            self.accept_lot.unpark_all()

    def _record_failure(self, core: Core) -> None:
        """Keep a bounded record of failed handshakes for the application (metrics, logs)."""
        error = core.session.channel.exception()
        address = getattr(core.conn, "peer_address", None) or core.peer_address
        self.handshake_failures.append((address, error))
        self.failed_handshakes += 1

    def stop(self) -> None:
        super().stop()
        self.accept_lot.unpark_all()

    def close_all(self, reason: str) -> None:
        """Close every connection (application code 0) and send the CONNECTION_CLOSEs."""
        now = trio.current_time()
        drivers: dict[int, Driver] = {}
        for core in self.cores():
            if not core.conn.is_terminated:
                core.conn.close(0, reason, now=now)
                drivers[id(core.driver)] = core.driver
        for driver in drivers.values():  # one flush per socket
            driver.after_change()


class _Stopped(Driver):
    """The driver of every core whose own driver stopped: closed, does nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = True

    def cores(self) -> list[Core]:
        return []


#: Stands in for a stopped driver (see :meth:`Driver.stop`).
STOPPED: Driver = _Stopped()
