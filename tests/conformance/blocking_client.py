"""The conformance client over the blocking API: every operation in a fresh thread."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import mstls
import mstls.asyncio
import mstls.trio
from mstls import errors
from mstls.errors import ErrorEntry

from .client_base import (
    BRIEF,
    BULK_CHUNK,
    JOIN_MARGIN,
    READ_CHUNK,
    SETTLE,
    WAKE_TIMEOUT,
    WRITE_CHUNK,
    Call,
    Client,
    Op,
    Outcome,
    Waiters,
    _received,
    put_junk,
)
from .peers import LOOPBACK


# -- the blocking API ------------------------------------------------------------------------
def _blocking_op(conn: Any, call: Call) -> Any:
    stream, arg, limit = call.stream, call.arg, WAKE_TIMEOUT
    match call.op:
        case Op.LISTENER_ACCEPT:
            # No time limit: Listener.accept checks "closed" before its own
            # timeout, so a limit would hide a lost wake-up; join's limit decides.
            return stream.accept(timeout=None)
        case Op.LISTENER_CLOSE:
            return stream.close()
        case Op.OPEN:
            return conn.open_stream(True if arg is None else arg, timeout=limit)
        case Op.ACCEPT:
            return conn.accept_stream(timeout=limit)
        case Op.READ:
            return stream.read(arg or READ_CHUNK, timeout=limit)
        case Op.READ_UNTIL_ERROR:
            total = 0
            try:
                while chunk := stream.read(READ_CHUNK, timeout=limit):
                    total += len(chunk)
                return total
            except BaseException as exc:
                exc.add_note(f"after {total} bytes")
                raise
        case Op.WRITE:
            return stream.write(arg, timeout=limit)
        case Op.WRITE_UNTIL_ERROR:
            chunk = bytes(WRITE_CHUNK)
            while True:
                stream.write(chunk, timeout=limit)
        case Op.CONCLUDE:
            return stream.conclude()
        case Op.CLOSE:
            return conn.close(*arg)
        case Op.OPEN_AND_READ:
            opened = conn.open_stream(timeout=limit)
            return _blocking_op(conn, Call(Op.READ_UNTIL_ERROR, opened))
        case Op.ACCEPT_AND_READ_ALL:
            return _read_all(conn.accept_stream(timeout=limit))
        case Op.OPEN_AND_EXCHANGE:
            opened = conn.open_stream(timeout=limit)
            opened.write(arg, timeout=limit)
            opened.conclude()
            return _read_all(opened)
        case Op.ECHO_ROUNDS:
            for _ in range(arg):
                stream.write(stream.read_exactly(1, timeout=limit), timeout=limit)
            return arg
        case Op.BULK:
            chunk, total = bytes(BULK_CHUNK), 0
            while not arg.is_set():
                stream.write(chunk, timeout=limit)
                total += len(stream.read_exactly(len(chunk), timeout=limit))
            return total
        case Op.READ_BRIEFLY:
            return stream.read(READ_CHUNK, timeout=BRIEF)
        case Op.WRITE_BRIEFLY:
            return stream.write(arg, timeout=BRIEF)
    raise AssertionError(call.op)


def _read_all(stream: Any) -> bytes:
    data = bytearray()
    while chunk := stream.read(READ_CHUNK, timeout=WAKE_TIMEOUT):
        data += chunk
    return bytes(data)


def _capture(call: Call, run: Callable[[], Any]) -> Outcome:
    """Run ``run`` and package its value or exception with the caller's queue."""
    put_junk(call.junk)
    try:
        value = run()
    except BaseException as exc:
        return Outcome(call, exc=exc, entries=errors.errors(), received=_received(exc))
    return Outcome(call, value=value, entries=errors.errors())


class _ThreadWaiters(Waiters):
    def __init__(self, threads: list[threading.Thread], outcomes: list[Outcome | None]) -> None:
        self._threads = threads
        self._outcomes = outcomes

    def join(self, limit: float = WAKE_TIMEOUT + JOIN_MARGIN) -> list[Outcome]:
        deadline = time.monotonic() + limit
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [i for i, t in enumerate(self._threads) if t.is_alive()]
        assert not stuck, f"waiters {stuck} were never woken"
        return [o for o in self._outcomes if o is not None]


class BlockingClient(Client):
    """The blocking API: every operation in a fresh thread."""

    api = "blocking"

    def __init__(self, transport: str) -> None:
        super().__init__(transport)
        self.conn: mstls.Connection | None = None
        self._listeners: list[mstls.Listener] = []

    def connect(self, port: int, config: mstls.ClientConfig, *, lazy: bool = False) -> None:
        self.conn = mstls.connect(
            LOOPBACK, port, config, transport=self.transport, timeout=WAKE_TIMEOUT, lazy=lazy
        )

    def listen(self, config: mstls.ServerConfig) -> Any:
        listener = mstls.listen(LOOPBACK, 0, config, transport=self.transport)
        self._listeners.append(listener)
        return listener

    def _run(self, call: Call) -> Outcome:
        return _capture(call, lambda: _blocking_op(self.conn, call))

    def call(self, op: Op, stream: Any = None, arg: Any = None) -> Outcome:
        return self.start([Call(op, stream, arg)], settle=False).join()[0]

    def run(self, call: Call) -> Outcome:
        """:meth:`call` with a full :class:`Call` (``junk`` included)."""
        return self.start([call], settle=False).join()[0]

    def start(self, calls: Sequence[Call], *, settle: bool = True) -> Waiters:
        outcomes: list[Outcome | None] = [None] * len(calls)
        ready = threading.Barrier(len(calls) + 1)

        def main(i: int) -> None:
            ready.wait(WAKE_TIMEOUT)
            outcomes[i] = self._run(calls[i])

        threads = [
            threading.Thread(target=main, args=(i,), daemon=True, name=f"waiter {i}")
            for i in range(len(calls))
        ]
        for thread in threads:
            thread.start()
        ready.wait(WAKE_TIMEOUT)
        if settle:
            time.sleep(SETTLE)
        return _ThreadWaiters(threads, outcomes)

    def channel_entries(self) -> tuple[ErrorEntry, ...]:
        assert self.conn is not None
        return self.conn._core.session.channel.entries

    def disconnect(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(mstls.Error):
                self.conn.close(0, "test over")
            self.conn = None

    def shutdown(self) -> None:
        self.disconnect()
        for listener in self._listeners:
            listener.close()
