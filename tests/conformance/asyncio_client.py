"""The conformance client over the asyncio API: every operation a fresh asyncio task."""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
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
    LONG_OPS,
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
