"""NewReno (RFC 9002 §7, Appendix B)."""

from __future__ import annotations

import math

import pytest

from mstls.core.congestion import NewReno, initial_window
from mstls.core.recovery import PacketNumberSpace, SentPacket

MDS = 1200


def packet(sent_time: float, size: int = MDS, *, mtu_probe: bool = False) -> SentPacket:
    p = SentPacket(0, PacketNumberSpace.APPLICATION, size, is_mtu_probe=mtu_probe)
    p.sent_time = sent_time
    return p


def fill(cc: NewReno, sent_time: float, count: int) -> list[SentPacket]:
    """Send ``count`` full-size packets at ``sent_time``."""
    packets = [packet(sent_time) for _ in range(count)]
    for p in packets:
        cc.on_packet_sent(p.size)
    return packets


@pytest.mark.parametrize(
    ("mds", "expected"),
    [(1200, 12000), (1472, 14720), (1500, 14720), (9000, 18000)],
)
def test_initial_window(mds: int, expected: int) -> None:
    assert initial_window(mds) == expected
    cc = NewReno(mds)
    assert cc.cwnd == expected
    assert cc.minimum_window == 2 * mds
    assert cc.ssthresh == math.inf


def test_can_send_respects_window() -> None:
    cc = NewReno(MDS)
    fill(cc, 0.0, 9)
    assert cc.can_send(1200)
    cc.on_packet_sent(1200)
    assert not cc.can_send(1)
    assert cc.available == 0


def test_slow_start_grows_by_bytes_acked() -> None:
    cc = NewReno(MDS)
    sent = fill(cc, 0.0, 10)
    cc.on_packets_acked(sent, 0.1)
    assert cc.cwnd == 24000
    assert cc.bytes_in_flight == 0
    assert cc.in_slow_start


def test_under_utilised_window_does_not_grow() -> None:
    cc = NewReno(MDS)
    sent = fill(cc, 0.0, 2)  # 2400 of 12000: application limited (§7.8)
    assert cc.app_limited
    cc.on_packets_acked(sent, 0.1)
    assert cc.cwnd == 12000


def test_loss_halves_window_once_per_recovery_period() -> None:
    cc = NewReno(MDS)
    sent = fill(cc, 0.0, 10)
    cc.on_packets_lost(sent[:1], now=0.2)
    assert (cc.cwnd, cc.ssthresh) == (6000, 6000)
    assert cc.bytes_in_flight == 9 * MDS
    cc.on_packets_lost(sent[1:2], now=0.25)  # sent before the period began: no new halving
    assert cc.cwnd == 6000
    later = fill(cc, 0.3, 1)
    cc.on_packets_lost(later, now=0.5)  # sent during the period: a new congestion event
    assert (cc.cwnd, cc.ssthresh) == (3000, 3000)


def test_window_never_below_minimum() -> None:
    cc = NewReno(MDS)
    for i in range(10):
        lost = fill(cc, float(i), 1)
        cc.on_packets_lost(lost, now=i + 0.5)
    assert cc.cwnd == cc.minimum_window == 2400


def test_packets_sent_before_recovery_do_not_grow_window() -> None:
    cc = NewReno(MDS)
    sent = fill(cc, 0.0, 10)
    cc.on_packets_lost(sent[:1], now=0.2)
    cc.on_packets_acked(sent[1:], now=0.3)
    assert cc.cwnd == 6000
    assert cc.in_recovery(0.2) and not cc.in_recovery(0.21)


def test_congestion_avoidance_adds_one_datagram_per_window() -> None:
    cc = NewReno(MDS)
    sent = fill(cc, 0.0, 10)
    cc.on_packets_lost(sent[:1], now=0.1)  # cwnd = ssthresh = 6000
    cc.on_packets_acked(sent[1:], now=0.15)
    assert not cc.in_slow_start
    now = 0.2
    for _ in range(4):  # each round sends and acknowledges one full window
        window = fill(cc, now, cc.cwnd // MDS)
        cc.on_packets_acked(window, now + 0.1)
        now += 0.2
    assert cc.cwnd == 6000 + 4 * MDS


def test_congestion_avoidance_exact_byte_counting() -> None:
    cc = NewReno(MDS)
    cc.ssthresh = 12000  # start in congestion avoidance at cwnd 12000
    cc.cwnd = 12000
    sent = fill(cc, 0.0, 10)
    cc.on_packets_acked(sent[:5], 0.1)
    assert cc.cwnd == 12000  # half a window acknowledged
    cc.on_packets_acked(sent[5:], 0.1)
    assert cc.cwnd == 13200  # a full window: one datagram more


def test_slow_start_switches_to_avoidance_at_ssthresh() -> None:
    cc = NewReno(MDS)
    cc.ssthresh = 13200
    sent = fill(cc, 0.0, 10)
    cc.on_packets_acked(sent, 0.1)
    assert cc.cwnd == 13200  # 1200 by slow start, the other 10800 < one window in CA


def test_persistent_congestion_collapses_window() -> None:
    cc = NewReno(MDS)
    sent = fill(cc, 0.0, 10)
    cc.on_packets_lost(sent, now=2.0)
    cc.on_persistent_congestion()
    assert cc.cwnd == 2400
    assert not cc.in_recovery(1.0)  # the recovery period ended with it
    assert cc.bytes_in_flight == 0


def test_mtu_probe_loss_only_removes_bytes() -> None:
    cc = NewReno(MDS)
    probe = packet(0.0, 1500, mtu_probe=True)
    cc.on_packet_sent(probe.size)
    cc.on_packets_lost([probe], now=1.0)
    assert cc.cwnd == 12000
    assert cc.ssthresh == math.inf
    assert cc.bytes_in_flight == 0


def test_not_in_flight_packets_are_ignored() -> None:
    cc = NewReno(MDS)
    ack_only = SentPacket(0, PacketNumberSpace.APPLICATION, 50, False, False)
    cc.on_packets_acked([ack_only], 0.1)
    cc.on_packets_lost([ack_only], 0.1)
    assert (cc.cwnd, cc.bytes_in_flight) == (12000, 0)


def test_ecn_congestion_event_uses_recovery_period() -> None:
    cc = NewReno(MDS)
    cc.on_congestion_event(sent_time=0.5, now=1.0)
    assert cc.cwnd == 6000
    cc.on_congestion_event(sent_time=0.9, now=1.1)
    assert cc.cwnd == 6000


def test_set_max_datagram_size() -> None:
    cc = NewReno(1500)
    assert cc.cwnd == 14720
    cc.set_max_datagram_size(1200)  # shrinking: back to the new initial window
    assert (cc.cwnd, cc.minimum_window) == (12000, 2400)
    cc.on_persistent_congestion()
    cc.set_max_datagram_size(9000)  # growing: the minimum window follows
    assert cc.cwnd == 18000
    with pytest.raises(ValueError):
        cc.set_max_datagram_size(0)


def test_remove_from_flight() -> None:
    cc = NewReno(MDS)
    fill(cc, 0.0, 3)
    cc.remove_from_flight(2400)
    assert cc.bytes_in_flight == 1200
