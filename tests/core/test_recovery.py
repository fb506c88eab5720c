"""Loss recovery (RFC 9002 §5, §6, §7.6) with an injected clock.

Expected values are computed by hand from the RFC formulas and written out.
"""

from __future__ import annotations

from typing import Any

import pytest

from mstls.codes import TransportErrorCode
from mstls.core.congestion import NewReno
from mstls.core.ecn import EcnState
from mstls.core.pacing import Pacer
from mstls.core.recovery import (
    K_INITIAL_RTT,
    AckResult,
    PacketNumberSpace,
    Recovery,
    RttEstimator,
    SentPacket,
)
from mstls.exceptions import ProtocolError
from mstls.wire.frames import AckFrame, EcnCounts

INITIAL = PacketNumberSpace.INITIAL
HANDSHAKE = PacketNumberSpace.HANDSHAKE
APP = PacketNumberSpace.APPLICATION
MAX_ACK_DELAY = 0.025


class Log:
    """Collects on_acked / on_lost calls of records."""

    def __init__(self) -> None:
        self.acked: list[Any] = []
        self.lost: list[Any] = []

    def on_acked(self, tag: Any) -> None:
        self.acked.append(tag)

    def on_lost(self, tag: Any) -> None:
        self.lost.append(tag)

    def record(self, tag: Any) -> tuple[Any, Any, tuple[Any, ...]]:
        return (self.on_acked, self.on_lost, (tag,))


def make(*, is_client: bool = False, confirmed: bool = True) -> Recovery:
    recovery = Recovery(MAX_ACK_DELAY, NewReno(1200), Pacer(1200), is_client=is_client)
    if confirmed:
        recovery.on_handshake_confirmed()
    return recovery


def send(
    r: Recovery,
    pn: int,
    now: float,
    space: PacketNumberSpace = APP,
    log: Log | None = None,
    *,
    size: int = 1200,
    ack_eliciting: bool = True,
    in_flight: bool = True,
    is_mtu_probe: bool = False,
) -> SentPacket:
    records = [log.record((space, pn))] if log is not None else []
    packet = SentPacket(pn, space, size, ack_eliciting, in_flight, records, False, is_mtu_probe)
    r.on_packet_sent(packet, now)
    return packet


def ack(*ranges: tuple[int, int], delay: int = 0, ecn: EcnCounts | None = None) -> AckFrame:
    return AckFrame(list(ranges), delay, ecn)


def pns(packets: list[SentPacket]) -> list[int]:
    return [p.packet_number for p in packets]


# -- RTT estimator (§5.3) --------------------------------------------------------------
def test_rtt_before_any_sample_uses_initial_rtt() -> None:
    rtt = RttEstimator()
    assert rtt.smoothed_rtt == K_INITIAL_RTT == 0.333
    assert rtt.rttvar == pytest.approx(0.1665)
    assert rtt.pto_base() == pytest.approx(0.333 + 4 * 0.1665)
    assert not rtt.has_sample


def test_rtt_first_sample() -> None:
    rtt = RttEstimator()
    rtt.update(0.1, 0.05, now=1.0, max_ack_delay=MAX_ACK_DELAY)
    assert (rtt.latest_rtt, rtt.min_rtt, rtt.smoothed_rtt) == (0.1, 0.1, 0.1)
    assert rtt.rttvar == pytest.approx(0.05)
    assert rtt.first_sample_time == 1.0


def test_rtt_ack_delay_capped_after_confirmation() -> None:
    rtt = RttEstimator()
    rtt.update(0.1, 0.0, now=0.0, max_ack_delay=MAX_ACK_DELAY)
    # ack_delay 0.03 capped to 0.025: adjusted = 0.2 - 0.025 = 0.175
    rtt.update(0.2, 0.03, now=1.0, max_ack_delay=MAX_ACK_DELAY)
    assert rtt.rttvar == pytest.approx(0.75 * 0.05 + 0.25 * 0.075)  # 0.05625
    assert rtt.smoothed_rtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.175)  # 0.109375
    assert rtt.min_rtt == 0.1


