"""One small client interface over both mstls APIs, so every conformance test runs 4 ways.

Theory of operation
-------------------
A test drives a :class:`Client` from the test's thread with plain synchronous
calls; the client performs each *operation* (:class:`Op`) with its API:

* :class:`BlockingClient`: the blocking API (``mstls.connect``), every operation
  in a **fresh thread**;
* :class:`TrioClient`: the trio API (``mstls.trio.connect``) in a trio loop that
  runs in a background thread; every operation is a **fresh trio task** (via
  ``trio.from_thread.run``, which starts a new system task each time);
* :class:`AsyncioClient`: the asyncio API (``mstls.asyncio.connect``) in an
  asyncio loop of a background thread; every operation is a **fresh asyncio
  task** (``asyncio.run_coroutine_threadsafe``).  asyncio has no
  ``wait_all_tasks_blocked``: :meth:`Client.start` settles as the blocking client does.

So "from another thread/task" is what every call means, and each call returns
an :class:`Outcome`: its value or exception *and a snapshot of the error queue
of the thread or task that made it*, taken right after (rule E1: no other
thread's or task's queue is ever seen).  :meth:`Client.start` runs N
operations at once (N threads, or N tasks) and returns once all of them are
blocked (trio: ``wait_all_tasks_blocked``; threads: a short settling sleep — a
late waiter only meets the failure on entry instead of in its wait, which the
error model says must look the same); :meth:`Waiters.join` collects them.

Every operation has a time limit (:data:`WAKE_TIMEOUT`; each step of the
:data:`LONG_OPS`): a waiter that is never woken fails with :class:`~mstls.Timeout`
(blocking) or :class:`trio.TooSlowError`, which no expectation of the suite
accepts.  ``Listener.accept`` alone waits without a limit of its own (see
:func:`_blocking_op`) and :meth:`Waiters.join`'s limit catches it.

What legitimately differs between the APIs, and the suite normalises:
the trio API raises the same mstls classes turned into subclasses of
:class:`trio.BrokenResourceError` (:func:`mstls_class` finds the mstls class).
Both have ``connect(..., lazy=True)``: the first operation starts the handshake.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import trio
import trio.testing

import mstls
import mstls.asyncio
import mstls.trio
from mstls import errors
from mstls.errors import ErrorEntry

from .peers import LOOPBACK

__all__ = [
    "APIS",
    "WAKE_TIMEOUT",
    "AsyncioClient",
    "BlockingClient",
    "Call",
    "Client",
    "Op",
    "Outcome",
    "TrioClient",
    "Waiters",
    "make_client",
    "mstls_class",
]

APIS = ("blocking", "trio", "asyncio")
#: Longest any operation of the suite may wait before it counts as a stall.
WAKE_TIMEOUT = 20.0
#: How long the blocking client lets N fresh threads reach their waits.
SETTLE = 0.3
#: Extra time :meth:`Waiters.join` gives a waiter beyond its own time limit.
JOIN_MARGIN = 5.0
#: Bytes per write of ``Op.WRITE_UNTIL_ERROR`` (flow control blocks it soon).
WRITE_CHUNK = 64 * 1024
#: Reads of ``Op.READ_UNTIL_ERROR``: this many bytes at most per call.
READ_CHUNK = 64 * 1024
#: What ``Op.BULK`` writes (and reads back) per turn.
BULK_CHUNK = 16 * 1024
#: How long ``Op.READ_BRIEFLY`` / ``Op.WRITE_BRIEFLY`` wait.
BRIEF = 0.05


class Op(StrEnum):
    """What a thread or task does (``arg`` in brackets)."""

    OPEN = "open"  # open_stream(bidirectional=[True])
    ACCEPT = "accept"  # accept_stream()
    READ = "read"  # one read of up to [READ_CHUNK] bytes
    READ_UNTIL_ERROR = "read_until_error"  # read until an exception; value: bytes read
    WRITE = "write"  # write all of [data]
    WRITE_UNTIL_ERROR = "write_until_error"  # write until an exception (flow control)
    CONCLUDE = "conclude"  # FIN
    CLOSE = "close"  # close the connection with [(code, reason)]
    OPEN_AND_READ = "open_and_read"  # open a stream (lazy: the handshake), read until an error
    ACCEPT_AND_READ_ALL = "accept_and_read_all"  # accept a stream, read to its FIN
    OPEN_AND_EXCHANGE = "open_and_exchange"  # open, write [data] and FIN, read to the FIN
    ECHO_ROUNDS = "echo_rounds"  # [rounds] times: read one byte, write it back
    BULK = "bulk"  # write BULK_CHUNK and read it back until [threading.Event] is set
    READ_BRIEFLY = "read_briefly"  # read, giving up after BRIEF (Timeout / cancellation)
    WRITE_BRIEFLY = "write_briefly"  # write [data], giving up after BRIEF
    LISTENER_ACCEPT = "listener_accept"  # accept a connection on the listener [stream]
    LISTENER_CLOSE = "listener_close"  # close the listener [stream]


#: Operations that may run longer than WAKE_TIMEOUT; each of their steps has that limit.
LONG_OPS = frozenset({Op.ECHO_ROUNDS, Op.BULK})


@dataclass(frozen=True)
class Call:
    """One operation: ``op`` on ``stream`` (an API stream object) with ``arg``.

    ``junk``: that many unrelated entries are put in the caller's queue first
    (classification must not depend on them, E7).
    """

    op: Op
    stream: Any = None
    arg: Any = None
    junk: int = 0


@dataclass
class Outcome:
    """What one thread's or task's operation gave, and its queue right after."""

    call: Call
    value: Any = None
    exc: BaseException | None = None
    entries: list[ErrorEntry] = field(default_factory=list)
    received: int = 0  # bytes read by READ_UNTIL_ERROR before it failed

    def unwrap(self) -> Any:
        """The value, or raise the exception."""
        if self.exc is not None:
            raise self.exc
        return self.value


def mstls_class(exc: BaseException) -> type[BaseException]:
    """The mstls class of ``exc``: trio's ``BrokenResourceError`` flavour removed."""
    return next(
        c
        for c in type(exc).__mro__
        if issubclass(c, BaseException) and not issubclass(c, trio.BrokenResourceError)
    )


