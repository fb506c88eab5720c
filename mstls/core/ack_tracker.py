"""Received packet numbers of one packet number space, and the ACK frames that report them.

Theory of operation
-------------------
One :class:`AckTracker` per packet number space (RFC 9000 §12.3).  It answers
three questions for the connection:

* *Is this packet a duplicate?* (§12.3: a duplicate is dropped before its frames
  are processed.)  Received numbers are kept in a :class:`RangeSet`, bounded by
  :data:`MAX_TRACKED_RANGES`: when it holds more ranges, the lowest is dropped
  and everything below the new *floor* counts as a duplicate — the minimum
  packet number of §13.2.3.
* *When must an ACK go out?* (§13.2.1, §13.2.2): Initial and Handshake
  ack-eliciting packets are acknowledged at once.  In the application space an
  ACK is due at once when more than ``ack_eliciting_threshold`` ack-eliciting
  packets arrived since the last ACK (default 1: every second packet), when the
  reordering test fires, when a CE mark arrives, after an IMMEDIATE_ACK, or for
  a packet whose only ack-eliciting frames are PINGs (``ping_only``: a
  keep-alive, a PTO or PMTU probe; its sender waits for nothing but the ACK,
  and answering at once saves the delayed-ACK timer, issue 11); else ``max_ack_delay`` after
  the first unacknowledged ack-eliciting packet.  The
  threshold and reordering settings follow draft-ietf-quic-ack-frequency §4, §6
  (their field values go straight into :meth:`AckTracker.set_ack_frequency`).
  :meth:`AckTracker.ack_deadline` returns that time; ``deadline <= now`` means send.
* *What does the ACK say?* :meth:`AckTracker.build_ack_frame` reports the
  highest :data:`MAX_ACK_RANGES` ranges above the *report floor*.  Once a packet
  carrying one of our ACK frames is acknowledged, the ranges up to that frame's
  Largest Acknowledged need not be reported again (§13.2.4): the report floor
  rises (see :meth:`AckTracker.ack_record`).  A late packet below the report
  floor lowers it again so it does get acknowledged.

ECN counts (§13.4.1) accumulate per space for non-duplicate packets and are sent
once any is non-zero.  ACK Delay is reported in the application space only
(RFC 9000 §19.3: a sender sends 0 in Initial and Handshake packets).
Every operation costs O(log ranges); nothing reads a clock.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from ..wire.frames import AckFrame, EcnCounts
from .rangeset import RangeSet
from .recovery import PacketNumberSpace
from .sending import SentRecord

__all__ = [
    "DEFAULT_ACK_ELICITING_THRESHOLD",
    "DEFAULT_REORDERING_THRESHOLD",
    "MAX_ACK_RANGES",
    "MAX_TRACKED_RANGES",
    "AckTracker",
    "EcnCodepoint",
]

#: Ranges in one ACK frame; lower ones are left out (RFC 9000 §13.2.3 allows it).
MAX_ACK_RANGES = 32
#: Ranges kept for duplicate detection before the lowest is forgotten (§13.2.3).
MAX_TRACKED_RANGES = 256
#: draft-ietf-quic-ack-frequency §4: ACK after more than this many ack-eliciting
#: packets; 1 is RFC 9000 §13.2.2's "at least every second packet".
DEFAULT_ACK_ELICITING_THRESHOLD = 1
#: draft-ietf-quic-ack-frequency §4: 1 is RFC 9000 §13.2.1 (ACK any reordering at
#: once), 0 ignores reordering, N > 1 tolerates N - 1 packets of reordering.
DEFAULT_REORDERING_THRESHOLD = 1
_MICROSECONDS = 1_000_000
_ECT0, _ECT1, _CE = 0b10, 0b01, 0b11


class EcnCodepoint(IntEnum):
    """The ECN field of the IP header (RFC 3168 §5)."""

    NOT_ECT = 0b00
    ECT1 = 0b01
    ECT0 = 0b10
    CE = 0b11


def _ignore(*_: Any) -> None:
    """on_lost of an ACK frame: a lost ACK is never resent as such (RFC 9000 §13.3)."""


class AckTracker:
    """Received packet numbers and ACK scheduling for one packet number space."""

    __slots__ = (
        "_ce_previous",
        "_delayed",
        "_ecn",
        "_first_unacked_time",
        "_floor",
        "_immediate_time",
        "_largest_ack_eliciting",
        "_last_ack_largest",
        "_new_packets",
        "_received",
        "_report_floor",
        "_unacked_eliciting",
        "ack_eliciting_threshold",
        "largest_received",
        "largest_received_time",
        "reordering_threshold",
        "space",
    )

    def __init__(
        self,
        space: PacketNumberSpace,
        *,
        ack_eliciting_threshold: int = DEFAULT_ACK_ELICITING_THRESHOLD,
        reordering_threshold: int = DEFAULT_REORDERING_THRESHOLD,
    ) -> None:
        self.space = space
        self._delayed = space == PacketNumberSpace.APPLICATION
        self.ack_eliciting_threshold = ack_eliciting_threshold
        self.reordering_threshold = reordering_threshold
        #: Largest packet number processed (-1: none), for packet number decoding
        #: (RFC 9000 §17.1) and for the ACK frame.
        self.largest_received = -1
        self.largest_received_time = 0.0
        self._received = RangeSet()
        self._floor = 0
        self._report_floor = 0
        self._largest_ack_eliciting = -1
        self._last_ack_largest = -1
        self._unacked_eliciting = 0
        self._first_unacked_time: float | None = None
        self._immediate_time: float | None = None
        self._new_packets = False
        self._ecn = [0, 0, 0, 0]  # indexed by EcnCodepoint
        self._ce_previous = False

    # -- receiving -------------------------------------------------------------------
    def is_duplicate(self, packet_number: int) -> bool:
        """True for a packet already processed or below what is still tracked."""
        return packet_number < self._floor or packet_number in self._received

    def on_packet_received(
        self,
        packet_number: int,
        ack_eliciting: bool,
        now: float,
        ecn: int | None = None,
        *,
        ping_only: bool = False,
    ) -> bool:
        """Record an authenticated packet; ``False`` means a duplicate (drop it).

        ``ping_only``: its only ack-eliciting frames were PINGs (ACK and PADDING
        may be there too), so it is acknowledged at once (RFC 9000 §13.2.1 allows
        any ACK sooner than ``max_ack_delay``)."""
        received = self._received
        if packet_number < self._floor or packet_number in received:
            return False
        received.add(packet_number)
        if len(received) > MAX_TRACKED_RANGES:
            self._floor = received.shift()[1]
        self._report_floor = min(self._report_floor, packet_number)
        if packet_number > self.largest_received:
            self.largest_received = packet_number
            self.largest_received_time = now
        self._new_packets = True
        ce = False
        if ecn is not None:
            self._ecn[ecn & 0b11] += 1
            ce = ecn == _CE
        if ack_eliciting:
            self._on_ack_eliciting(packet_number, now, ce, ping_only)
        self._ce_previous = ce
        return True

    def _on_ack_eliciting(
        self, packet_number: int, now: float, ce: bool, ping_only: bool = False
    ) -> None:
        self._unacked_eliciting += 1
        if self._first_unacked_time is None:
            self._first_unacked_time = now
        immediate = (
            not self._delayed
            or ping_only
            or self._unacked_eliciting > self.ack_eliciting_threshold
            or self._reordered(packet_number)
            or (ce and (self.ack_eliciting_threshold <= 1 or not self._ce_previous))
        )
        self._largest_ack_eliciting = max(self._largest_ack_eliciting, packet_number)
        if immediate and self._immediate_time is None:
            self._immediate_time = now

    def _reordered(self, packet_number: int) -> bool:
        """RFC 9000 §13.2.1 (threshold 1) or draft-ietf-quic-ack-frequency §6.2 (> 1)."""
        threshold = self.reordering_threshold
        if threshold == 0:
            return False
        largest = self._largest_ack_eliciting
        if threshold == 1:
            if packet_number < largest:
                return True
            return packet_number > largest + 1 and not self._received.covers(
                largest + 1, packet_number
            )
        largest_unacked = max(largest, packet_number)
        reported = max(self._last_ack_largest - threshold + 1, self._floor, 0)
        missing = self._smallest_missing(reported)
        return missing < largest_unacked and largest_unacked - missing >= threshold

    def _smallest_missing(self, start: int) -> int:
        """The smallest packet number >= ``start`` not received."""
        for low, high in self._received.descending():
            if low <= start:
                return high if start < high else start
        return start

    def request_immediate_ack(self, now: float) -> None:
        """An IMMEDIATE_ACK frame arrived (draft-ietf-quic-ack-frequency §5)."""
        if self._immediate_time is None:
            self._immediate_time = now

    def set_ack_frequency(self, ack_eliciting_threshold: int, reordering_threshold: int) -> None:
        """Apply an ACK_FREQUENCY frame's thresholds (draft-ietf-quic-ack-frequency §4).

        The requested max_ack_delay is the caller's: it passes it to :meth:`ack_deadline`.
        """
        self.ack_eliciting_threshold = ack_eliciting_threshold
        self.reordering_threshold = reordering_threshold

    # -- scheduling ------------------------------------------------------------------
    @property
    def ack_needed(self) -> bool:
        """An ack-eliciting packet awaits acknowledgement (RFC 9000 §13.2.1)."""
        return self._unacked_eliciting > 0

    @property
    def has_new_packets(self) -> bool:
        """Packets arrived since the last ACK sent: worth bundling an ACK into any packet."""
        return self._new_packets

    def ack_deadline(self, max_ack_delay: float) -> float | None:
        """When an ACK must be sent (``<= now``: at once), or ``None`` if none is owed."""
        if not self._unacked_eliciting:
            return None
        if self._immediate_time is not None:
            return self._immediate_time
        assert self._first_unacked_time is not None
        return self._first_unacked_time + max_ack_delay

    # -- sending ---------------------------------------------------------------------
    def build_ack_frame(self, now: float, ack_delay_exponent: int) -> AckFrame | None:
        """The ACK frame to send now, or ``None`` if there is nothing to report."""
        floor = self._report_floor
        ranges: list[tuple[int, int]] = []
        for start, stop in self._received.descending():
            if stop <= floor:
                break
            ranges.append((start if start >= floor else floor, stop - 1))
            if len(ranges) >= MAX_ACK_RANGES:
                break
        if not ranges:
            return None
        delay = 0
        if self._delayed:
            elapsed = int((now - self.largest_received_time) * _MICROSECONDS)
            delay = max(0, elapsed) >> ack_delay_exponent
        ecn = self._ecn
        counts = None
        if ecn[_ECT0] or ecn[_ECT1] or ecn[_CE]:
            counts = EcnCounts(ecn[_ECT0], ecn[_ECT1], ecn[_CE])
        return AckFrame(ranges, delay, counts)

    def on_ack_sent(self, now: float, largest: int) -> None:
        """An ACK frame whose Largest Acknowledged is ``largest`` was sent: the delay
        timer and the ack-eliciting count restart (RFC 9000 §13.2.1)."""
        self._unacked_eliciting = 0
        self._first_unacked_time = None
        self._immediate_time = None
        self._new_packets = False
        self._last_ack_largest = max(self._last_ack_largest, largest)

    def on_ack_acknowledged(self, largest: int) -> None:
        """A packet carrying our ACK up to ``largest`` was acknowledged (RFC 9000 §13.2.4)."""
        self._report_floor = max(self._report_floor, largest + 1)

    def ack_record(self, largest: int) -> SentRecord:
        """The :data:`SentRecord` for an ACK frame whose Largest Acknowledged is ``largest``."""
        return (self.on_ack_acknowledged, _ignore, (largest,))

    @property
    def ecn_counts(self) -> EcnCounts:
        ecn = self._ecn
        return EcnCounts(ecn[_ECT0], ecn[_ECT1], ecn[_CE])

    @property
    def received(self) -> RangeSet:
        """Packet numbers tracked for duplicate detection (read-only view; do not mutate)."""
        return self._received

    def __repr__(self) -> str:
        return (
            f"AckTracker({self.space.name}, largest={self.largest_received}, "
            f"ranges={len(self._received)}, unacked_eliciting={self._unacked_eliciting})"
        )
