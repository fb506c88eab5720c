"""asyncio ``Stream.send_all(data, end=True)``, the trio API's option: data and FIN in
one call (issue 11).  The asyncio driver flushes once per loop turn, so its write and
write_eof coalesced already; the count (not timed: the client's
``stats().packets_sent`` over 127.0.0.1) guards that with ``end=True`` too."""

from __future__ import annotations

import asyncio

import pytest

import mstls
import mstls.asyncio
from tests.api.helpers import server_config

from .support import TIMEOUT, connect, run

pytestmark = pytest.mark.network

STREAMS = 100
SIZE = 1024
#: As tests/api/test_write_end.py: about 1 coalesced, 3 with separate data/FIN/ACK.
MAX_PACKETS_PER_STREAM = 1.8


async def _answer_with_end(conn: mstls.asyncio.Connection) -> None:
    try:
        while True:
            stream = await conn.accept_stream()
            request = await stream.read()  # to the FIN
            await stream.send_all(request, end=True)
    except mstls.Error:
        pass


async def _request(conn: mstls.asyncio.Connection, payload: bytes) -> bytes:
    stream = await conn.open_stream()
    await stream.send_all(payload, end=True)
    answer = await stream.read()
    await stream.aclose()
    return answer


def test_small_streams_take_one_packet_each_way() -> None:
    async def main() -> int:
        listener = await mstls.asyncio.serve("127.0.0.1", 0, server_config(), _answer_with_end)
        try:
            conn = await connect(listener.address[1], "udp")
            async with conn:
                assert await _request(conn, b"x") == b"x"  # warm-up
                await asyncio.sleep(0.2)
                before = conn.stats().packets_sent
                for index in range(STREAMS):
                    payload = bytes([index % 256]) * SIZE
                    async with asyncio.timeout(TIMEOUT):
                        assert await _request(conn, payload) == payload
                return int(conn.stats().packets_sent - before)
        finally:
            await listener.aclose()

    sent = run(main)
    assert sent <= MAX_PACKETS_PER_STREAM * STREAMS, sent


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_send_all_end_ends_the_send_side(transport: str) -> None:
    async def main() -> None:
        listener = await mstls.asyncio.serve(
            "127.0.0.1", 0, server_config(), _answer_with_end, transport=transport
        )
        try:
            conn = await connect(listener.address[1], transport)
            async with conn:
                big = b"b" * 600_000  # beyond the stream window: kept, FIN after it
                stream = await conn.open_stream()
                reader = asyncio.ensure_future(stream.read())
                await stream.send_all(big, end=True)
                assert await reader == big
                with pytest.raises(mstls.Error):
                    stream.write(b"late")
                mstls.errors.clear_error()
                await stream.aclose()
        finally:
            await listener.aclose()

    run(main)
