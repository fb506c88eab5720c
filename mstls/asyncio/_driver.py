"""The asyncio driver's core: wake-ups, the shared change step, timers, the driver's life.

Theory of operation
-------------------
A *driver* owns one socket and the sans-I/O objects behind it (see
:mod:`mstls.asyncio._udp` for QUIC, :mod:`mstls.asyncio._tcp` for QMux).  It
runs no task of its own: the socket is watched with ``loop.add_reader`` (and
``loop.add_writer`` only while the kernel refuses output), and the core's next
deadline (``get_timer``, kept in the core's deadline heap,
:mod:`mstls.core.deadlines`) is one ``loop.call_at`` handle, moved whenever
the deadline changes: no polling.  The event loop runs one callback or task
step at a time and the sans-I/O calls never await, so no lock is needed.

Every change is a synchronous step ending with :meth:`Driver.after_change`.
The driver's own callbacks (input, timers, writability) run it at once; an
application task's change (a write, a read that frees window, a FIN) asks for
it with :meth:`Driver.soon`, which runs it once at the loop's next turn
however many changes came before, so a write and its FIN, or the answers of
many streams, share datagrams.  The step:

1. send what the connection produced (an application task that writes flushes
   its own output; only what the socket refuses waits for writability);
2. drain each session's events (:meth:`~mstls.session.Session.pump_events`)
   and wake exactly the parked tasks they name (:class:`Waiters`);
3. move the timer handle to the next deadline.

Failures: an unexpected exception in a callback (a fatal socket error) fails
every connection of the driver with :class:`~mstls.exceptions.ConnectionIOError`
through the session's channel (brief E2), so every parked task wakes and sees
it; nothing escapes into the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any

from .. import _errors as errors
from ..codes import TransportErrorCode
from ..core.admission import MAX_RECORDED_FAILURES
from ..core.events import ConnectionTerminatedEvent
from ..core.lifecycle import TerminationKind
from ..exceptions import Error
from ..session import Session, Wakeups

__all__ = ["STOPPED", "Core", "Driver", "ListenerDriver", "Lot", "Waiters"]


class Lot:
    """Tasks parked until the driver wakes them (a parking lot of futures).

    ``hook``, if set, is called first on every wake-up (a stream with data still
    to push schedules that push from it).
    """

    __slots__ = ("_futures", "hook")

    def __init__(self) -> None:
        self._futures: list[asyncio.Future[None]] = []
        self.hook: Callable[[], None] | None = None

    async def park(self) -> None:
        """Wait for the next :meth:`unpark_all`; a cancellation takes nothing."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._futures.append(future)
        try:
            await future
        finally:
            with contextlib.suppress(ValueError):
                self._futures.remove(future)

    def unpark_all(self) -> None:
        hook = self.hook
        if hook is not None:
            hook()
        futures, self._futures = self._futures, []
        for future in futures:
            if not future.done():
                future.set_result(None)


class Waiters:
    """The lots of one connection: per stream, handshake, accept, open, datagrams."""

    def __init__(self) -> None:
        self.connection = Lot()
        self.accept = Lot()
        self.open = Lot()
        #: Tasks waiting in receive_datagram (RFC 9221).
        self.datagram = Lot()
        self._streams: dict[int, Lot] = {}

    def stream(self, stream_id: int) -> Lot:
        lot = self._streams.get(stream_id)
        if lot is None:
            lot = self._streams[stream_id] = Lot()
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

    __slots__ = ("conn", "driver", "loop", "peer_address", "session", "waiters")

    def __init__(self, driver: Driver, conn: Any, transport: str, peer_address: Any) -> None:
        self.driver = driver
        self.loop = driver.loop
        self.conn = conn
        self.session = Session(conn, transport=transport)
        self.waiters = Waiters()
        self.peer_address = peer_address

    def after_change(self) -> None:
        """An application change: its step runs once, at the loop's next turn."""
        self.driver.soon(self)

    def now(self) -> float:
        return self.loop.time()


