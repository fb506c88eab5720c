"""QMuxConnection.stats() on an in-memory pair with a virtual clock.

RTT comes from QX_PING round trips (draft-ietf-quic-qmux-02 §4.3) through the
RFC 9002 §5 estimator; bytes are the TLS record bytes on the "TCP"; loss and
congestion figures do not exist (TCP retransmits below QMux).
"""

from __future__ import annotations

import pytest

from .pair import Pair, Transfer, client_config

#: One-way delay of the simulated TCP.
ONE_WAY = 0.015


def test_no_rtt_without_pings() -> None:
    pair = Pair(latency=ONE_WAY)
    pair.handshake()
    stats = pair.client.stats(pair.now)
    assert stats.transport == "tcp"
    assert stats.duration == pytest.approx(pair.now - 1000.0)
    assert None is stats.smoothed_rtt is stats.min_rtt is stats.latest_rtt is stats.rtt_variance
    assert stats.congestion_window is stats.bytes_in_flight is stats.path_mtu is None
    assert stats.slow_start_threshold is None
    assert stats.packets_lost == stats.retransmissions == stats.probe_timeouts == 0


def test_rtt_from_explicit_pings() -> None:
    pair = Pair(latency=ONE_WAY)
    pair.handshake()
    for _ in range(3):
        pair.client.ping()
        pair.run_until(lambda: not pair.client.ping_state.outstanding)
        pair.now += 0.5  # the next ping goes out later, as a real keep-alive would
    stats = pair.client.stats(pair.now)
    assert pair.client.ping_state.samples == 3
    for value in (stats.smoothed_rtt, stats.min_rtt, stats.latest_rtt):
        assert value == pytest.approx(2 * ONE_WAY, abs=1e-9)
    assert stats.rtt_variance is not None and stats.rtt_variance < ONE_WAY
    # The side that only answered measured nothing.
    assert pair.server.stats(pair.now).smoothed_rtt is None


def test_rtt_from_keepalive_pings() -> None:
    pair = Pair(latency=ONE_WAY, client=client_config(keepalive_interval=1.0))
    pair.handshake()
    start = pair.now
    pair.run_until(lambda: pair.now - start > 5.5)
    stats = pair.client.stats(pair.now)
    assert pair.client.ping_state.samples >= 4
    assert stats.min_rtt == pytest.approx(2 * ONE_WAY, abs=1e-9)
    assert stats.smoothed_rtt == pytest.approx(2 * ONE_WAY, abs=1e-9)


def test_bytes_are_the_tls_bytes_on_the_wire() -> None:
    pair = Pair(latency=ONE_WAY)
    pair.handshake()
    transfer = Transfer(pair, [100_000, 50_000], echo=True)
    pair.run_until(lambda: transfer.complete)
    transfer.check()
    pair.drain()
    client, server = pair.client.stats(pair.now), pair.server.stats(pair.now)
    assert client.bytes_sent == server.bytes_received
    assert server.bytes_sent == client.bytes_received
    # Application bytes plus TLS and QMux overhead, but not much more.
    assert 150_000 < client.bytes_sent < 150_000 + 10_000
    assert client.bytes_received > 150_000
    assert client.packets_sent == client.packets_received == 0
    assert client.streams_opened_local == server.streams_opened_peer == 2
    assert server.streams_opened_local == client.streams_opened_peer == 0