def test_rtt_ack_delay_not_capped_before_confirmation() -> None:
    rtt = RttEstimator()
    rtt.update(0.1, 0.0, now=0.0, max_ack_delay=None)
    rtt.update(0.2, 0.03, now=1.0, max_ack_delay=None)  # adjusted = 0.17
    assert rtt.rttvar == pytest.approx(0.75 * 0.05 + 0.25 * 0.07)
    assert rtt.smoothed_rtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.17)


def test_rtt_implausible_ack_delay_is_not_subtracted() -> None:
    rtt = RttEstimator()
    rtt.update(0.1, 0.0, now=0.0, max_ack_delay=MAX_ACK_DELAY)
    rtt.update(0.11, 0.02, now=1.0, max_ack_delay=MAX_ACK_DELAY)  # 0.11 < 0.1 + 0.02
    assert rtt.smoothed_rtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.11)
    assert rtt.rttvar == pytest.approx(0.75 * 0.05 + 0.25 * 0.01)


def test_min_rtt_ignores_ack_delay() -> None:
    rtt = RttEstimator()
    rtt.update(0.1, 0.0, now=0.0, max_ack_delay=MAX_ACK_DELAY)
    rtt.update(0.09, 0.02, now=1.0, max_ack_delay=MAX_ACK_DELAY)
    assert rtt.min_rtt == 0.09


def test_ack_delay_decoded_with_exponent_in_application_space() -> None:
    r = make()
    send(r, 0, 0.0)
    r.on_ack_received(APP, ack((0, 0)), 3, 0.1)
    send(r, 1, 1.0)
    # 2500 << 3 = 20000 us = 0.02 s; adjusted = 0.2 - 0.02 = 0.18
    r.on_ack_received(APP, ack((0, 1), delay=2500), 3, 1.2)
    assert r.rtt.smoothed_rtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.18)


def test_ack_delay_ignored_in_initial_space() -> None:
    r = make(confirmed=False)
    send(r, 0, 0.0, INITIAL)
    r.on_ack_received(INITIAL, ack((0, 0)), 3, 0.1)
    send(r, 1, 1.0, INITIAL)
    r.on_ack_received(INITIAL, ack((0, 1), delay=2500), 3, 1.2)
    assert r.rtt.smoothed_rtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.2)


def test_rtt_sampled_only_when_largest_is_newly_acked_and_ack_eliciting() -> None:
    r = make()
    send(r, 0, 0.0)
    send(r, 1, 0.0, ack_eliciting=False, in_flight=False)
    r.on_ack_received(APP, ack((1, 1)), 3, 0.5)  # largest is an ACK-only packet
    assert not r.rtt.has_sample
    r.on_ack_received(APP, ack((0, 1)), 3, 0.7)  # 0 newly acked but largest (1) is not
    assert not r.rtt.has_sample
    send(r, 2, 1.0)
    r.on_ack_received(APP, ack((0, 2)), 3, 1.1)
    assert r.rtt.latest_rtt == pytest.approx(0.1)
    r.on_ack_received(APP, ack((0, 2)), 3, 5.0)  # duplicate ACK: no new sample
    assert r.rtt.latest_rtt == pytest.approx(0.1)


# -- ACK processing --------------------------------------------------------------------
def test_ack_calls_records_of_acked_and_lost_packets() -> None:
    r = make()
    log = Log()
    for pn in range(10):
        send(r, pn, pn * 0.001, log=log)
    result = r.on_ack_received(APP, ack((5, 9), (0, 2)), 3, 0.05)
    assert pns(result.acked) == [0, 1, 2, 5, 6, 7, 8, 9]
    assert [tag[1] for tag in log.acked] == [0, 1, 2, 5, 6, 7, 8, 9]
    # 3 and 4 are 3+ packets below the largest acknowledged (9): lost (§6.1.1)
    assert pns(result.lost) == [3, 4]
    assert [tag[1] for tag in log.lost] == [3, 4]
    assert r.bytes_in_flight == 0
    again = r.on_ack_received(APP, ack((5, 9), (0, 2)), 3, 0.06)
    assert again.acked == [] and again.lost == []
    assert len(log.acked) == 8


