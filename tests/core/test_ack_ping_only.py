"""A packet whose only ack-eliciting frames are PINGs is acknowledged at once (issue 11).

RFC 9000 §13.2.1 bounds the delay of an ACK by max_ack_delay; nothing forbids
sending it sooner.  A keep-alive or a probe waits for nothing but the ACK, so
the tracker asks for it at once instead of arming the delayed-ACK timer.
"""

from __future__ import annotations

from mstls.core.ack_tracker import AckTracker
from mstls.core.recovery import PacketNumberSpace

MAX_ACK_DELAY = 0.025


def _tracker() -> AckTracker:
    tracker = AckTracker(PacketNumberSpace.APPLICATION)
    tracker.on_packet_received(0, True, 1.0)
    tracker.on_ack_sent(1.0, 0)
    return tracker


def test_ping_only_packet_is_acknowledged_at_once() -> None:
    tracker = _tracker()
    assert tracker.on_packet_received(1, True, 2.0, ping_only=True)
    assert tracker.ack_deadline(MAX_ACK_DELAY) == 2.0


def test_other_ack_eliciting_packet_is_still_delayed() -> None:
    tracker = _tracker()
    assert tracker.on_packet_received(1, True, 2.0)
    assert tracker.ack_deadline(MAX_ACK_DELAY) == 2.0 + MAX_ACK_DELAY


def test_ping_only_after_a_delayed_packet_brings_the_ack_forward() -> None:
    tracker = _tracker()
    tracker.on_packet_received(1, True, 2.0)
    tracker.ack_eliciting_threshold = 10  # the peer asked for fewer ACKs (ack-frequency §4)
    tracker.on_packet_received(2, True, 2.01, ping_only=True)
    assert tracker.ack_deadline(MAX_ACK_DELAY) == 2.01


def test_non_ack_eliciting_ignores_ping_only() -> None:
    tracker = _tracker()
    tracker.on_packet_received(1, False, 2.0, ping_only=True)
    assert tracker.ack_deadline(MAX_ACK_DELAY) is None
