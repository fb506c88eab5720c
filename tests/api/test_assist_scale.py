"""Issue 11: the assist thread's work per turn does not grow with its handlers.

A private :class:`AssistThread` (not the process-wide one) drives many handlers
on socket pairs; each handler counts the calls the loop makes into it.  Before
the deadline heap, every turn asked every handler for its deadline (twice) and
its socket interest, so 400 idle handlers cost 1,200 calls per turn.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from mstls._blocking.assist import AssistThread

HANDLERS = 400
#: Calls into handlers allowed per wake-up that concerns one handler.
MAX_CALLS_PER_WAKE = 12
#: Bound on every wait (the test never relies on it otherwise).
WAIT = 5.0


class CountingHandler:
    """A minimal handler: a socket pair, an optional deadline, call counters."""

    def __init__(self, assist: AssistThread, deadline: float | None = None) -> None:
        self.sock, self.peer = socket.socketpair()
        self.sock.setblocking(False)
        self.assist = assist
        self._deadline = deadline
        self.calls = 0
        self.reads = 0
        self.timers = 0
        self.event = threading.Event()

    def deadline(self) -> float | None:
        self.calls += 1
        return self._deadline

    def wants_write(self) -> bool:
        self.calls += 1
        return False

    def on_writable(self) -> None:
        self.calls += 1

    def on_readable(self) -> None:
        self.calls += 1
        try:
            self.sock.recv(4096)
        except BlockingIOError:
            return
        self.reads += 1
        self.event.set()

    def on_timer(self) -> None:
        self.calls += 1
        self.timers += 1
        self._deadline = None
        self.event.set()

    def on_error(self, exc: Exception) -> None:
        raise AssertionError(f"handler failed: {exc!r}")

    def close_at_exit(self, timeout: float) -> None:
        pass

    def exit_pending(self) -> bool:
        return False

    def set_deadline(self, deadline: float) -> None:
        self._deadline = deadline
        self.assist.reschedule(self)

    def close(self) -> None:
        self.sock.close()
        self.peer.close()


@pytest.fixture
def assist() -> Iterator[AssistThread]:
    thread = AssistThread()
    thread._thread.start()  # not start(): no atexit hook for a private instance
    yield thread
    thread.stop()
    assert not thread.thread.is_alive()


def _settle(handlers: list[CountingHandler]) -> None:
    """Wait until the loop has read every new handler once (bounded)."""
    end = time.monotonic() + WAIT
    while time.monotonic() < end and not all(h.calls for h in handlers):
        time.sleep(0.01)
    time.sleep(0.3)  # more than MAX_WAIT: idle turns happen meanwhile


def test_a_wake_up_for_one_handler_calls_that_handler_only(assist: AssistThread) -> None:
    handlers = [CountingHandler(assist) for _ in range(HANDLERS)]
    try:
        for handler in handlers:
            assist.add(handler)
        _settle(handlers)
        for handler in handlers:
            handler.calls = 0
        target = handlers[HANDLERS // 2]
        wakes = 20
        for _ in range(wakes):
            target.event.clear()
            target.peer.send(b"x")
            assert target.event.wait(WAIT)
        time.sleep(0.3)  # idle turns too (MAX_WAIT): they must cost nothing per handler
        others = sum(h.calls for h in handlers if h is not target)
        assert others == 0, f"{others} calls into handlers that had nothing to do"
        assert target.reads == wakes
        assert target.calls <= MAX_CALLS_PER_WAKE * wakes
    finally:
        for handler in handlers:
            assist.remove(handler)
            handler.close()


def test_deadlines_fire_in_order_for_many_handlers(assist: AssistThread) -> None:
    """Every handler's timer fires once at (or after) its deadline, whichever thread
    set it; a removed handler's deadline never fires."""
    handlers = [CountingHandler(assist) for _ in range(100)]
    try:
        for handler in handlers:
            assist.add(handler)
        _settle(handlers)
        start = time.monotonic()
        for index, handler in enumerate(handlers):
            handler.set_deadline(start + 0.2 + 0.002 * index)
        removed = handlers[7]
        assist.remove(removed)
        for handler in handlers:
            if handler is not removed:
                assert handler.event.wait(WAIT)
        time.sleep(0.3)
        assert all(h.timers == 1 for h in handlers if h is not removed)
        assert removed.timers == 0
    finally:
        for handler in handlers:
            assist.remove(handler)
            handler.close()


def test_a_bare_reschedule_reads_every_handler_again(assist: AssistThread) -> None:
    """A reschedule() naming no handler (another thread's change, as the TCP
    handlers do) still takes effect: the loop reads every deadline again."""
    handlers = [CountingHandler(assist) for _ in range(20)]
    try:
        for handler in handlers:
            assist.add(handler)
        _settle(handlers)
        soon = time.monotonic() + 0.05
        for handler in handlers:
            handler._deadline = soon  # changed behind the loop's back
        assist.reschedule()
        for handler in handlers:
            assert handler.event.wait(WAIT)
    finally:
        for handler in handlers:
            assist.remove(handler)
            handler.close()