def test_ack_of_packet_never_sent_is_protocol_violation() -> None:
    r = make()
    for pn in range(3):
        send(r, pn, 0.0)
    with pytest.raises(ProtocolError) as info:
        r.on_ack_received(APP, ack((0, 3)), 3, 0.1)
    assert info.value.error_code == TransportErrorCode.PROTOCOL_VIOLATION
    assert info.value.frame_type == 0x02
    with pytest.raises(ProtocolError) as info:
        r.on_ack_received(APP, ack((0, 7), ecn=EcnCounts(0, 0, 0)), 3, 0.1)
    assert info.value.frame_type == 0x03


def test_ack_in_a_space_with_nothing_sent_is_protocol_violation() -> None:
    r = make()
    send(r, 0, 0.0, APP)
    with pytest.raises(ProtocolError):
        r.on_ack_received(HANDSHAKE, ack((0, 0)), 3, 0.1)


def test_ack_of_skipped_packet_number_is_protocol_violation() -> None:
    r = make()
    send(r, 0, 0.0)
    r.skip_packet_number(APP, 1)
    send(r, 2, 0.0)
    r.on_ack_received(APP, ack((2, 2), (0, 0)), 3, 0.1)
    with pytest.raises(ProtocolError) as info:
        r.on_ack_received(APP, ack((0, 2)), 3, 0.1)
    assert info.value.error_code == TransportErrorCode.PROTOCOL_VIOLATION


def test_ack_only_packets_are_tracked_but_not_in_flight() -> None:
    r = make()
    send(r, 0, 0.0, ack_eliciting=False, in_flight=False)
    assert r.bytes_in_flight == 0
    assert r.loss_detection_deadline() is None  # nothing ack-eliciting in flight
    result = r.on_ack_received(APP, ack((0, 0)), 3, 0.1)  # legal: it was sent
    assert pns(result.acked) == [0]


def test_sending_out_of_order_is_a_programming_error() -> None:
    r = make()
    send(r, 5, 0.0)
    with pytest.raises(ValueError):
        send(r, 5, 0.0)


# -- loss detection (§6.1) ---------------------------------------------------------------
def test_packet_threshold_loss() -> None:
    r = make()
    for pn in range(4):
        send(r, pn, 0.0)
    result = r.on_ack_received(APP, ack((3, 3)), 3, 0.05)
    assert pns(result.lost) == [0]  # 0 + 3 <= 3; 1 and 2 wait for the time threshold
    assert r.ack_eliciting_in_flight(APP) == 2


def test_time_threshold_loss_and_timer() -> None:
    r = make()
    log = Log()
    send(r, 0, 0.0, log=log)
    send(r, 1, 0.01, log=log)
    result = r.on_ack_received(APP, ack((1, 1)), 3, 0.11)  # RTT sample 0.1
    assert result.lost == []
    loss_delay = 9 / 8 * 0.1
    deadline = r.loss_detection_deadline()
    assert deadline == pytest.approx(0.0 + loss_delay)
    assert r.on_loss_detection_timeout(deadline - 0.001).lost == []  # early: nothing
    assert deadline is not None
    timeout = r.on_loss_detection_timeout(deadline)
    assert pns(timeout.lost) == [0]
    assert timeout.probe_count == 0
    assert log.lost == [(APP, 0)]
    assert r.bytes_in_flight == 0
    assert r.loss_detection_deadline() is None


def test_time_threshold_uses_granularity_floor() -> None:
    r = make()
    send(r, 0, 0.0)
    send(r, 1, 0.0)
    r.on_ack_received(APP, ack((1, 1)), 3, 0.0001)  # tiny RTT
    assert r.loss_detection_deadline() == pytest.approx(0.001)


