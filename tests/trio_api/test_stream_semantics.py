"""trio API stream semantics on both transports: ``wait_acknowledged`` waits for every
byte written so far (issue 17 point 5), and a peer's reset leaves the data delivered
before it readable (point 11, rule E6)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

import mstls
import mstls.trio
from mstls.config import ClientConfig, ServerConfig
from tests.certs import get_pki

pytestmark = pytest.mark.network

ALPN = "mstls-test"
TIMEOUT = 10.0
TRANSPORTS = ["udp", "tcp"]
#: More than the peer's initial stream window (256 KiB on both transports), less than
#: our send buffer: ``send_all`` returns, and what does not fit the window cannot be
#: sent, so cannot be acknowledged, until the peer reads.
BEYOND_WINDOW = 600 * 1024
#: How long an unacknowledgeable wait is given before it is cancelled.
SHORT = 0.5
#: Bound on polling loops.
POLLS = 1000


def client_config() -> ClientConfig:
    return ClientConfig(alpn=ALPN, cafile=get_pki().files("ca").cert, server_name="localhost")


def server_config() -> ServerConfig:
    files = get_pki().files("server")
    return ServerConfig(certfile=files.cert, keyfile=files.key, alpn=ALPN)


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def connected(
    transport: str,
) -> AsyncIterator[tuple[mstls.trio.Connection, mstls.trio.Connection]]:
    listener = await mstls.trio.listen("127.0.0.1", 0, server_config(), transport=transport)
    async with listener:
        client = await mstls.trio.connect(
            "127.0.0.1",
            listener.address[1],
            client_config(),
            transport=transport,
            timeout=TIMEOUT,
        )
        async with client:
            with trio.fail_after(TIMEOUT):
                server = await listener.accept()
            yield client, server


async def receive_exactly(stream: mstls.trio.Stream, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        chunk = await stream.receive_some(size - len(out))
        assert chunk, f"stream ended after {len(out)} of {size} bytes"
        out += chunk
    return bytes(out)


async def test_wait_acknowledged_waits_for_data_written_after_an_acknowledged_write(
    transport: str,
) -> None:
    async with connected(transport) as (client, server):
        ours = await client.open_stream()
        await ours.send_all(b"a" * 1000)
        with trio.fail_after(TIMEOUT):
            await ours.wait_acknowledged()  # within the window: acknowledged
            theirs = await server.accept_stream()
        await ours.send_all(b"b" * BEYOND_WINDOW)
        with trio.move_on_after(SHORT) as scope:
            await ours.wait_acknowledged()  # used to return at once
        assert scope.cancelled_caught
        received = bytearray()

        async def read_all() -> None:
            while chunk := await theirs.receive_some():
                received.extend(chunk)

        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_all)  # credit flows: the rest is sent and acknowledged
                await ours.wait_acknowledged()
                await ours.send_eof()
                await ours.wait_acknowledged()  # the FIN too
        assert bytes(received) == b"a" * 1000 + b"b" * BEYOND_WINDOW


async def test_wait_acknowledged_fails_after_stop_sending(transport: str) -> None:
    """E6: STOP_SENDING fails the write side, so a wait that can never end fails."""
    async with connected(transport) as (client, server):
        ours = await client.open_stream()
        await ours.send_all(b"c" * BEYOND_WINDOW)
        with trio.fail_after(TIMEOUT):
            theirs = await server.accept_stream()
            theirs.stop_sending(0x21)
            with pytest.raises(mstls.StreamStopped) as info:
                await ours.wait_acknowledged()
        assert info.value.code == 0x21


async def test_receive_returns_data_delivered_before_the_reset(transport: str) -> None:
    payload = bytes(range(256)) * 400  # 100 KiB, within the window
    async with connected(transport) as (client, server):
        ours = await client.open_stream()
        await ours.send_all(payload)
        with trio.fail_after(TIMEOUT):
            await ours.wait_acknowledged()  # the peer's transport holds it all
            theirs = await server.accept_stream()
        ours.reset(0x77)
        recv = server.sans_io.streams.get_stream(theirs.stream_id).recv
        for _ in range(POLLS):  # the reset arrives before anything is read
            if recv.reset_code is not None:
                break
            await trio.sleep(0.01)
        assert recv.reset_code == 0x77
        with trio.fail_after(TIMEOUT):
            assert await receive_exactly(theirs, len(payload)) == payload  # used to raise
            with pytest.raises(mstls.StreamReset) as info:
                await theirs.receive_some()
            assert info.value.code == 0x77
            await theirs.send_all(b"reply")  # E6: the other direction works
            await theirs.send_eof()
            assert await receive_exactly(ours, 5) == b"reply"
            assert await ours.receive_some() == b""


async def test_wait_acknowledged_is_woken_by_the_connection_closing(transport: str) -> None:
    """C2: a wait for data the peer never takes ends when the connection does."""
    async with connected(transport) as (client, server):
        ours = await client.open_stream()
        await ours.send_all(b"d" * BEYOND_WINDOW)
        with trio.fail_after(TIMEOUT):
            await server.accept_stream()  # and never read

            async def close_peer() -> None:
                await trio.sleep(SHORT)  # let the wait park first
                await server.aclose()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(close_peer)
                with pytest.raises(mstls.ConnectionTerminated):
                    await ours.wait_acknowledged()
