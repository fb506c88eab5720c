"""The assist thread: one per process, it receives and ticks timers for every blocking connection.

Theory of operation
-------------------
Blocking connections must stay alive (ACKs, retransmissions, keep-alives, idle
timeouts) while no application thread calls in (brief C3).  One daemon thread
runs a selector over the sockets of every registered :class:`Handler` plus a
wake-up socket pair.  Each turn it waits until the earliest handler deadline,
calls :meth:`Handler.on_readable` for sockets with data and
:meth:`Handler.on_timer` for handlers whose deadline passed.

Handlers do their own locking; the assist thread holds no lock while it waits.
Application threads that change a connection (a write, a close) send what the
connection produced themselves and call :meth:`AssistThread.reschedule` so the
loop recomputes its timeout.  Work per turn is bounded: a handler reads a bounded
batch of datagrams per call (brief T5).

Work per turn does not grow with the number of handlers (issue 11): their
deadlines are kept in a :class:`~mstls.core.deadlines.DeadlineHeap`, and a
handler's deadline and socket interest are read again only when it may have
changed: after the loop called into it, or when ``reschedule(handler)`` names
it.  A bare ``reschedule()`` from another thread names no handler, so it makes
the next turn read every handler again (O(N), as before); called from the loop
while it serves a handler, it names that one.  A handler that can pause its
input (``wants_read``: a TCP listener at its handshake cap) is read every turn,
since what resumes it is a change of another handler; there are few of them.

One handler's exception never stops the thread (issue 17: a ``ConfigurationError``
raised for one connection used to end it, and with it every connection of the
process).  Each call into a handler is guarded: an exception goes to that
handler's ``on_error``, which fails its connection with the error in the
connection's channel (E2, E3: every waiter wakes and raises it); a handler that
fails even there is dropped.  The other handlers go on.

The thread starts lazily with the first handler and stops at interpreter exit.
Before it stops, connections the application left open are closed, not
abandoned (issue 17 point 12): each handler's ``close_at_exit`` sends
CONNECTION_CLOSE (application code 0; on TCP followed by close_notify), and the
loop keeps running until what they sent has left (``exit_pending``), for at most
:data:`EXIT_CLOSE_TIMEOUT` in all.  The peer sees a clean close instead of an
idle timeout (UDP) or a premature close (TCP).
"""

from __future__ import annotations

import atexit
import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from ..core.deadlines import DeadlineHeap

__all__ = ["AssistThread", "Handler"]

T = TypeVar("T")

#: Longest wait, so a stop request or a missed wake-up is noticed.
MAX_WAIT = 0.25
#: At interpreter exit, the longest time closing the open connections may take, in all.
EXIT_CLOSE_TIMEOUT = 1.0
#: How often the exit checks whether the closing connections' output has left.
EXIT_POLL_INTERVAL = 0.01
#: The reason phrase of the CONNECTION_CLOSE sent at exit.
EXIT_REASON = "process exiting"


class Handler(Protocol):
    """What the assist thread drives."""

    sock: socket.socket

    def on_readable(self) -> None: ...

    def on_timer(self) -> None: ...

    def deadline(self) -> float | None: ...

    def wants_write(self) -> bool: ...

    def on_writable(self) -> None: ...

    def on_error(self, exc: Exception) -> None:
        """One of the calls above raised ``exc``: fail what it concerns."""

    def close_at_exit(self, timeout: float) -> None:
        """Close the open connection(s) (code 0); wait at most ``timeout`` for the lock."""

    def exit_pending(self) -> bool:
        """Whether the close sent at exit still waits to leave (TCP output, the peer's answer)."""