# -- PTO (§6.2) --------------------------------------------------------------------------
def test_pto_timing_and_exponential_backoff() -> None:
    r = make()
    send(r, 0, 0.0)
    base = 0.333 + 4 * 0.1665  # 0.999, no RTT sample yet
    pto = base + MAX_ACK_DELAY
    assert r.loss_detection_deadline() == pytest.approx(pto)
    deadlines = []
    now = 0.0
    for expected_count in (1, 2, 3, 4):
        deadline = r.loss_detection_deadline()
        assert deadline is not None
        deadlines.append(deadline - now)
        now = deadline
        result = r.on_loss_detection_timeout(now)
        assert (result.probe_space, result.probe_count) == (APP, 2)
        assert r.pto_count == expected_count
        assert r.probes_pending(APP) == 2
        send(r, 2 * expected_count - 1, now)  # the probe restarts the timer
        assert r.probes_pending(APP) == 1
        send(r, 2 * expected_count, now)
        assert r.probes_pending(APP) == 0
    # each interval doubles: pto, 2 pto, 4 pto, 8 pto (measured from the last send)
    assert deadlines == pytest.approx([pto, 2 * pto, 4 * pto, 8 * pto])


def test_ack_resets_pto_count() -> None:
    r = make()
    send(r, 0, 0.0)
    r.on_loss_detection_timeout(10.0)
    assert r.pto_count == 1
    send(r, 1, 10.0)
    r.on_ack_received(APP, ack((1, 1)), 3, 10.1)
    assert r.pto_count == 0


def test_client_keeps_backoff_until_peer_validated_its_address() -> None:
    r = make(is_client=True, confirmed=False)
    send(r, 0, 0.0, INITIAL)
    r.on_loss_detection_timeout(5.0)
    send(r, 1, 5.0, INITIAL)
    r.on_ack_received(INITIAL, ack((1, 1)), 3, 5.1)
    assert r.pto_count == 1  # §6.2.1: not reset on an Initial ACK at a client
    send(r, 0, 5.2, HANDSHAKE)
    r.on_ack_received(HANDSHAKE, ack((0, 0)), 3, 5.3)
    assert r.peer_address_validated
    assert r.pto_count == 0


def test_pto_picks_earliest_of_initial_and_handshake_without_max_ack_delay() -> None:
    r = make(is_client=True, confirmed=False)
    send(r, 0, 0.0, INITIAL)
    send(r, 0, 0.1, HANDSHAKE)
    base = 0.333 + 4 * 0.1665
    assert r.loss_detection_deadline() == pytest.approx(base)
    result = r.on_loss_detection_timeout(base)
    assert result.probe_space == INITIAL
    r.discard_space(INITIAL, now=base)
    assert r.pto_count == 0  # reset on discard (§6.4)
    assert r.loss_detection_deadline() == pytest.approx(0.1 + base)
    assert r.on_loss_detection_timeout(0.1 + base).probe_space == HANDSHAKE


def test_application_pto_not_armed_before_handshake_confirmed() -> None:
    r = make(confirmed=False)  # a server before completing the handshake
    send(r, 0, 0.0, APP)
    assert r.loss_detection_deadline() is None
    r.on_handshake_confirmed()
    assert r.loss_detection_deadline() == pytest.approx(0.999 + MAX_ACK_DELAY)


def test_client_anti_deadlock_probe() -> None:
    r = make(is_client=True, confirmed=False)
    send(r, 0, 1.0, INITIAL)
    r.on_ack_received(INITIAL, ack((0, 0)), 3, 1.1)  # nothing in flight now
    base = 0.1 + 4 * 0.05  # RTT 0.1 measured
    deadline = r.loss_detection_deadline()
    assert deadline == pytest.approx(1.1 + base)  # from the last event, not a send
    result = r.on_loss_detection_timeout(deadline)
    assert (result.probe_space, result.probe_count) == (INITIAL, 1)
    r.has_handshake_keys = True
    assert r.loss_detection_deadline() == pytest.approx(1.1 + base + 2 * base)
    assert r.on_loss_detection_timeout(10.0).probe_space == HANDSHAKE


