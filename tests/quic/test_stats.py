"""QuicConnection.stats() on an in-memory pair with a virtual clock (RFC 9002 §5, §6, §7)."""

from __future__ import annotations

import attrs
import pytest

from mstls.stats import ConnectionStats

from .pair import Pair, client_config
from .test_connection_memory import transfer

#: One-way delay of the simulated path, so the round trip is twice this.
ONE_WAY = 0.020
RTT = 2 * ONE_WAY


def quiesce(pair: Pair) -> None:
    """Run until nothing is in flight and no timer but the idle one is near."""
    pair.run_until(
        lambda: (
            not pair.in_flight
            and not pair.client.recovery.bytes_in_flight
            and not pair.server.recovery.bytes_in_flight
        ),
    )


def test_before_the_handshake_nothing_is_measured() -> None:
    pair = Pair(latency=ONE_WAY)
    stats = pair.client.stats(pair.now + 1.5)
    assert stats.transport == "udp"
    assert stats.duration == pytest.approx(1.5)
    assert None is stats.smoothed_rtt is stats.min_rtt is stats.latest_rtt is stats.rtt_variance
    assert (stats.packets_sent, stats.packets_received, stats.bytes_sent) == (0, 0, 0)
    assert stats.packets_lost == stats.retransmissions == stats.probe_timeouts == 0
    assert stats.congestion_window == pair.client.recovery.congestion.cwnd
    assert stats.slow_start_threshold is None
    assert stats.path_mtu == 1200


def test_rtt_equals_the_injected_delay() -> None:
    pair = Pair(latency=ONE_WAY, client=client_config(pmtu_discovery=False))
    pair.handshake()
    transfer(pair, 200_000)
    for conn in (pair.client, pair.server):
        stats = conn.stats(pair.now)
        assert stats.min_rtt == pytest.approx(RTT, abs=1e-9)
        assert stats.latest_rtt is not None and stats.latest_rtt >= RTT - 1e-9
        # ACK delays are subtracted (§5.3), so the smoothed RTT stays near the path's.
        assert stats.smoothed_rtt == pytest.approx(RTT, abs=0.005)
        assert stats.rtt_variance is not None and 0 <= stats.rtt_variance < RTT


def test_packets_and_bytes_match_across_a_lossless_path() -> None:
    pair = Pair(latency=ONE_WAY)
    pair.handshake()
    transfer(pair, 300_000)
    quiesce(pair)
    client, server = pair.client.stats(pair.now), pair.server.stats(pair.now)
    assert client.path_mtu is not None
    assert client.bytes_sent == server.bytes_received > 300_000
    assert server.bytes_sent == client.bytes_received
    assert client.packets_sent == server.packets_received > 300_000 // client.path_mtu
    assert server.packets_sent == client.packets_received > 0
    assert client.packets_lost == server.packets_lost == 0
    assert client.retransmissions == client.bytes_lost == 0
    assert client.bytes_in_flight == 0
    assert client.streams_opened_local == server.streams_opened_peer == 1
    assert client.streams_opened_peer == server.streams_opened_local == 0
    assert client.streams_opened == 1


def test_dropped_datagrams_are_counted_as_lost_and_retransmitted() -> None:
    dropped: list[int] = []
    seen = 0

    def drop_some(data: bytes, to_server: bool) -> bytes | None:
        nonlocal seen
        if not to_server or not pair.client.handshake_confirmed:
            return data
        seen += 1
        if seen % 10 == 0:
            dropped.append(len(data))
            return None
        return data

    pair = Pair(latency=ONE_WAY, client=client_config(pmtu_discovery=False), tamper=drop_some)
    pair.handshake()
    transfer(pair, 300_000)
    quiesce(pair)
    stats = pair.client.stats(pair.now)
    assert len(dropped) > 10
    # Each dropped datagram held one 1-RTT packet, and every one is declared lost.
    assert stats.packets_lost == len(dropped)
    assert stats.bytes_lost == sum(dropped)
    assert 0 < stats.retransmissions <= stats.packets_lost
    assert stats.slow_start_threshold is not None  # losses are congestion events (§7.3.2)
    assert stats.loss_rate == pytest.approx(len(dropped) / stats.packets_sent)
    assert pair.server.stats(pair.now).packets_lost == 0


def test_lost_mtu_probes_are_not_losses() -> None:
    """A path that drops datagrams above 1400 bytes: probes die, nothing counts as lost."""
    pair = Pair(
        latency=ONE_WAY,
        client=client_config(pmtu_max=4000),
        tamper=lambda data, to_server: data if len(data) <= 1400 else None,
    )
    pair.handshake()
    transfer(pair, 200_000)
    quiesce(pair)
    stats = pair.client.stats(pair.now)
    assert stats.path_mtu is not None and 1200 <= stats.path_mtu <= 1400
    assert pair.client.mtu.current == stats.path_mtu
    assert stats.packets_lost == 0


def test_probe_timeouts_while_the_path_is_black() -> None:
    pair = Pair(latency=ONE_WAY)
    pair.handshake()
    quiesce(pair)
    pair.blackhole = True
    client = pair.client
    sid = client.streams.open_stream()
    client.streams.write(sid, b"x" * 1000, fin=True)
    start = pair.now
    pair.run_until(lambda: client.recovery.pto_count >= 3, max_time=10)
    stats = client.stats(pair.now)
    assert stats.probe_timeouts == stats.pto_count >= 3
    assert stats.bytes_in_flight is not None and stats.bytes_in_flight > 0
    assert stats.duration > pair.now - start


def test_stats_are_immutable_snapshots() -> None:
    pair = Pair(latency=ONE_WAY)
    pair.handshake()
    before = pair.client.stats(pair.now)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        before.packets_sent = 0  # type: ignore[misc]
    transfer(pair, 50_000)
    after = pair.client.stats(pair.now)
    assert after.packets_sent > before.packets_sent
    assert isinstance(after, ConnectionStats)
