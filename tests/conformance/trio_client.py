"""The conformance client over the trio API: every operation a fresh trio task."""

from __future__ import annotations

import math
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio
import trio.testing

import mstls
import mstls.asyncio
import mstls.trio
from mstls import errors
from mstls.errors import ErrorEntry

from .client_base import (
    BRIEF,
    BULK_CHUNK,
    JOIN_MARGIN,
    LONG_OPS,
    READ_CHUNK,
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
