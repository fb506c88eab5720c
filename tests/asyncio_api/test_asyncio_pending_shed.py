"""The asyncio listener sheds the oldest pending QUIC handshake beyond
``max_pending_handshakes`` and counts it, as tests/trio_api/test_pending_shed.py."""

from __future__ import annotations

import asyncio

import pytest

from tests.trio_api.test_pending_shed import shed_failures, stuck_client

from .support import TIMEOUT, connect, echo_server, run

pytestmark = pytest.mark.network


def test_asyncio_listener_sheds_the_oldest_pending_handshake() -> None:
    async def main() -> None:
        async with echo_server("udp", max_pending_handshakes=1) as listener:
            port = listener.address[1]
            endpoint = listener._driver.endpoint  # type: ignore[attr-defined]
            with stuck_client(port) as stuck:
                async with asyncio.timeout(TIMEOUT):
                    while endpoint.handshakes_in_progress == 0:
                        await asyncio.sleep(0.01)
                    conn = await connect(port, "udp")
                    while listener.failed_handshakes == 0:
                        await asyncio.sleep(0.01)
                    await conn.aclose()
                assert shed_failures(listener.pop_handshake_failures()) == [stuck.getsockname()]
                assert listener.refused_handshakes == 1

    run(main)