def test_no_timer_when_nothing_in_flight_and_address_validated() -> None:
    r = make(is_client=True, confirmed=False)
    send(r, 0, 0.0, HANDSHAKE)
    r.on_ack_received(HANDSHAKE, ack((0, 0)), 3, 0.1)
    assert r.loss_detection_deadline() is None
    assert make().loss_detection_deadline() is None  # a server with nothing sent


def test_server_at_amplification_limit_arms_no_pto() -> None:
    r = make(confirmed=False)
    send(r, 0, 0.0, INITIAL)
    r.amplification_blocked = True
    assert r.loss_detection_deadline() is None
    r.amplification_blocked = False
    assert r.loss_detection_deadline() == pytest.approx(0.999)


# -- discarding a space (§6.4) -----------------------------------------------------------
def test_discard_space_removes_bytes_in_flight_silently() -> None:
    r = make(confirmed=False)
    log = Log()
    send(r, 0, 0.0, INITIAL, log, size=1200)
    send(r, 1, 0.0, INITIAL, log, size=300)
    send(r, 0, 0.0, HANDSHAKE, log, size=500)
    assert r.bytes_in_flight == 2000
    r.discard_space(INITIAL)
    assert r.bytes_in_flight == 500
    assert log.acked == [] and log.lost == []
    assert r.ack_eliciting_in_flight() == 1
    assert r.on_ack_received(INITIAL, ack((0, 1)), 3, 0.1).acked == []  # ignored
    with pytest.raises(ValueError):
        send(r, 2, 0.0, INITIAL)


# -- persistent congestion (§7.6) --------------------------------------------------------
def _with_rtt_sample() -> Recovery:
    """srtt 0.1, rttvar 0.05: persistent congestion duration (0.1+0.2+0.025)*3 = 0.975."""
    r = make()
    send(r, 0, 0.0)
    r.on_ack_received(APP, ack((0, 0)), 3, 0.1)
    assert r.persistent_congestion_duration() == pytest.approx(0.975)
    return r


def test_persistent_congestion_collapses_window() -> None:
    r = _with_rtt_sample()
    times = [0.2, 0.5, 0.9, 1.35, 1.38, 1.39]
    for pn, t in enumerate(times, start=1):
        send(r, pn, t)
    result = r.on_ack_received(APP, ack((6, 6)), 3, 1.4)
    assert pns(result.lost) == [1, 2, 3]  # by packet threshold; 4, 5 wait on time
    assert not result.persistent_congestion  # 0.2 .. 0.9 spans 0.7 < 0.975
    assert r.congestion.cwnd > r.congestion.minimum_window
    r2 = _with_rtt_sample()
    times = [0.2, 0.5, 0.9, 1.3, 1.35, 1.4, 1.45]
    for pn, t in enumerate(times, start=1):
        send(r2, pn, t)
    result = r2.on_ack_received(APP, ack((7, 7)), 3, 1.5)
    # 1-4 by packet threshold, 5 by time (1.35 + 9/8 * 0.1 <= 1.5); 0.2 .. 1.35 > 0.975
    assert pns(result.lost) == [1, 2, 3, 4, 5]
    assert result.persistent_congestion
    # collapsed to kMinimumWindow (2400), then packet 7's acknowledgement grows it in
    # slow start (B.5 runs after B.8 OnPacketsLost, which left the recovery period)
    assert r2.congestion.minimum_window == 2400
    assert r2.congestion.cwnd == 2400 + 1200