class Driver:
    """Shared by every transport: event pumping, wake-ups, the timer handle, stopping."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._timer_handle: asyncio.TimerHandle | None = None
        self._armed: float | None = None
        self.closed = False
        self.done = asyncio.Event()
        self._dirty: dict[int, Core] = {}
        self._soon_scheduled = False

    # Implemented by transports -----------------------------------------------------------
    def cores(self) -> list[Core]:
        raise NotImplementedError

    def timer(self) -> float | None:
        raise NotImplementedError

    def handle_timer(self, now: float) -> None:
        raise NotImplementedError

    def flush(self, now: float) -> None:
        raise NotImplementedError

    def finished(self) -> bool:
        """Whether the driver's work is over (its connection terminated)."""
        return False

    def close_transport(self) -> None:
        raise NotImplementedError

    # Shared ---------------------------------------------------------------------------------
    def soon(self, core: Core) -> None:
        """Run the change step for ``core`` at the loop's next turn, once however many
        changes the application makes before it (as aioquic's ``_transmit_soon``):
        a write and its FIN, or the answers of many streams, share datagrams."""
        self._dirty[id(core)] = core
        if not self._soon_scheduled:
            self._soon_scheduled = True
            self.loop.call_soon(self._run_soon)

    def _run_soon(self) -> None:
        self._soon_scheduled = False
        dirty = list(self._dirty.values())
        self._dirty.clear()
        self.guarded(lambda: self.after_changes(dirty))

    def after_changes(self, cores: list[Core]) -> None:
        """The change step for several cores changed by the application."""
        for core in cores:
            self.after_change(core)

    def after_change(self, only: Core | None = None) -> None:
        """Send what is due, wake the parked tasks concerned, move the timer."""
        if self.closed:
            return
        self.flush(self.loop.time())
        for core in self.cores() if only is None else (only,):
            wake = core.session.pump_events()
            if wake:
                core.waiters.notify(wake)
        self.after_step()

    def after_step(self) -> None:
        """Stop once finished, else move the timer to the next deadline."""
        if self.closed:
            return
        if self.finished():
            self.stop()
            return
        self.move_timer()

    def move_timer(self) -> None:
        """Arm one ``loop.call_at`` handle for the next deadline (if it moved)."""
        deadline = self.timer()
        if deadline == self._armed:
            return
        handle = self._timer_handle
        if handle is not None:
            handle.cancel()
            self._timer_handle = None
        self._armed = deadline
        if deadline is not None:
            self._timer_handle = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer_handle = None
        self._armed = None
        self.guarded(self._run_timer)

    def _run_timer(self) -> None:
        now = self.loop.time()
        deadline = self.timer()
        if deadline is not None and deadline <= now:
            self.handle_timer(now)
        self.after_io()

    def after_io(self) -> None:
        """The change step after input or a timer (listeners narrow it)."""
        self.after_change()

    def guarded(self, step: Callable[[], None]) -> None:
        """Run one I/O callback; an unexpected exception fails the connections (E2)."""
        if self.closed:
            return
        try:
            step()
        except Exception as exc:  # never escapes: the application sees ConnectionIOError
            if not self.closed:
                self.fail_all(exc)
            self.stop()

    def fail_all(self, exc: BaseException) -> None:
        """A fatal I/O error: fail every connection with ConnectionIOError (E2), close
        it locally (no more sending) and wake everyone."""
        now = self.loop.time()
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
        now = self.loop.time()
        for core in self.cores():
            with contextlib.suppress(Exception):  # best effort: we are giving up anyway
                if not core.conn.is_terminated:
                    core.conn.close(0, reason, now=now)
        self.after_change()
        self.stop()

    def stop(self) -> None:
        """Unwatch and close the socket, cancel the timer; parked tasks wake and re-check."""
        if self.closed:
            return
        for core in self.cores():
            core.waiters.notify(core.session.pump_events())
        self.closed = True
        if self._timer_handle is not None:
            self._timer_handle.cancel()
            self._timer_handle = None
        self.close_transport()
        for core in self.cores():
            core.waiters.wake_all()
            # Break the driver <-> core cycle: a dead connection is then freed by
            # reference counting, not left for the full garbage collection.
            core.driver = STOPPED
        self.done.set()


class ListenerDriver(Driver):
    """A driver with an accept queue: connections are offered once their handshake completed."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.live: dict[int, Core] = {}
        #: Connections whose handshake is still running (id(conn) -> core).
        self.handshaking: dict[int, Core] = {}
        self.accepted: deque[Core] = deque()
        #: The latest failed handshakes as (peer address, exception), newest last.
        self.handshake_failures: deque[tuple[Any, Error | None]] = deque(
            maxlen=MAX_RECORDED_FAILURES
        )
        #: Every failed handshake since the listener started.
        self.failed_handshakes = 0
        self.accept_lot = Lot()

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
        """:meth:`check_handshakes` for ``cores`` only (those just pumped)."""
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
        error = core.session.channel.exception()
        address = getattr(core.conn, "peer_address", None) or core.peer_address
        self.handshake_failures.append((address, error))
        self.failed_handshakes += 1

    def stop(self) -> None:
        super().stop()
        self.accept_lot.unpark_all()

    def close_all(self, reason: str) -> None:
        """Close every connection (application code 0) and send the CONNECTION_CLOSEs."""
        now = self.loop.time()
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
        self.closed = True
        self._timer_handle = None
        self._armed = None
        self._dirty = {}
        self._soon_scheduled = False

    def cores(self) -> list[Core]:
        return []

    def after_change(self, only: Core | None = None) -> None:
        pass

    def soon(self, core: Core) -> None:
        pass


#: Stands in for a stopped driver (see :meth:`Driver.stop`).
STOPPED: Driver = _Stopped()
