"""Pacing (RFC 9002 §7.7)."""

from __future__ import annotations

import pytest

from mstls.core.congestion import NewReno
from mstls.core.pacing import MAX_BURST_PACKETS, MIN_BURST_PACKETS, Pacer
from mstls.core.recovery import PacketNumberSpace, Recovery, SentPacket
from mstls.wire.frames import AckFrame

MDS = 1200


def test_no_pacing_before_rtt_sample() -> None:
    pacer = Pacer(MDS)
    for _ in range(1000):
        assert pacer.next_send_time(0.0, MDS) is None
        pacer.on_packet_sent(0.0, MDS)
    assert pacer.rate is None


def test_burst_then_spacing() -> None:
    pacer = Pacer(MDS)
    pacer.update(cwnd=12000, smoothed_rtt=0.1, max_datagram_size=MDS)
    assert pacer.rate == pytest.approx(1.25 * 12000 / 0.1)  # 150 000 B/s
    assert pacer.capacity == MIN_BURST_PACKETS * MDS
    for _ in range(MIN_BURST_PACKETS):  # a GSO batch of 10 leaves at once
        assert pacer.next_send_time(1.0, MDS) is None
        pacer.on_packet_sent(1.0, MDS)
    when = pacer.next_send_time(1.0, MDS)
    assert when == pytest.approx(1.0 + MDS / 150000)  # 8 ms later
    assert when is not None
    assert pacer.next_send_time(when, MDS) is None


def test_average_rate_is_kept() -> None:
    pacer = Pacer(MDS)
    pacer.update(cwnd=120000, smoothed_rtt=0.05, max_datagram_size=MDS)
    rate = 1.25 * 120000 / 0.05
    now, sent = 0.0, 0
    while now < 1.0:
        when = pacer.next_send_time(now, MDS)
        if when is None:
            pacer.on_packet_sent(now, MDS)
            sent += MDS
        else:
            now = when
    assert sent == pytest.approx(rate + pacer.capacity, rel=0.01)


def test_burst_grows_with_rate_up_to_cap() -> None:
    pacer = Pacer(MDS)
    pacer.update(cwnd=10_000_000, smoothed_rtt=0.01, max_datagram_size=MDS)
    assert pacer.capacity == MAX_BURST_PACKETS * MDS
    pacer.update(cwnd=1_000_000, smoothed_rtt=0.05, max_datagram_size=MDS)
    assert pacer.capacity == int(1.25 * 1_000_000 / 0.05 * 0.002)  # 2 ms of sending


def test_idle_bucket_refills_only_to_capacity() -> None:
    pacer = Pacer(MDS)
    pacer.update(cwnd=12000, smoothed_rtt=0.1, max_datagram_size=MDS)
    pacer.on_packet_sent(0.0, MDS)
    pacer.next_send_time(100.0, MDS)
    assert pacer.tokens == pacer.capacity


def test_unpaced_sends_are_paid_back_but_bounded() -> None:
    pacer = Pacer(MDS)
    pacer.update(cwnd=12000, smoothed_rtt=0.1, max_datagram_size=MDS)
    for _ in range(100):  # e.g. PTO probes that ignore pacing
        pacer.on_packet_sent(0.0, MDS)
    assert pacer.tokens == -pacer.capacity
    when = pacer.next_send_time(0.0, MDS)
    assert when == pytest.approx((pacer.capacity + MDS) / pacer.rate)  # type: ignore[operator]


def test_recovery_starts_pacing_after_first_rtt_sample() -> None:
    pacer = Pacer(MDS)
    recovery = Recovery(0.025, NewReno(MDS), pacer, is_client=False)
    recovery.on_handshake_confirmed()
    space = PacketNumberSpace.APPLICATION
    recovery.on_packet_sent(SentPacket(0, space, MDS), 0.0)
    assert pacer.rate is None
    recovery.on_ack_received(space, AckFrame([(0, 0)]), 3, 0.1)
    assert pacer.rate == pytest.approx(1.25 * recovery.congestion.cwnd / 0.1)
