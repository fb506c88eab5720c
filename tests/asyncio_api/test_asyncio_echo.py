"""mstls.asyncio end to end: connect, listen/serve, streams, on UDP and TCP (and uvloop)."""

from __future__ import annotations

import pytest

from tests.api.helpers import ALPN

from .support import LOOPS, TRANSPORTS, connect, echo_server, run

pytestmark = pytest.mark.network


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_echo(transport: str, loop: str) -> None:
    async def main() -> None:
        async with echo_server(transport) as listener:
            conn = await connect(listener.address[1], transport)
            async with conn:
                assert conn.alpn == ALPN
                assert conn.transport == transport
                stream = await conn.open_stream()
                payload = bytes(range(256)) * 4096  # 1 MiB: flow control and drain
                stream.write(payload)
                await stream.drain()
                stream.write_eof()
                assert await stream.read() == payload
                assert stream.at_eof()
                stream.close()
                await stream.wait_closed()

    run(main, loop)