class Waiters(abc.ABC):
    """N operations running at once; :meth:`join` waits for all and returns their outcomes."""

    @abc.abstractmethod
    def join(self, limit: float = WAKE_TIMEOUT + JOIN_MARGIN) -> list[Outcome]:
        """The outcomes, once every waiter finished; fail after ``limit`` seconds."""


class Client(abc.ABC):
    """A client connection through one API; see the module documentation."""

    api = ""

    def __init__(self, transport: str) -> None:
        self.transport = transport

    @abc.abstractmethod
    def connect(self, port: int, config: mstls.ClientConfig, *, lazy: bool = False) -> None:
        """Connect to 127.0.0.1:``port`` (waiting for the handshake unless ``lazy``)."""

    @abc.abstractmethod
    def listen(self, config: mstls.ServerConfig) -> Any:
        """A listener of this API on 127.0.0.1 (any port), for the ``LISTENER_*`` ops."""

    @abc.abstractmethod
    def call(self, op: Op, stream: Any = None, arg: Any = None) -> Outcome:
        """Run one operation in a fresh thread (task) and return its outcome."""

    @abc.abstractmethod
    def run(self, call: Call) -> Outcome:
        """:meth:`call` with a full :class:`Call` (``junk`` included)."""

    @abc.abstractmethod
    def start(self, calls: Sequence[Call], *, settle: bool = True) -> Waiters:
        """Run ``calls`` at once, each in its own thread (task); return once they
        wait (at once if not ``settle``: for races)."""

    @abc.abstractmethod
    def channel_entries(self) -> tuple[ErrorEntry, ...]:
        """The entries kept on the connection's channel (E2)."""

    @abc.abstractmethod
    def disconnect(self) -> None:
        """Close the current connection (code 0) if there is one; errors are ignored."""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Release everything (close the connection quietly, stop threads)."""

    def do(self, op: Op, stream: Any = None, arg: Any = None) -> Any:
        """:meth:`call`, returning the value or raising the exception."""
        return self.call(op, stream, arg).unwrap()

    def open_streams(self, count: int) -> list[Any]:
        """``count`` new bidirectional streams (opened in fresh threads or tasks)."""
        return [self.do(Op.OPEN) for _ in range(count)]


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


def put_junk(count: int) -> None:
    """Fill the caller's queue with ``count`` unrelated entries (for E7)."""
    errors.clear_error()
    for i in range(count):
        errors.put_error(ErrorEntry(errors.Lib.API, errors.Reason.INTERNAL, f"junk {i}"))


