"""mstls.Connection.stats() (blocking API) over UDP and TCP on 127.0.0.1, after an echo."""

from __future__ import annotations

import threading

import pytest

import mstls

from .helpers import TIMEOUT, client_config, server

pytestmark = pytest.mark.network

PAYLOAD = b"stats" * 20_000
#: Client keep-alive interval: over TCP, QX_PING round trips are the RTT samples.
KEEPALIVE = 0.05
#: A loopback round trip is far below this.
LOOPBACK_RTT_BOUND = 0.5


def echo(conn: mstls.Connection) -> bytes:
    stream = conn.open_stream(timeout=TIMEOUT)
    stream.write(PAYLOAD, timeout=TIMEOUT)
    stream.conclude()
    out = bytearray()
    while chunk := stream.read(timeout=TIMEOUT):
        out += chunk
    return bytes(out)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_stats_after_an_echo(transport: str) -> None:
    with server(transport=transport) as (listener, served):
        port = listener.address[1]
        config = client_config(keepalive=KEEPALIVE)
        with mstls.connect("127.0.0.1", port, config, transport=transport, timeout=TIMEOUT) as conn:
            assert echo(conn) == PAYLOAD
            threading.Event().wait(4 * KEEPALIVE)  # a few keep-alive round trips
            stats = conn.stats()
            server_stats = served[0].stats()
    assert stats.transport == server_stats.transport == transport
    assert stats.bytes_sent > len(PAYLOAD) and stats.bytes_received > len(PAYLOAD)
    assert stats.streams_opened_local == 1 == server_stats.streams_opened_peer
    assert stats.smoothed_rtt is not None and 0 < stats.smoothed_rtt < LOOPBACK_RTT_BOUND
    if transport == "udp":
        assert stats.packets_sent > 0 and server_stats.packets_received > 0
        assert stats.latest_rtt is not None and stats.rtt_variance is not None
        assert stats.congestion_window is not None and stats.bytes_in_flight is not None
        # Both sides echoed the same bytes, so both measured the path.
        assert server_stats.smoothed_rtt is not None
    else:
        assert stats.packets_lost == stats.retransmissions == 0
        assert stats.path_mtu is None


def test_stats_from_many_threads_during_a_transfer() -> None:
    """stats() takes the connection's lock: concurrent calls never see torn state."""
    with server() as (listener, _):
        port = listener.address[1]
        with mstls.connect("127.0.0.1", port, client_config(), timeout=TIMEOUT) as conn:
            done = threading.Event()
            seen: list[int] = []
            errors: list[BaseException] = []

            def poll() -> None:
                try:
                    while not done.is_set():
                        seen.append(conn.stats().packets_sent)
                except BaseException as exc:  # reported below
                    errors.append(exc)

            pollers = [threading.Thread(target=poll) for _ in range(4)]
            for thread in pollers:
                thread.start()
            try:
                assert echo(conn) == PAYLOAD
            finally:
                done.set()
                for thread in pollers:
                    thread.join(TIMEOUT)
            final = conn.stats()
    assert not errors
    assert seen and max(seen) <= final.packets_sent
