"""ACK generation (RFC 9000 §13.2, draft-ietf-quic-ack-frequency §6)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mstls.core.ack_tracker import (
    MAX_ACK_RANGES,
    MAX_TRACKED_RANGES,
    AckTracker,
    EcnCodepoint,
)
from mstls.core.recovery import PacketNumberSpace
from mstls.wire.buffer import Reader
from mstls.wire.frames import AckFrame, EcnCounts, decode_frame, encode_frame

APP = PacketNumberSpace.APPLICATION
MAX_ACK_DELAY = 0.025


def described(frame: AckFrame) -> set[int]:
    values: set[int] = set()
    for low, high in frame.ranges:
        values |= set(range(low, high + 1))
    return values


def receive_all(tracker: AckTracker, packet_numbers: list[int], now: float = 0.0) -> None:
    for pn in packet_numbers:
        tracker.on_packet_received(pn, True, now)


# -- ranges ------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 400), max_size=150))
def test_ack_frame_describes_exactly_the_received_set(packet_numbers: list[int]) -> None:
    tracker = AckTracker(APP)
    model: set[int] = set()
    for pn in packet_numbers:
        fresh = tracker.on_packet_received(pn, True, 0.0)
        assert fresh == (pn not in model)
        model.add(pn)
    frame = tracker.build_ack_frame(0.0, 3)
    if not model:
        assert frame is None
        return
    assert frame is not None
    assert frame.largest_acknowledged == max(model) == tracker.largest_received
    # the frame is valid on the wire and decodes to itself
    decoded = decode_frame(Reader(encode_frame(frame)))
    assert decoded == frame
    if len(frame.ranges) < MAX_ACK_RANGES:
        assert described(frame) == model
    else:  # capped: the highest ranges, exactly
        lowest = frame.ranges[-1][0]
        assert described(frame) == {pn for pn in model if pn >= lowest}


def test_ranges_are_capped_keeping_the_newest() -> None:
    tracker = AckTracker(APP)
    receive_all(tracker, list(range(0, 200, 2)))  # 100 single-packet ranges
    frame = tracker.build_ack_frame(0.0, 3)
    assert frame is not None
    assert len(frame.ranges) == MAX_ACK_RANGES
    assert frame.ranges[0] == (198, 198)
    assert frame.ranges[-1] == (198 - 2 * (MAX_ACK_RANGES - 1),) * 2


def test_duplicates_detected() -> None:
    tracker = AckTracker(APP)
    assert tracker.on_packet_received(5, True, 0.0)
    assert not tracker.on_packet_received(5, True, 0.0)
    assert tracker.is_duplicate(5) and not tracker.is_duplicate(4)


def test_packets_below_tracked_floor_are_duplicates() -> None:
    tracker = AckTracker(APP)
    # two ranges too many: {0} and {2} are forgotten, the floor becomes 3
    receive_all(tracker, list(range(0, 2 * (MAX_TRACKED_RANGES + 2), 2)))
    assert len(tracker.received) == MAX_TRACKED_RANGES
    assert not tracker.on_packet_received(1, True, 0.0)  # never seen, but below the floor
    assert tracker.is_duplicate(2)
    assert tracker.on_packet_received(5, True, 0.0)


def test_acknowledged_ack_stops_reporting_old_ranges() -> None:
    tracker = AckTracker(APP)
    receive_all(tracker, [0, 1, 2, 5])
    frame = tracker.build_ack_frame(0.0, 3)
    assert frame is not None and frame.ranges == [(5, 5), (0, 2)]
    on_acked, _, args = tracker.ack_record(frame.largest_acknowledged)
    tracker.on_ack_sent(0.0, frame.largest_acknowledged)
    on_acked(*args)  # the packet carrying it was acknowledged (§13.2.4)
    assert tracker.build_ack_frame(0.0, 3) is None
    receive_all(tracker, [7])
    frame = tracker.build_ack_frame(0.0, 3)
    assert frame is not None and frame.ranges == [(7, 7)]
    receive_all(tracker, [3])  # a late packet below the report floor is still acknowledged
    frame = tracker.build_ack_frame(0.0, 3)
    assert frame is not None and frame.ranges == [(7, 7), (5, 5), (3, 3)]


# -- scheduling --------------------------------------------------------------------------
def test_initial_and_handshake_acknowledge_at_once() -> None:
    for space in (PacketNumberSpace.INITIAL, PacketNumberSpace.HANDSHAKE):
        tracker = AckTracker(space)
        tracker.on_packet_received(0, True, 2.0)
        assert tracker.ack_deadline(MAX_ACK_DELAY) == 2.0
        frame = tracker.build_ack_frame(2.5, 3)
        assert frame is not None and frame.ack_delay == 0  # RFC 9000 §19.3


def test_delayed_ack_then_every_second_packet() -> None:
    tracker = AckTracker(APP)
    assert tracker.ack_deadline(MAX_ACK_DELAY) is None
    tracker.on_packet_received(0, True, 1.0)
    assert tracker.ack_needed
    assert tracker.ack_deadline(MAX_ACK_DELAY) == 1.0 + MAX_ACK_DELAY
    tracker.on_packet_received(1, True, 1.01)
    assert tracker.ack_deadline(MAX_ACK_DELAY) == 1.01  # second packet: at once
    tracker.on_ack_sent(1.01, 1)
    assert not tracker.ack_needed and tracker.ack_deadline(MAX_ACK_DELAY) is None
    tracker.on_packet_received(2, True, 1.02)
    assert tracker.ack_deadline(MAX_ACK_DELAY) == 1.02 + MAX_ACK_DELAY


def test_non_ack_eliciting_packets_need_no_ack() -> None:
    tracker = AckTracker(APP)
    tracker.on_packet_received(0, False, 1.0)
    tracker.on_packet_received(1, False, 1.0)
    assert not tracker.ack_needed
    assert tracker.ack_deadline(MAX_ACK_DELAY) is None
    assert tracker.has_new_packets  # but an ACK may ride along
    tracker.on_ack_sent(1.0, 1)
    assert not tracker.has_new_packets


def test_gap_triggers_immediate_ack() -> None:
    tracker = AckTracker(APP)
    tracker.on_packet_received(0, True, 1.0)
    tracker.on_ack_sent(1.0, 0)
    tracker.on_packet_received(2, True, 1.1)  # 1 is missing
    assert tracker.ack_deadline(MAX_ACK_DELAY) == 1.1


def test_out_of_order_packet_triggers_immediate_ack() -> None:
    tracker = AckTracker(APP)
    receive_all(tracker, [0, 2])
    tracker.on_ack_sent(1.0, 2)
    tracker.on_packet_received(1, True, 1.2)  # below the largest ack-eliciting
    assert tracker.ack_deadline(MAX_ACK_DELAY) == 1.2


def test_gap_filled_by_non_ack_eliciting_is_no_gap() -> None:
    tracker = AckTracker(APP)
    tracker.on_packet_received(0, True, 1.0)
    tracker.on_ack_sent(1.0, 0)
    tracker.on_packet_received(1, False, 1.0)
    tracker.on_packet_received(2, True, 1.1)
    assert tracker.ack_deadline(MAX_ACK_DELAY) == 1.1 + MAX_ACK_DELAY


def test_ack_delay_field() -> None:
    tracker = AckTracker(APP)
    tracker.on_packet_received(0, True, 1.0)
    frame = tracker.build_ack_frame(1.01, 3)
    assert frame is not None and frame.ack_delay == 10000 >> 3  # 10 ms in 8 us units


def test_ecn_counts_reported_and_ce_acknowledged_at_once() -> None:
    tracker = AckTracker(APP)
    tracker.on_packet_received(0, True, 1.0, EcnCodepoint.NOT_ECT)
    frame = tracker.build_ack_frame(1.0, 3)
    assert frame is not None and frame.ecn is None
    tracker.on_packet_received(1, False, 1.0, EcnCodepoint.ECT0)
    tracker.on_ack_sent(1.0, 1)
    tracker.on_packet_received(2, True, 1.1, EcnCodepoint.CE)
    assert tracker.ack_deadline(MAX_ACK_DELAY) == 1.1
    frame = tracker.build_ack_frame(1.1, 3)
    assert frame is not None and frame.ecn == EcnCounts(1, 0, 1)
    assert not tracker.on_packet_received(2, True, 1.2, EcnCodepoint.CE)  # duplicate
    assert tracker.ecn_counts == EcnCounts(1, 0, 1)


def test_ack_frequency_raises_threshold_and_ignores_reordering() -> None:
    tracker = AckTracker(APP)
    tracker.set_ack_frequency(ack_eliciting_threshold=9, reordering_threshold=0)
    for pn in range(0, 20, 2):  # ten packets, every one after a gap
        tracker.on_packet_received(pn, True, 1.0 + pn / 1000)
        if pn < 18:
            assert tracker.ack_deadline(MAX_ACK_DELAY) == 1.0 + MAX_ACK_DELAY
    assert tracker.ack_deadline(MAX_ACK_DELAY) == 1.018  # the tenth exceeds 9


def test_immediate_ack_frame() -> None:
    tracker = AckTracker(APP)
    tracker.set_ack_frequency(10, 0)
    tracker.on_packet_received(0, True, 1.0)
    tracker.request_immediate_ack(1.0)
    assert tracker.ack_deadline(MAX_ACK_DELAY) == 1.0


def _immediate_after(tracker: AckTracker, pn: int, now: float) -> bool:
    tracker.on_packet_received(pn, True, now)
    deadline = tracker.ack_deadline(1.0)
    return deadline is not None and deadline <= now


def test_reordering_threshold_table_1_of_the_draft() -> None:
    """draft-ietf-quic-ack-frequency-10 §6.2.1 Table 1 (reordering threshold 3)."""
    tracker = AckTracker(APP)
    tracker.set_ack_frequency(ack_eliciting_threshold=100, reordering_threshold=3)
    expected = [(0, False), (1, False), (3, False), (4, False), (5, True)]
    expected += [(8, False), (9, True), (10, True)]
    now = 0.0
    for pn, send in expected:
        now += 0.001
        assert _immediate_after(tracker, pn, now) == send, pn
        if send:
            tracker.on_ack_sent(now, pn)


def test_reordering_threshold_table_2_of_the_draft() -> None:
    """draft-ietf-quic-ack-frequency-10 §6.2.1 Table 2 (reordering threshold 5)."""
    tracker = AckTracker(APP)
    tracker.set_ack_frequency(ack_eliciting_threshold=100, reordering_threshold=5)
    expected = [(0, False), (1, False), (3, False), (5, False), (6, False), (7, True)]
    expected += [(8, False), (9, True)]
    now = 0.0
    for pn, send in expected:
        now += 0.001
        assert _immediate_after(tracker, pn, now) == send, pn
        if send:
            tracker.on_ack_sent(now, pn)
