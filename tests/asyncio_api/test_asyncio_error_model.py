"""The error model over mstls.asyncio (docs/error-model.md): a connection's death
raises in every waiting reader and writer (never EOF), a peer reset raises
StreamReset with its code, each task has its own error queue, and a cancelled
read or write loses no data."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

import mstls
import mstls.asyncio
from mstls import errors
from mstls.errors import Reason
from tests.api.helpers import server_config

from .support import LOOPS, TRANSPORTS, connect, run

pytestmark = pytest.mark.network

Pair = tuple[mstls.asyncio.Connection, mstls.asyncio.Connection]
CHUNK = 64 * 1024


@asynccontextmanager
async def pair(transport: str) -> AsyncIterator[Pair]:
    """A client connection and the server's side of it."""
    async with await mstls.asyncio.listen(
        "127.0.0.1", 0, server_config(), transport=transport
    ) as listener:
        accepting = asyncio.ensure_future(listener.accept())
        client = await connect(listener.address[1], transport)
        server = await accepting
        try:
            yield client, server
        finally:
            client.close()
            server.close()


async def opened(
    client: mstls.asyncio.Connection, server: mstls.asyncio.Connection
) -> tuple[mstls.asyncio.Stream, mstls.asyncio.Stream]:
    """A stream opened by the client, and the server's side (the client wrote one byte)."""
    stream = await client.open_stream()
    stream.write(b"!")
    await stream.drain()
    peer = await server.accept_stream()
    assert await peer.readexactly(1) == b"!"
    return stream, peer


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_connection_death_raises_in_every_reader_and_writer(transport: str, loop: str) -> None:
    async def main() -> None:
        async with pair(transport) as (client, server):
            readers = [await opened(client, server) for _ in range(3)]
            writer, _ = await opened(client, server)  # the server never reads it

            async def read(stream: mstls.asyncio.Stream) -> tuple[BaseException, list[Reason]]:
                errors.clear_error()
                with pytest.raises(mstls.ConnectionTerminated) as info:
                    await stream.read(100)
                return info.value, [e.reason for e in errors.errors()]

            async def write(stream: mstls.asyncio.Stream) -> tuple[BaseException, list[Reason]]:
                errors.clear_error()
                with pytest.raises(mstls.ConnectionTerminated) as info:
                    for _ in range(10_000):  # bounded: flow control blocks drain long before
                        stream.write(bytes(CHUNK))
                        await stream.drain()
                return info.value, [e.reason for e in errors.errors()]

            tasks = [asyncio.ensure_future(read(s)) for s, _ in readers]
            tasks.append(asyncio.ensure_future(write(writer)))
            await asyncio.sleep(0.2)  # all of them wait now
            assert not any(t.done() for t in tasks)
            server.close(7, "bye")
            outcomes = await asyncio.gather(*tasks)
            for exc, reasons in outcomes:
                assert isinstance(exc, mstls.ConnectionTerminated)
                assert exc.code == 7 and exc.by_peer
                assert reasons and reasons[-1] is Reason.CONNECTION_TERMINATED
            assert len({id(exc) for exc, _ in outcomes}) == len(outcomes)
            errors.clear_error()
            assert errors.errors() == []  # the tasks' queues were their own (E1)
            with pytest.raises(mstls.ConnectionTerminated):  # later calls too (E3)
                await client.open_stream()
            errors.clear_error()

    run(main, loop)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_peer_reset_raises_stream_reset_after_the_delivered_bytes(
    transport: str, loop: str
) -> None:
    async def main() -> None:
        async with pair(transport) as (client, server):
            stream, peer = await opened(client, server)
            peer.write(b"abc")
            await peer.drain()
            await peer.wait_acknowledged()
            peer.reset(5)
            await asyncio.sleep(0.05)
            assert await stream.readexactly(3) == b"abc"
            with pytest.raises(mstls.StreamReset) as info:
                await stream.read(10)
            assert info.value.code == 5
            with pytest.raises(mstls.StreamReset):
                await stream.readexactly(1)
            # only that stream: another works
            other, other_peer = await opened(client, server)
            other_peer.write(b"ok")
            await other_peer.drain()
            assert await other.readexactly(2) == b"ok"
            errors.clear_error()

    run(main, loop)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cancelled_reads_lose_no_data(transport: str, loop: str) -> None:
    async def main() -> None:
        async with pair(transport) as (client, server):
            stream, peer = await opened(client, server)
            peer.write(b"abc")
            await peer.drain()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await stream.readexactly(6)  # takes "abc", then waits
            task = asyncio.ensure_future(stream.readline())
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            peer.write(b"def\nrest")
            peer.write_eof()
            await peer.drain()
            assert await stream.readexactly(6) == b"abcdef"
            assert await stream.readline() == b"\n"
            with pytest.raises(asyncio.IncompleteReadError) as info:
                await stream.readexactly(10)
            assert info.value.partial == b"rest"
            assert await stream.read() == b""
            assert errors.errors() == []

    run(main, loop)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cancelled_writes_lose_no_data(transport: str) -> None:
    async def main() -> None:
        async with pair(transport) as (client, server):
            stream, peer = await opened(client, server)
            payload = bytes(range(256)) * (40 * 1024)  # 10 MiB: more than the buffers take
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await stream.send_all(payload)  # the peer does not read yet
            stream.write_eof()
            got = await peer.read()
            assert got == payload
            errors.clear_error()

    run(main)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_each_task_has_its_own_error_queue(transport: str) -> None:
    async def main() -> None:
        async with pair(transport) as (client, server):
            stream, peer = await opened(client, server)
            peer.reset(9)
            await asyncio.sleep(0.05)

            async def fail() -> list[Reason]:
                with pytest.raises(mstls.StreamReset):
                    await stream.read(1)
                return [e.reason for e in errors.errors()]

            errors.clear_error()
            reasons = await asyncio.ensure_future(fail())
            assert reasons  # the task's own queue has the entry (E5) ...
            assert errors.errors() == []  # ... and the parent task's has none

    run(main)