class AssistThread:
    """The process-wide assist thread (use :meth:`get`)."""

    _instance: AssistThread | None = None
    _instance_lock = threading.Lock()

    @classmethod
    def get(cls) -> AssistThread:
        with cls._instance_lock:
            if cls._instance is None or not cls._instance.alive:
                cls._instance = cls()
                cls._instance.start()
            return cls._instance

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._handlers: set[Handler] = set()
        self._lock = threading.Lock()
        #: Every handler's deadline; used by the loop's thread only.
        self._timers: DeadlineHeap[Handler] = DeadlineHeap()
        #: Handlers to read again at the next turn (id -> handler); ``_touch_all``: every one.
        self._touched: dict[int, Handler] = {}
        self._touch_all = False
        self._touch_lock = threading.Lock()  # never held while calling a handler
        #: The handler the loop is calling into (a bare reschedule() then names it).
        self._serving: Handler | None = None
        #: Handlers with ``wants_read``, read every turn (module documentation).
        self._polled: dict[int, Handler] = {}
        self._stop = False
        #: Handlers that raised while our lock was held, with their exception.
        self._deferred: list[tuple[Handler, Exception]] = []
        self._thread = threading.Thread(target=self._run, name="mstls-assist", daemon=True)
        self.error: BaseException | None = None

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stop

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def start(self) -> None:
        self._thread.start()
        atexit.register(self._at_exit)

    def add(self, handler: Handler) -> None:
        with self._lock:
            self._handlers.add(handler)
            if getattr(handler, "wants_read", None) is not None:
                self._polled[id(handler)] = handler
            self._selector.register(handler.sock, selectors.EVENT_READ, handler)
        self.reschedule(handler)

    def remove(self, handler: Handler) -> None:
        with self._lock:
            self._handlers.discard(handler)
            self._polled.pop(id(handler), None)
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(handler.sock)
        self.reschedule(handler)  # the next turn drops its deadline

    def reschedule(self, handler: Handler | None = None) -> None:
        """Wake the loop so it reads ``handler``'s deadline and interest again (after
        an application-side change); None: every handler's (module documentation)."""
        on_loop = threading.current_thread() is self._thread
        if handler is None and on_loop:
            handler = self._serving
        with self._touch_lock:
            if handler is None:
                self._touch_all = True
            else:
                self._touched[id(handler)] = handler
        if not on_loop:  # the loop reads its touched handlers before it waits again
            with contextlib.suppress(OSError):
                self._wake_w.send(b"\0")

    def close_all(self, timeout: float = EXIT_CLOSE_TIMEOUT) -> None:
        """Close every open connection cleanly and let the loop send it, at most
        ``timeout`` seconds in all (a handler whose lock stays taken is skipped)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            handlers = list(self._handlers)
        for handler in handlers:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with contextlib.suppress(Exception):  # one handler's failure stops no other close
                handler.close_at_exit(left)
        self.reschedule()
        while time.monotonic() < deadline and self._thread.is_alive():
            if not any(self._exit_pending(handler) for handler in handlers):
                return
            time.sleep(EXIT_POLL_INTERVAL)

    @staticmethod
    def _exit_pending(handler: Handler) -> bool:
        try:
            return handler.exit_pending()
        except Exception:  # a broken handler has nothing left to wait for
            return False

    def _at_exit(self) -> None:
        try:
            self.close_all()
        finally:
            self.stop()

    def stop(self) -> None:
        self._stop = True
        self.reschedule()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(2.0)

    # -- the loop -------------------------------------------------------------------------
    def _take_touched(self) -> list[Handler]:
        """The handlers to read again this turn (our lock held)."""
        with self._touch_lock:
            touched = dict(self._touched)
            self._touched.clear()
            touch_all, self._touch_all = self._touch_all, False
        if touch_all:
            touched.update((id(h), h) for h in self._handlers)
        touched.update(self._polled)
        return list(touched.values())

    def _rearm(self, handler: Handler) -> None:
        """Record ``handler``'s deadline in the heap (dropped if it was removed)."""
        if handler not in self._handlers:
            self._timers.discard(handler)
            return
        self._timers.set(handler, self._guarded(handler, handler.deadline))

    def _timeout(self) -> float:
        deadline = self._timers.peek()
        if deadline is None:
            return MAX_WAIT
        return min(MAX_WAIT, max(0.0, deadline - time.monotonic()))

    def _update_interest(self, handlers: list[Handler]) -> None:
        """Watch for writability only while a handler has output the kernel refused,
        and for readability unless the handler pauses its input (``wants_read``)."""
        selector = self._selector
        for handler in handlers:
            if handler not in self._handlers:
                continue
            wants_read = getattr(handler, "wants_read", None)
            try:
                reading = wants_read is None or wants_read()
                writing = handler.wants_write()
            except Exception as exc:  # failed after the lock is released
                self._deferred.append((handler, exc))
                continue
            events = selectors.EVENT_READ if reading else 0
            if writing:
                events |= selectors.EVENT_WRITE
            with contextlib.suppress(ValueError, OSError):  # a socket closed meanwhile
                key = selector.get_map().get(handler.sock)
                if key is None:
                    if events:
                        selector.register(handler.sock, events, handler)
                elif not events:
                    selector.unregister(handler.sock)
                elif key.events != events:
                    selector.modify(handler.sock, events, handler)

    def _guarded(self, handler: Handler, call: Callable[[], T]) -> T | None:
        """``call()``, with an exception handed to ``handler.on_error`` (module docs)."""
        try:
            return call()
        except Exception as exc:  # any bug in one handler, never the loop's
            self._failed(handler, exc)
            return None

    def _failed(self, handler: Handler, exc: Exception) -> None:
        try:
            handler.on_error(exc)
        except Exception:  # it cannot even fail cleanly: drop it
            self.remove(handler)

    def _call(self, handler: Handler, call: Callable[[], object]) -> None:
        """Call into ``handler`` (guarded); it is read again at the next turn."""
        self._serving = handler
        try:
            self._guarded(handler, call)
        finally:
            self._serving = None
        with self._touch_lock:
            self._touched[id(handler)] = handler

    def _turn(self) -> None:
        """One turn: wait, serve ready sockets, then the handlers that are due."""
        ready = self._selector.select(self._timeout())
        for key, mask in ready:
            handler = key.data
            if handler is None:
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(4096)
                continue
            if mask & selectors.EVENT_WRITE:
                self._call(handler, handler.on_writable)
            if mask & selectors.EVENT_READ:
                self._call(handler, handler.on_readable)
        for handler in self._timers.pop_due(time.monotonic()):
            if handler in self._handlers:
                self._call(handler, handler.on_timer)

    def _run(self) -> None:
        try:
            while not self._stop:
                with self._lock:
                    touched = self._take_touched()
                    self._update_interest(touched)
                # Handler locks are taken before ours elsewhere (close_socket -> remove):
                # a failure found under our lock is handled only once it is released.
                while self._deferred:
                    self._failed(*self._deferred.pop())
                for handler in touched:
                    self._rearm(handler)
                self._turn()
        except BaseException as exc:  # pragma: no cover - a bug of the loop itself
            self.error = exc
            raise
        finally:
            self._selector.close()
            self._wake_r.close()
            self._wake_w.close()