def test_no_persistent_congestion_when_a_packet_between_was_acked() -> None:
    r = _with_rtt_sample()
    times = [0.2, 0.25, 0.9, 1.3, 1.35, 1.4, 1.45]
    for pn, t in enumerate(times, start=1):
        send(r, pn, t)
    early = r.on_ack_received(APP, ack((2, 2)), 3, 0.3)
    assert early.lost == []  # 1 is not lost yet (0.2 + 9/8 * srtt > 0.3)
    result = r.on_ack_received(APP, ack((7, 7), (2, 2)), 3, 1.5)
    assert pns(result.lost)[:3] == [1, 3, 4]  # 1 .. 4 would span 1.1 s, but 2 was acked
    assert not result.persistent_congestion
    assert r.congestion.cwnd > r.congestion.minimum_window


def test_no_persistent_congestion_without_prior_rtt_sample() -> None:
    r = make()
    times = [0.2, 0.5, 0.9, 1.3, 1.35, 1.4, 1.45]
    for pn, t in enumerate(times):
        send(r, pn, t)
    result = r.on_ack_received(APP, ack((6, 6)), 3, 1.5)
    assert len(result.lost) >= 4
    assert not result.persistent_congestion


def test_packets_sent_before_first_rtt_sample_do_not_count() -> None:
    r = make()
    send(r, 0, 0.0)
    send(r, 1, 0.01)  # sent before the sample (taken at 0.1)
    r.on_ack_received(APP, ack((0, 0)), 3, 0.1)
    for pn, t in enumerate([0.9, 1.0, 1.05, 1.06], start=2):
        send(r, pn, t)
    result = r.on_ack_received(APP, ack((5, 5)), 3, 1.1)
    assert pns(result.lost) == [1, 2]  # 0.01 .. 0.9 would span 0.89 -- but 1 is excluded
    assert not result.persistent_congestion


def test_mtu_probe_loss_is_not_a_congestion_signal() -> None:
    r = _with_rtt_sample()
    cwnd = r.congestion.cwnd
    send(r, 1, 0.2, size=1500, is_mtu_probe=True)
    for pn in range(2, 5):
        send(r, pn, 0.2)
    result = r.on_ack_received(APP, ack((2, 4)), 3, 0.3)
    assert pns(result.lost) == [1]
    assert r.congestion.cwnd >= cwnd
    assert r.bytes_in_flight == 0


# -- ECN (§7.1, RFC 9000 §13.4.2) --------------------------------------------------------
def test_ecn_ce_increase_is_a_congestion_event_once_per_round() -> None:
    r = _with_rtt_sample()
    cwnd = r.congestion.cwnd
    send(r, 1, 0.2)
    r.on_ack_received(APP, ack((0, 1), ecn=EcnCounts(2, 0, 1)), 3, 0.3)
    assert r.congestion.cwnd == cwnd // 2
    send(r, 2, 0.25)  # sent before the recovery period began (0.3)
    r.on_ack_received(APP, ack((0, 2), ecn=EcnCounts(2, 0, 2)), 3, 0.35)
    assert r.congestion.cwnd == cwnd // 2
    assert r.ecn.state is not EcnState.FAILED
    send(r, 3, 0.4)
    r.on_ack_received(APP, ack((0, 3), ecn=EcnCounts(1, 0, 2)), 3, 0.5)
    assert r.ecn.state is EcnState.FAILED


# -- efficiency ----------------------------------------------------------------------------
class CountingDict(dict[int, SentPacket]):
    pops = 0

    def pop(self, key: int, default: Any = None) -> Any:  # type: ignore[override]
        CountingDict.pops += 1
        return super().pop(key, default)


def test_ack_work_is_proportional_to_newly_acked_packets() -> None:
    r = make()
    r.congestion.cwnd = 10**9
    for pn in range(5000):
        send(r, pn, 0.0)
    space = r._spaces[APP]
    space.sent = CountingDict(space.sent)
    largest = -1
    for _ in range(100):
        largest += 2
        CountingDict.pops = 0
        # cumulative ACK from packet 0: the old range must not be walked again
        result = r.on_ack_received(APP, ack((0, largest)), 3, 0.1)
        assert len(result.acked) == 2
        assert CountingDict.pops <= 2 + 3


def test_ack_result_repr() -> None:
    assert "acked=0" in repr(AckResult([], []))
