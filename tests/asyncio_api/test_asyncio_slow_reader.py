"""Backpressure: an asyncio sender offering 1 GiB to a paused reader holds a bounded
amount (write + drain waits for the peer's flow-control credit, issue 14).

Measured with the core's own accounting (the stream layer's unacknowledged bytes
plus what the asyncio stream keeps), never wall time; bench/asyncio_bulk.py has
the RSS variant.
"""

from __future__ import annotations

import asyncio

import pytest

import mstls.asyncio
from mstls.asyncio import WRITE_HIGH_WATER
from tests.api.helpers import server_config

from .support import TRANSPORTS, connect, run

pytestmark = pytest.mark.network

GIB = 1 << 30
CHUNK = 64 * 1024
#: Polls (of POLL seconds) without progress after which the sender counts as stalled.
STALL_POLLS = 5
POLL = 0.05
MAX_POLLS = 400


def held(stream: mstls.asyncio.Stream) -> int:
    """Bytes the sender holds for ``stream``: the stream layer's and the stream's own."""
    send = stream._core.conn.streams.get_stream(stream.stream_id).send
    return int(send.buffered) + stream._pending_bytes


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_paused_reader_bounds_the_senders_memory(transport: str) -> None:
    async def main() -> None:
        listener = await mstls.asyncio.listen("127.0.0.1", 0, server_config(), transport=transport)
        async with listener:
            accepting = asyncio.ensure_future(listener.accept())
            client = await connect(listener.address[1], transport)
            server = await accepting
            stream = await client.open_stream()
            offered = 0
            most = 0

            async def send() -> None:
                nonlocal offered, most
                chunk = bytes(CHUNK)
                for _ in range(GIB // CHUNK):  # 1 GiB offered, one bounded loop
                    stream.write(chunk)
                    offered += CHUNK
                    most = max(most, held(stream))
                    await stream.drain()

            sender = asyncio.ensure_future(send())
            still, last = 0, -1
            for _ in range(MAX_POLLS):  # wait until the sender stalls on drain()
                await asyncio.sleep(POLL)
                still = still + 1 if offered == last else 0
                last = offered
                if still >= STALL_POLLS:
                    break
            assert still >= STALL_POLLS, "the sender never stalled"
            assert not sender.done()
            bound = int(client.sans_io.config.send_buffer_size) if transport == "udp" else None
            if bound is None:
                bound = int(stream._core.conn.streams.send_buffer_size)
            assert most <= bound + WRITE_HIGH_WATER + CHUNK, (most, bound)
            assert offered < 64 << 20  # nowhere near the 1 GiB offered
            # The reader resumes: the sender moves on.
            peer = await server.accept_stream()
            before = offered
            got = 0
            while got < 16 << 20:
                got += len(await peer.read(1 << 20))
            for _ in range(MAX_POLLS):
                if offered > before:
                    break
                await asyncio.sleep(POLL)
            assert offered > before
            sender.cancel()
            client.close()

    run(main)
