"""mstls.trio.Connection.stats() over UDP and TCP on 127.0.0.1, after an echo."""

from __future__ import annotations

import pytest
import trio

import mstls
import mstls.trio

from .test_trio_api import TIMEOUT, connect, echo_stream, per_stream, receive_all, serving

pytestmark = pytest.mark.network

PAYLOAD = b"stats" * 20_000
#: Client keep-alive interval: over TCP, QX_PING round trips are the RTT samples.
KEEPALIVE = 0.05
#: A loopback round trip is far below this.
LOOPBACK_RTT_BOUND = 0.5


@pytest.fixture(params=["udp", "tcp"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_stats_after_an_echo(transport: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            serving(per_stream(echo_stream), transport) as listener,
            await connect(listener, keepalive=KEEPALIVE) as conn,
        ):
            before = conn.stats()
            stream = await conn.open_stream()
            await stream.send_all(PAYLOAD)
            await stream.send_eof()
            assert await receive_all(stream) == PAYLOAD
            await trio.sleep(4 * KEEPALIVE)  # a few keep-alive round trips
            stats = conn.stats()
        after_close = conn.stats()
    assert isinstance(stats, mstls.ConnectionStats)
    assert stats.transport == transport
    assert stats.bytes_sent > len(PAYLOAD) and stats.bytes_received > len(PAYLOAD)
    assert stats.bytes_sent > before.bytes_sent
    assert stats.streams_opened_local == 1 and stats.streams_opened_peer == 0
    assert stats.duration > before.duration
    assert stats.smoothed_rtt is not None and 0 < stats.smoothed_rtt < LOOPBACK_RTT_BOUND
    assert stats.min_rtt is not None and stats.min_rtt <= stats.smoothed_rtt + 1e-9
    if transport == "udp":
        assert stats.packets_sent > len(PAYLOAD) // 65536
        assert stats.packets_received > 0
        assert stats.congestion_window is not None and stats.congestion_window > 0
        assert stats.path_mtu is not None and stats.path_mtu >= 1200
    else:
        assert stats.packets_sent == stats.retransmissions == 0
        assert stats.congestion_window is None
    # Still readable once the connection is closed, and never going backwards.
    assert after_close.bytes_sent >= stats.bytes_sent


async def test_ping_gives_a_tcp_connection_its_rtt() -> None:
    """Without keep-alive a QMux connection has no RTT sample until ping() asks for one."""
    with trio.fail_after(TIMEOUT):
        async with (
            serving(per_stream(echo_stream), "tcp") as listener,
            await connect(listener) as conn,
        ):
            assert conn.stats().smoothed_rtt is None
            conn.ping()
            while conn.stats().smoothed_rtt is None:
                await trio.sleep(0.01)
            rtt = conn.stats().smoothed_rtt
            assert rtt is not None and 0 < rtt < LOOPBACK_RTT_BOUND
