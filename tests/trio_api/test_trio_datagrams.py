"""Datagrams (RFC 9221) through the trio API, over UDP and TCP (QMux, §8.1)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

import mstls
import mstls.trio
from mstls.core.datagrams import largest_datagram_payload
from mstls.qmux.config import DEFAULT_RECORD_SIZE
from tests.trio_api.test_trio_api import TIMEOUT, client_config, server_config

#: Over TCP a datagram fills one whole QMux record of the default size (draft §8.1).
TCP_MAX_DATAGRAM = largest_datagram_payload(DEFAULT_RECORD_SIZE)

pytestmark = pytest.mark.network


async def datagram_echo(conn: mstls.trio.Connection) -> None:
    try:
        while True:
            data = await conn.receive_datagram()
            await conn.send_datagram(b"echo:" + data)
    except (mstls.Error, trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def idle(conn: mstls.trio.Connection) -> None:
    await trio.sleep_forever()


@asynccontextmanager
async def serving(
    transport: str, handler: object = datagram_echo, **config: object
) -> AsyncIterator[mstls.trio.Listener]:
    async with trio.open_nursery() as nursery:
        listener = await nursery.start(
            functools.partial(
                mstls.trio.serve,
                "127.0.0.1",
                0,
                server_config(**config),
                handler,
                transport=transport,
            )
        )
        yield listener
        await listener.aclose()
        nursery.cancel_scope.cancel()


async def connect(listener: mstls.trio.Listener) -> mstls.trio.Connection:
    return await mstls.trio.connect(
        "127.0.0.1",
        listener.address[1],
        client_config(datagrams=True),
        transport=listener.transport,
        timeout=TIMEOUT,
    )


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_datagram_echo_and_errors(transport: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(transport, datagrams=True) as listener, await connect(listener) as conn:
            answer = None
            for _ in range(50):  # UDP may lose one; loopback rarely does
                await conn.send_datagram(b"hi")
                with trio.move_on_after(0.5):
                    answer = await conn.receive_datagram()
                    break
            assert answer == b"echo:hi"
            size = conn.max_datagram_size
            assert size > 1100 if transport == "udp" else size == TCP_MAX_DATAGRAM
            with pytest.raises(mstls.DatagramTooLarge, match=f"maximum of {size} bytes"):
                await conn.send_datagram(bytes(size + 1))
            assert conn.stats().datagrams_received >= 1


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_peer_without_datagrams(transport: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(transport) as listener, await connect(listener) as conn:
            await conn.wait_handshake()
            with pytest.raises(mstls.DatagramsUnsupported):
                await conn.send_datagram(b"x")
            assert conn.max_datagram_size == 0


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_waiting_receivers_see_the_connection_failure(transport: str) -> None:
    closers: list[mstls.trio.Connection] = []

    async def close_soon(conn: mstls.trio.Connection) -> None:
        closers.append(conn)
        await trio.sleep(0.2)
        await conn.aclose(7, "bye")

    failures: list[BaseException] = []
    with trio.fail_after(TIMEOUT):
        async with (
            serving(transport, close_soon, datagrams=True) as listener,
            await connect(listener) as conn,
        ):

            async def receiver() -> None:
                try:
                    await conn.receive_datagram()
                except mstls.Error as exc:
                    failures.append(exc)

            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(receiver)
    assert len(failures) == 3
    for exc in failures:
        assert isinstance(exc, mstls.ConnectionTerminated)
        assert isinstance(exc, trio.BrokenResourceError)
        assert exc.code == 7


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_full_send_queue_raises_instead_of_waiting(transport: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            serving(transport, idle, datagrams=True) as listener,
            await connect(listener) as conn,
        ):
            await conn.wait_handshake()
            sans_io = conn.sans_io
            sans_io.datagrams.send_limit = 1
            sans_io.send_datagram_frame(b"a")  # no checkpoint between: nothing drains it
            with pytest.raises(mstls.DatagramQueueFull) as info:
                await conn.send_datagram(b"b")
            assert isinstance(info.value, mstls.WantWrite)
