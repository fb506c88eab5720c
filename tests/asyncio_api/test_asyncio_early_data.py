"""0-RTT through mstls.asyncio over TCP/QMux (issue 12): the names and behaviour of
the blocking and trio APIs (tests/api/test_early_data_api.py)."""

from __future__ import annotations

import asyncio

import pytest

import mstls
import mstls.asyncio
from tests.api.helpers import client_config

from .support import TIMEOUT, echo_server, run

pytestmark = pytest.mark.network

REQUEST = b"GET /replay-safe"


def test_resumed_lazy_connection_sends_early_data_that_is_accepted() -> None:
    async def main() -> None:
        store = mstls.MemoryTicketStore()
        config = client_config(ticket_store=store, early_data=True)
        accepted = []
        async with echo_server("tcp", max_early_data=4096) as listener:
            for _ in range(2):
                conn = await mstls.asyncio.connect(
                    "127.0.0.1", listener.address[1], config, transport="tcp", lazy=True
                )
                async with conn:
                    stream = await conn.open_stream(early=True)
                    stream.write(REQUEST)
                    stream.write_eof()
                    await stream.drain()
                    assert await asyncio.wait_for(stream.read(), TIMEOUT) == REQUEST
                    await conn.wait_handshake()
                    accepted.append(conn.early_data_accepted)
                    for _ in range(200):  # the tickets arrive after the handshake
                        if len(store):
                            break
                        await asyncio.sleep(0.01)
        assert accepted == [False, True]

    run(main)