def _capture(call: Call, run: Callable[[], Any]) -> Outcome:
    """Run ``run`` and package its value or exception with the caller's queue."""
    put_junk(call.junk)
    try:
        value = run()
    except BaseException as exc:
        return Outcome(call, exc=exc, entries=errors.errors(), received=_received(exc))
    return Outcome(call, value=value, entries=errors.errors())


def _received(exc: BaseException) -> int:
    for note in getattr(exc, "__notes__", ()):
        if note.startswith("after ") and note.endswith(" bytes"):
            return int(note.split()[1])
    return 0


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


# -- the trio API ----------------------------------------------------------------------------
async def _trio_op(conn: Any, call: Call) -> Any:
    stream, arg = call.stream, call.arg
    match call.op:
        case Op.LISTENER_ACCEPT:
            return await stream.accept()
        case Op.LISTENER_CLOSE:
            return await stream.aclose()
        case Op.OPEN:
            return await conn.open_stream(True if arg is None else arg)
        case Op.ACCEPT:
            return await conn.accept_stream()
        case Op.READ:
            return await stream.receive_some(arg or READ_CHUNK)
        case Op.READ_UNTIL_ERROR:
            total = 0
            try:
                while chunk := await stream.receive_some(READ_CHUNK):
                    total += len(chunk)
                return total
            except BaseException as exc:
                exc.add_note(f"after {total} bytes")
                raise
        case Op.WRITE:
            return await stream.send_all(arg)
        case Op.WRITE_UNTIL_ERROR:
            chunk = bytes(WRITE_CHUNK)
            while True:
                await stream.send_all(chunk)
        case Op.CONCLUDE:
            return await stream.send_eof()
        case Op.CLOSE:
            return await conn.aclose(*arg)
        case Op.OPEN_AND_READ:
            opened = await conn.open_stream()
            return await _trio_op(conn, Call(Op.READ_UNTIL_ERROR, opened))
        case Op.ACCEPT_AND_READ_ALL:
            return await _receive_all(await conn.accept_stream())
        case Op.OPEN_AND_EXCHANGE:
            opened = await conn.open_stream()
            await opened.send_all(arg)
            await opened.send_eof()
            return await _receive_all(opened)
        case Op.ECHO_ROUNDS:
            for _ in range(arg):
                with trio.fail_after(WAKE_TIMEOUT):
                    await stream.send_all(await _receive_exactly(stream, 1))
            return arg
        case Op.BULK:
            chunk, total = bytes(BULK_CHUNK), 0
            while not arg.is_set():
                with trio.fail_after(WAKE_TIMEOUT):
                    await stream.send_all(chunk)
                    total += len(await _receive_exactly(stream, len(chunk)))
            return total
        case Op.READ_BRIEFLY:
            with trio.move_on_after(BRIEF):
                return await stream.receive_some(READ_CHUNK)
            return "cancelled"
        case Op.WRITE_BRIEFLY:
            with trio.move_on_after(BRIEF):
                return await stream.send_all(arg)
            return "cancelled"
    raise AssertionError(call.op)


