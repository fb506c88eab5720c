"""NewReno congestion control (RFC 9002 §7 and Appendix B).

Theory of operation
-------------------
:class:`NewReno` owns the congestion window and **bytes in flight**: loss
recovery (:mod:`mstls.core.recovery`) tells it about every in-flight packet
sent, acknowledged, declared lost or discarded, and the connection asks
:meth:`NewReno.can_send` before sending a congestion-controlled packet
(RFC 9002 §7: PTO probes are exempt, §7.5).

* **Slow start** (§7.3.1): while ``cwnd < ssthresh`` the window grows by the
  bytes acknowledged.
* **Recovery** (§7.3.2): a loss or an ECN-CE increase starts a recovery period
  at ``now``; ``ssthresh`` becomes half the window and the window drops to it
  (never below the minimum window).  Another congestion signal about a packet
  sent before the period started does not reduce the window again, and packets
  sent before it started do not grow it.  The period ends when a packet sent
  during it is acknowledged (no explicit state: the test is on send times).
* **Congestion avoidance** (§7.3.3): the window grows by one maximum datagram
  size per window of bytes acknowledged, counted exactly with an accumulator.
* **Persistent congestion** (§7.6): decided by recovery, which knows the RTT and
  which packets were acknowledged; it calls :meth:`on_persistent_congestion`,
  collapsing the window to the minimum.
* **Under-utilisation** (§7.8): the window does not grow when the sender did not
  use it.  The test needs no help from the caller: the largest bytes in flight
  seen over the current and the previous *round* (a round ends when a packet
  sent after it began is acknowledged) is compared with the window — at least
  half of it in slow start (pacing can lag behind a window doubling each round),
  all but :data:`UTILIZATION_SLACK_PACKETS` datagrams in congestion avoidance.
* MTU probes (RFC 9000 §14.4, RFC 8899 §3): their loss says nothing about
  congestion, so it only removes their bytes from flight.

Every method is O(packets passed in); nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Protocol

__all__ = [
    "INITIAL_WINDOW_BYTES_FLOOR",
    "INITIAL_WINDOW_PACKETS",
    "LOSS_REDUCTION_FACTOR",
    "MINIMUM_WINDOW_PACKETS",
    "UTILIZATION_SLACK_PACKETS",
    "NewReno",
    "SentPacketInfo",
    "initial_window",
]

#: RFC 9002 §7.2: the initial window is ``min(10 * mds, max(14720, 2 * mds))``.
INITIAL_WINDOW_PACKETS = 10
INITIAL_WINDOW_BYTES_FLOOR = 14720
#: RFC 9002 §7.2, kMinimumWindow = 2 * max_datagram_size.
MINIMUM_WINDOW_PACKETS = 2
#: RFC 9002 §7.3.2, kLossReductionFactor.
LOSS_REDUCTION_FACTOR = 0.5
#: §7.8: in congestion avoidance the window counts as used when the peak bytes in
#: flight came within this many datagrams of it.
UTILIZATION_SLACK_PACKETS = 3


def initial_window(max_datagram_size: int) -> int:
    """RFC 9002 §7.2 initial congestion window for a maximum datagram size."""
    return min(
        INITIAL_WINDOW_PACKETS * max_datagram_size,
        max(INITIAL_WINDOW_BYTES_FLOOR, MINIMUM_WINDOW_PACKETS * max_datagram_size),
    )


class SentPacketInfo(Protocol):
    """What the controller reads from a sent packet (see ``recovery.SentPacket``)."""

    @property
    def sent_time(self) -> float: ...

    @property
    def size(self) -> int: ...

    @property
    def in_flight(self) -> bool: ...

    @property
    def is_mtu_probe(self) -> bool: ...


class NewReno:
    """The RFC 9002 congestion controller; owner of bytes in flight."""

    __slots__ = (
        "_ca_acked",
        "_last_round_peak",
        "_peak_in_flight",
        "_recovery_start",
        "_round_start",
        "bytes_in_flight",
        "cwnd",
        "max_datagram_size",
        "ssthresh",
    )

    def __init__(self, max_datagram_size: int = 1200) -> None:
        if max_datagram_size <= 0:
            raise ValueError("max_datagram_size must be positive")
        self.max_datagram_size = max_datagram_size
        #: Congestion window in bytes.
        self.cwnd = initial_window(max_datagram_size)
        #: Slow start threshold; ``math.inf`` until the first congestion event.
        self.ssthresh: float = math.inf
        #: Bytes of in-flight packets not yet acknowledged, lost or discarded.
        self.bytes_in_flight = 0
        self._recovery_start: float | None = None
        self._ca_acked = 0
        self._peak_in_flight = 0
        self._last_round_peak = 0
        self._round_start: float | None = None

    # -- getters -------------------------------------------------------------------
    @property
    def minimum_window(self) -> int:
        """kMinimumWindow (RFC 9002 §7.2)."""
        return MINIMUM_WINDOW_PACKETS * self.max_datagram_size

    @property
    def available(self) -> int:
        """Bytes that can still be sent before the window is full."""
        return max(0, self.cwnd - self.bytes_in_flight)

    def can_send(self, size: int) -> bool:
        """RFC 9002 §7: may a packet of ``size`` bytes be sent without exceeding the window?"""
        return self.bytes_in_flight + size <= self.cwnd

    def in_recovery(self, sent_time: float) -> bool:
        """RFC 9002 §B.4 InCongestionRecovery: was ``sent_time`` before the recovery start?"""
        start = self._recovery_start
        return start is not None and sent_time <= start

    @property
    def in_slow_start(self) -> bool:
        return self.cwnd < self.ssthresh

    @property
    def app_limited(self) -> bool:
        """RFC 9002 §7.8: the window was not used recently, so it must not grow."""
        peak = max(self._peak_in_flight, self._last_round_peak)
        if self.cwnd < self.ssthresh:
            return 2 * peak < self.cwnd
        return peak + UTILIZATION_SLACK_PACKETS * self.max_datagram_size < self.cwnd

    # -- mutators ------------------------------------------------------------------
    def set_max_datagram_size(self, size: int) -> None:
        """A new path maximum datagram size (RFC 9002 §7.2, RFC 9000 §14).

        The minimum window follows the new size and the window is kept at or above
        it; a *smaller* size also caps the window at the new initial window, as the
        RFC asks when the size shrinks to complete the handshake.
        """
        if size <= 0:
            raise ValueError("max_datagram_size must be positive")
        shrinking = size < self.max_datagram_size
        self.max_datagram_size = size
        if shrinking:
            self.cwnd = min(self.cwnd, initial_window(size))
        self.cwnd = max(self.cwnd, self.minimum_window)

    def on_packet_sent(self, size: int) -> None:
        """B.4 OnPacketSentCC: an in-flight packet of ``size`` bytes was sent."""
        flight = self.bytes_in_flight + size
        self.bytes_in_flight = flight
        self._peak_in_flight = max(self._peak_in_flight, flight)

    def on_packets_acked(self, packets: Iterable[SentPacketInfo], now: float) -> None:
        """B.5 OnPacketsAcked: remove from flight, then grow the window (§7.3)."""
        recovery_start = self._recovery_start
        round_start = self._round_start
        acked = 0
        growth = 0
        round_over = False
        for packet in packets:
            if not packet.in_flight:
                continue
            acked += packet.size
            sent_time = packet.sent_time
            if recovery_start is None or sent_time > recovery_start:
                growth += packet.size
            if round_start is None or sent_time >= round_start:
                round_over = True
        if not acked:
            return
        self.bytes_in_flight -= acked
        if growth and not self.app_limited:
            self._grow(growth)
        if round_over:
            self._last_round_peak = self._peak_in_flight
            self._peak_in_flight = self.bytes_in_flight
            self._round_start = now

    def _grow(self, acked: int) -> None:
        """Slow start up to ssthresh, then one datagram per window acknowledged."""
        if self.cwnd < self.ssthresh:
            room = self.ssthresh - self.cwnd
            step = acked if acked <= room else int(room)
            self.cwnd += step
            acked -= step
            if acked <= 0:
                return
        self._ca_acked += acked
        if self._ca_acked >= self.cwnd:
            windows = self._ca_acked // self.cwnd
            self._ca_acked -= windows * self.cwnd
            self.cwnd += windows * self.max_datagram_size

    def on_packets_lost(self, packets: Iterable[SentPacketInfo], now: float) -> None:
        """B.8 OnPacketsLost: remove from flight; a congestion event unless only MTU
        probes were lost (RFC 9000 §14.4)."""
        lost_bytes = 0
        last_loss: float | None = None
        for packet in packets:
            if not packet.in_flight:
                continue
            lost_bytes += packet.size
            if not packet.is_mtu_probe and (last_loss is None or packet.sent_time > last_loss):
                last_loss = packet.sent_time
        self.bytes_in_flight -= lost_bytes
        if last_loss is not None:
            self.on_congestion_event(last_loss, now)

    def on_congestion_event(self, sent_time: float, now: float) -> None:
        """B.6 OnCongestionEvent: loss or ECN-CE about a packet sent at ``sent_time``."""
        if self.in_recovery(sent_time):
            return
        self._recovery_start = now
        # a whole number of bytes, kept a float (math.inf until the first loss; mypyc)
        self.ssthresh = float(int(self.cwnd * LOSS_REDUCTION_FACTOR))
        self.cwnd = max(int(self.ssthresh), self.minimum_window)
        self._ca_acked = 0

    def on_persistent_congestion(self) -> None:
        """B.8 / §7.6.2: collapse the window to the minimum and leave recovery."""
        self.cwnd = self.minimum_window
        self._recovery_start = None
        self._ca_acked = 0

    def remove_from_flight(self, size: int) -> None:
        """B.9 RemoveFromBytesInFlight: packets of a discarded space (RFC 9002 §6.4)."""
        self.bytes_in_flight -= size

    def __repr__(self) -> str:
        return (
            f"NewReno(cwnd={self.cwnd}, ssthresh={self.ssthresh}, "
            f"bytes_in_flight={self.bytes_in_flight})"
        )
