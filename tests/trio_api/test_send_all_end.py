"""trio ``Stream.send_all(data, end=True)``: data and FIN in one call, so a small
request and its end leave in one packet and ACKs ride on the next stream (issue 11).
Counted, not timed: ``stats().packets_sent`` of both sides over 127.0.0.1."""

from __future__ import annotations

import pytest
import trio

import mstls.trio

from .test_stream_semantics import TIMEOUT, connected

pytestmark = pytest.mark.network

STREAMS = 100
SIZE = 1024
#: Packets per stream allowed each way (see tests/api/test_write_end.py): about 1
#: coalesced, 3 with separate data, FIN and ACK packets.
MAX_PACKETS_PER_STREAM = 1.8


async def _read_to_end(stream: mstls.trio.Stream) -> bytes:
    out = bytearray()
    while data := await stream.receive_some():
        out += data
    return bytes(out)


async def _answer_with_end(server: mstls.trio.Connection, count: int) -> None:
    for _ in range(count):
        async with await server.accept_stream() as stream:
            await stream.send_all(await _read_to_end(stream), end=True)


async def test_small_streams_take_one_packet_each_way() -> None:
    async with connected("udp") as (client, server), trio.open_nursery() as nursery:
        nursery.start_soon(_answer_with_end, server, STREAMS + 1)
        with trio.fail_after(TIMEOUT):
            async with await client.open_stream() as warm:
                await warm.send_all(b"x", end=True)
                assert await _read_to_end(warm) == b"x"
            await trio.sleep(0.2)  # handshake leftovers are sent first
            client_before = client.stats().packets_sent
            server_before = server.stats().packets_sent
            for index in range(STREAMS):
                request = bytes([index % 256]) * SIZE
                async with await client.open_stream() as stream:
                    await stream.send_all(request, end=True)
                    assert await _read_to_end(stream) == request
            client_sent = client.stats().packets_sent - client_before
            server_sent = server.stats().packets_sent - server_before
    assert client_sent <= MAX_PACKETS_PER_STREAM * STREAMS, client_sent
    assert server_sent <= MAX_PACKETS_PER_STREAM * STREAMS, server_sent


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_send_all_end_ends_the_send_side(transport: str) -> None:
    async with connected(transport) as (client, server), trio.open_nursery() as nursery:
        big = b"b" * 600_000  # beyond the peer's stream window: send_all waits part-way
        nursery.start_soon(_answer_with_end, server, 2)
        with trio.fail_after(TIMEOUT):
            stream = await client.open_stream()
            await stream.send_all(big)  # no end: the server reads on, waiting for it
            await stream.send_all(b"", end=True)  # the FIN alone
            assert await _read_to_end(stream) == big
            with pytest.raises(trio.ClosedResourceError):
                await stream.send_all(b"late")
            await stream.send_eof()  # already ended: does nothing
            await stream.aclose()
            other = await client.open_stream()
            await other.send_all(big, end=True)
            assert await _read_to_end(other) == big
            with pytest.raises(trio.ClosedResourceError):
                await other.send_all(b"late")
            await other.aclose()


async def _echo_at_end(server: mstls.trio.Connection, count: int) -> None:
    """The daemon's echo: answer each chunk, and end with the last one when the
    client's FIN came with it (``at_end``)."""
    for _ in range(count):
        async with await server.accept_stream() as stream:
            while data := await stream.receive_some():
                if stream.at_end:
                    await stream.send_all(data, end=True)
                    break
                await stream.send_all(data)
            else:
                await stream.send_eof()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_at_end_once_the_data_read_reaches_the_fin(transport: str) -> None:
    async with connected(transport) as (client, server), trio.open_nursery() as nursery:
        with trio.fail_after(TIMEOUT):
            stream = await client.open_stream()
            await stream.send_all(b"part")
            peer = await server.accept_stream()
            assert await peer.receive_some() == b"part"
            assert not peer.at_end  # no FIN yet
            await stream.send_all(b"last", end=True)
            await trio.sleep(0.05)  # the FIN is in before the read
            assert await peer.receive_some() == b"last"
            assert peer.at_end
            assert await peer.receive_some() == b""
            assert peer.at_end
            await peer.aclose()
            await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_echo_with_at_end_answers_in_one_packet() -> None:
    """Without ``at_end`` this echo sends the data, then a FIN packet: 2 per stream."""
    async with connected("udp") as (client, server), trio.open_nursery() as nursery:
        nursery.start_soon(_echo_at_end, server, STREAMS + 1)
        with trio.fail_after(TIMEOUT):
            async with await client.open_stream() as warm:
                await warm.send_all(b"x", end=True)
                assert await _read_to_end(warm) == b"x"
            await trio.sleep(0.2)  # handshake leftovers are sent first
            server_before = server.stats().packets_sent
            for index in range(STREAMS):
                request = bytes([index % 256]) * SIZE
                async with await client.open_stream() as stream:
                    await stream.send_all(request, end=True)
                    assert await _read_to_end(stream) == request
            server_sent = server.stats().packets_sent - server_before
    assert server_sent <= MAX_PACKETS_PER_STREAM * STREAMS, server_sent
