"""Datagrams (RFC 9221) through the asyncio API, over UDP and TCP (QMux, §8.1):
the cases of tests/trio_api/test_trio_datagrams.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

import mstls
import mstls.asyncio
from mstls import errors
from mstls.core.datagrams import largest_datagram_payload
from mstls.qmux.config import DEFAULT_RECORD_SIZE
from tests.api.helpers import client_config, server_config

from .support import LOOPS, TIMEOUT, TRANSPORTS, run

#: Over TCP a datagram fills one whole QMux record of the default size (draft §8.1).
TCP_MAX_DATAGRAM = largest_datagram_payload(DEFAULT_RECORD_SIZE)

pytestmark = pytest.mark.network

Handler = Callable[[mstls.asyncio.Connection], Awaitable[None]]


async def datagram_echo(conn: mstls.asyncio.Connection) -> None:
    try:
        while True:
            data = await conn.receive_datagram()
            await conn.send_datagram(b"echo:" + data)
    except mstls.Error:
        pass


async def idle(conn: mstls.asyncio.Connection) -> None:
    await asyncio.sleep(TIMEOUT * 2)


@asynccontextmanager
async def serving(
    transport: str, handler: Handler = datagram_echo, **config: Any
) -> AsyncIterator[mstls.asyncio.Listener]:
    listener = await mstls.asyncio.serve(
        "127.0.0.1", 0, server_config(**config), handler, transport=transport
    )
    try:
        yield listener
    finally:
        listener.close()
        for task in list(listener._tasks):  # idle handlers: do not wait for their sleep
            task.cancel()
        await listener.wait_closed()


async def connect(listener: mstls.asyncio.Listener) -> mstls.asyncio.Connection:
    return await mstls.asyncio.connect(
        "127.0.0.1",
        listener.address[1],
        client_config(datagrams=True),
        transport=listener.transport,
        timeout=TIMEOUT,
    )


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_datagram_echo_and_errors(transport: str, loop: str) -> None:
    async def main() -> None:
        async with serving(transport, datagrams=True) as listener, await connect(listener) as conn:
            answer = None
            for _ in range(50):  # UDP may lose one; loopback rarely does
                await conn.send_datagram(b"hi")
                try:
                    answer = await asyncio.wait_for(conn.receive_datagram(), 0.5)
                    break
                except TimeoutError:
                    continue
            assert answer == b"echo:hi"
            size = conn.max_datagram_size
            assert size > 1100 if transport == "udp" else size == TCP_MAX_DATAGRAM
            errors.clear_error()
            with pytest.raises(mstls.DatagramTooLarge, match=f"maximum of {size} bytes"):
                await conn.send_datagram(bytes(size + 1))
            assert len(errors.errors()) == 1  # recorded in this task's queue (E3)
            errors.clear_error()
            assert conn.stats().datagrams_received >= 1

    run(main, loop)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_peer_without_datagrams(transport: str) -> None:
    async def main() -> None:
        async with serving(transport) as listener, await connect(listener) as conn:
            await conn.wait_handshake()
            with pytest.raises(mstls.DatagramsUnsupported):
                await conn.send_datagram(b"x")
            assert conn.max_datagram_size == 0

    run(main)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_send_waits_only_for_the_handshake(transport: str) -> None:
    """A lazy connection: the first send_datagram drives the handshake, then sends."""

    async def main() -> None:
        async with serving(transport, datagrams=True) as listener:
            conn = await mstls.asyncio.connect(
                "127.0.0.1",
                listener.address[1],
                client_config(datagrams=True),
                transport=transport,
                timeout=TIMEOUT,
                lazy=True,
            )
            async with conn:
                assert conn.max_datagram_size == 0  # not before the handshake
                await conn.send_datagram(b"first")
                assert conn.sans_io is not None
                answer = await asyncio.wait_for(conn.receive_datagram(), TIMEOUT)
                assert answer == b"echo:first"

    run(main)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_waiting_receivers_see_the_connection_failure(transport: str) -> None:
    async def close_soon(conn: mstls.asyncio.Connection) -> None:
        await asyncio.sleep(0.2)
        await conn.send_datagram(b"before the close")
        await conn.aclose(7, "bye")

    async def main() -> list[BaseException]:
        async with (
            serving(transport, close_soon, datagrams=True) as listener,
            await connect(listener) as conn,
        ):
            await conn.wait_handshake()
            for _ in range(1000):  # bounded: until the peer's close arrived
                if conn.sans_io.is_terminated or conn.max_datagram_size == 0:
                    break
                await asyncio.sleep(0.01)
            assert conn.max_datagram_size == 0  # dead, and still...
            first = await asyncio.wait_for(conn.receive_datagram(), TIMEOUT)
            assert first == b"before the close"  # ...the earlier datagram comes first (E6)

            async def receiver() -> BaseException:
                try:
                    await conn.receive_datagram()
                except mstls.Error as exc:
                    return exc
                raise AssertionError("a datagram after the close")

            return list(
                await asyncio.wait_for(asyncio.gather(*[receiver() for _ in range(3)]), TIMEOUT)
            )

    failures = run(main)
    assert len(failures) == 3
    for exc in failures:
        assert isinstance(exc, mstls.ConnectionTerminated)
        assert exc.code == 7


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_full_send_queue_raises_instead_of_waiting(transport: str) -> None:
    async def main() -> None:
        async with (
            serving(transport, idle, datagrams=True) as listener,
            await connect(listener) as conn,
        ):
            await conn.wait_handshake()
            sans_io = conn.sans_io
            sans_io.datagrams.send_limit = 1
            sans_io.send_datagram_frame(b"a")  # no await between: nothing drains it
            errors.clear_error()
            with pytest.raises(mstls.DatagramQueueFull) as info:
                await conn.send_datagram(b"b")
            assert isinstance(info.value, mstls.WantWrite)
            assert errors.errors() == []  # a would-block leaves no entry (E4)

    run(main)