async def _receive_all(stream: Any) -> bytes:
    data = bytearray()
    while chunk := await stream.receive_some(READ_CHUNK):
        data += chunk
    return bytes(data)


async def _receive_exactly(stream: Any, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        if not chunk:
            raise mstls.IncompleteRead(f"stream ended after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)


class _TaskWaiters(Waiters):
    def __init__(self, client: TrioClient, outcomes: list[Outcome | None]) -> None:
        self._client = client
        self._outcomes = outcomes
        self.done = trio.Event()
        self.left = len(outcomes)

    def finished(self) -> None:
        self.left -= 1
        if not self.left:
            self.done.set()

    def join(self, limit: float = WAKE_TIMEOUT + JOIN_MARGIN) -> list[Outcome]:
        async def wait() -> None:
            with trio.move_on_after(limit):
                await self.done.wait()

        self._client.portal(wait)
        stuck = [i for i, o in enumerate(self._outcomes) if o is None]
        assert not stuck, f"waiters {stuck} were never woken"
        return [o for o in self._outcomes if o is not None]


class TrioClient(Client):
    """The trio API in a trio loop of its own thread; every operation a fresh task."""

    api = "trio"

    def __init__(self, transport: str) -> None:
        super().__init__(transport)
        self.conn: mstls.trio.Connection | None = None
        self._listeners: list[mstls.trio.Listener] = []
        self._started = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=self._loop, daemon=True, name="trio client")
        self._thread.start()
        assert self._started.wait(WAKE_TIMEOUT), "the trio loop did not start"

    def _loop(self) -> None:
        async def main() -> None:
            self._stop = trio.Event()
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._started.set()
                await self._stop.wait()
                nursery.cancel_scope.cancel()

        trio.run(main)

    def portal(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``await fn()`` as a new task of the trio loop and return its result."""
        return trio.from_thread.run(fn, trio_token=self._token)

    def connect(self, port: int, config: mstls.ClientConfig, *, lazy: bool = False) -> None:
        transport = self.transport

        async def connect() -> mstls.trio.Connection:
            return await mstls.trio.connect(
                LOOPBACK, port, config, transport=transport, timeout=WAKE_TIMEOUT, lazy=lazy
            )

        self.conn = self.portal(connect)

    def listen(self, config: mstls.ServerConfig) -> Any:
        transport = self.transport

        async def listen() -> mstls.trio.Listener:
            return await mstls.trio.listen(LOOPBACK, 0, config, transport=transport)

        listener = self.portal(listen)
        self._listeners.append(listener)
        return listener

    async def _run(self, call: Call) -> Outcome:
        conn = self.conn
        put_junk(call.junk)
        limit = math.inf if call.op in LONG_OPS else WAKE_TIMEOUT  # those limit each step
        try:
            with trio.fail_after(limit):
                value = await _trio_op(conn, call)
        except BaseException as exc:
            return Outcome(call, exc=exc, entries=errors.errors(), received=_received(exc))
        return Outcome(call, value=value, entries=errors.errors())

    def call(self, op: Op, stream: Any = None, arg: Any = None) -> Outcome:
        return self.run(Call(op, stream, arg))

    def run(self, call: Call) -> Outcome:
        outcome: Outcome = self.portal(lambda: self._run(call))
        return outcome

    def start(self, calls: Sequence[Call], *, settle: bool = True) -> Waiters:
        outcomes: list[Outcome | None] = [None] * len(calls)
        waiters = _TaskWaiters(self, outcomes)

        async def waiter(i: int) -> None:
            try:
                outcomes[i] = await self._run(calls[i])
            finally:
                waiters.finished()

        async def spawn() -> None:
            assert self._nursery is not None
            for i in range(len(calls)):
                self._nursery.start_soon(waiter, i)
            if settle:
                await trio.testing.wait_all_tasks_blocked(cushion=0.05)

        self.portal(spawn)
        return waiters

    def channel_entries(self) -> tuple[ErrorEntry, ...]:
        assert self.conn is not None
        return self.conn._core.session.channel.entries

    def disconnect(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            self.portal(lambda: conn.aclose(0, "test over"))

    def shutdown(self) -> None:
        async def stop() -> None:
            for listener in self._listeners:
                await listener.aclose()
            assert self._stop is not None
            self._stop.set()

        self.disconnect()

        if self._thread.is_alive():
            self.portal(stop)
            self._thread.join(WAKE_TIMEOUT)


# -- the asyncio API -------------------------------------------------------------------------
async def _asyncio_op(conn: Any, call: Call) -> Any:
    stream, arg = call.stream, call.arg
    match call.op:
        case Op.LISTENER_ACCEPT:
            return await stream.accept()
        case Op.LISTENER_CLOSE:
            return await stream.aclose()
        case Op.OPEN:
            return await conn.open_stream(True if arg is None else arg)
        case Op.ACCEPT:
            return await conn.accept_stream()
        case Op.READ:
            return await stream.read(arg or READ_CHUNK)
        case Op.READ_UNTIL_ERROR:
            total = 0
            try:
                while chunk := await stream.read(READ_CHUNK):
                    total += len(chunk)
                return total
            except BaseException as exc:
                exc.add_note(f"after {total} bytes")
                raise
        case Op.WRITE:
            return await stream.send_all(arg)
        case Op.WRITE_UNTIL_ERROR:
            chunk = bytes(WRITE_CHUNK)
            while True:
                stream.write(chunk)
                await stream.drain()
        case Op.CONCLUDE:
            return stream.write_eof()
        case Op.CLOSE:
            return conn.close(*arg)
        case Op.OPEN_AND_READ:
            opened = await conn.open_stream()
            return await _asyncio_op(conn, Call(Op.READ_UNTIL_ERROR, opened))
        case Op.ACCEPT_AND_READ_ALL:
            return await (await conn.accept_stream()).read()
        case Op.OPEN_AND_EXCHANGE:
            opened = await conn.open_stream()
            opened.write(arg)
            opened.write_eof()
            await opened.drain()
            return await opened.read()
        case Op.ECHO_ROUNDS:
            for _ in range(arg):
                async with asyncio.timeout(WAKE_TIMEOUT):
                    stream.write(await _readexactly(stream, 1))
                    await stream.drain()
            return arg
        case Op.BULK:
            chunk, total = bytes(BULK_CHUNK), 0
            while not arg.is_set():
                async with asyncio.timeout(WAKE_TIMEOUT):
                    stream.write(chunk)
                    await stream.drain()
                    total += len(await _readexactly(stream, len(chunk)))
            return total
        case Op.READ_BRIEFLY:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(BRIEF):
                    return await stream.read(READ_CHUNK)
            return "cancelled"
        case Op.WRITE_BRIEFLY:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(BRIEF):
                    return await stream.send_all(arg)
            return "cancelled"
    raise AssertionError(call.op)


async def _readexactly(stream: Any, size: int) -> bytes:
    """``readexactly``, with the suite's IncompleteRead for an early end."""
    try:
        data: bytes = await stream.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        raise mstls.IncompleteRead(
            f"stream ended after {len(exc.partial)} of {size} bytes"
        ) from None
    return data


class _AsyncioWaiters(Waiters):
    def __init__(self, futures: list[Any], outcomes: list[Outcome | None]) -> None:
        self._futures = futures
        self._outcomes = outcomes

    def join(self, limit: float = WAKE_TIMEOUT + JOIN_MARGIN) -> list[Outcome]:
        deadline = time.monotonic() + limit
        for future in self._futures:
            with contextlib.suppress(Exception):
                future.result(max(0.0, deadline - time.monotonic()))
        stuck = [i for i, o in enumerate(self._outcomes) if o is None]
        assert not stuck, f"waiters {stuck} were never woken"
        return [o for o in self._outcomes if o is not None]


class AsyncioClient(Client):
    """The asyncio API in an asyncio loop of its own thread; every operation a fresh task."""

    api = "asyncio"

    def __init__(self, transport: str, *, uvloop: bool = False) -> None:
        super().__init__(transport)
        self.conn: mstls.asyncio.Connection | None = None
        self._listeners: list[mstls.asyncio.Listener] = []
        if uvloop:
            import uvloop as uv  # noqa: PLC0415 - optional: only the uvloop smoke tests

            self._loop = uv.new_event_loop()
        else:
            self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="asyncio client"
        )
        self._thread.start()

    def portal(self, fn: Callable[[], Awaitable[Any]], limit: float | None = None) -> Any:
        """Run ``await fn()`` as a new task of the loop and return its result."""

        async def main() -> Any:
            return await fn()

        future = asyncio.run_coroutine_threadsafe(main(), self._loop)
        if limit is None:
            limit = WAKE_TIMEOUT + JOIN_MARGIN
        return future.result(None if math.isinf(limit) else limit)

    def connect(self, port: int, config: mstls.ClientConfig, *, lazy: bool = False) -> None:
        transport = self.transport

        async def connect() -> mstls.asyncio.Connection:
            return await mstls.asyncio.connect(
                LOOPBACK, port, config, transport=transport, timeout=WAKE_TIMEOUT, lazy=lazy
            )

        self.conn = self.portal(connect)

    def listen(self, config: mstls.ServerConfig) -> Any:
        transport = self.transport

        async def listen() -> mstls.asyncio.Listener:
            return await mstls.asyncio.listen(LOOPBACK, 0, config, transport=transport)

        listener = self.portal(listen)
        self._listeners.append(listener)
        return listener

    async def _run(self, call: Call) -> Outcome:
        conn = self.conn
        put_junk(call.junk)
        limit = None if call.op in LONG_OPS else WAKE_TIMEOUT  # those limit each step
        try:
            async with asyncio.timeout(limit):
                value = await _asyncio_op(conn, call)
        except BaseException as exc:
            return Outcome(call, exc=exc, entries=errors.errors(), received=_received(exc))
        return Outcome(call, value=value, entries=errors.errors())

    def call(self, op: Op, stream: Any = None, arg: Any = None) -> Outcome:
        return self.run(Call(op, stream, arg))

    def run(self, call: Call) -> Outcome:
        limit = math.inf if call.op in LONG_OPS else None  # those limit each step
        outcome: Outcome = self.portal(lambda: self._run(call), limit)
        return outcome

    def start(self, calls: Sequence[Call], *, settle: bool = True) -> Waiters:
        outcomes: list[Outcome | None] = [None] * len(calls)

        async def waiter(i: int) -> None:
            outcomes[i] = await self._run(calls[i])

        futures = [
            asyncio.run_coroutine_threadsafe(waiter(i), self._loop) for i in range(len(calls))
        ]
        if settle:
            time.sleep(SETTLE)
        return _AsyncioWaiters(futures, outcomes)

    def channel_entries(self) -> tuple[ErrorEntry, ...]:
        assert self.conn is not None
        return self.conn._core.session.channel.entries

    def disconnect(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            self.portal(lambda: conn.aclose(0, "test over"))

    def shutdown(self) -> None:
        async def stop() -> None:
            for listener in self._listeners:
                await listener.aclose()

        if self._thread.is_alive():
            self.disconnect()
            self.portal(stop)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(WAKE_TIMEOUT)
            if not self._thread.is_alive():
                self._loop.close()


def make_client(api: str, transport: str) -> Client:
    """A :class:`BlockingClient`, :class:`TrioClient` or :class:`AsyncioClient`
    (``"asyncio-uvloop"``: on a uvloop loop)."""
    if api == "blocking":
        return BlockingClient(transport)
    if api == "trio":
        return TrioClient(transport)
    return AsyncioClient(transport, uvloop=api == "asyncio-uvloop")
