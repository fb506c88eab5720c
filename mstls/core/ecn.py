"""ECN validation for the packets we send (RFC 9000 §13.4.2, RFC 9002 §7.1, §B.7).

Theory of operation
-------------------
A sender marks its packets ECT(0) only while the path is believed to carry ECN
(:attr:`EcnValidator.marking`).  It starts :data:`EcnState.TESTING`: the first
:data:`ECN_TESTING_PACKETS` packets are marked, then marking pauses
(``UNKNOWN``) until an ACK validates the path (``CAPABLE``).  Every ACK that
newly acknowledges marked packets is checked against the peer's counts
(§13.4.2.1): the counts must be present, never decrease, and the ECT(0) plus CE
increase must cover the newly acknowledged marked packets; anything else, or the
loss of every packet marked while testing, is ``FAILED`` and marking stops for
good.  An increase of the CE count is a congestion signal (RFC 9002 §7.1),
reported to the caller, which hands it to congestion control (once per
recovery period, :meth:`~mstls.core.congestion.NewReno.on_congestion_event`).

Counts are kept per packet number space (the peer counts per space, §13.4.1).
Nothing here reads a clock.
"""

from __future__ import annotations

from enum import Enum

from ..wire.frames import EcnCounts

__all__ = ["ECN_TESTING_PACKETS", "ECT0", "EcnState", "EcnValidator"]

#: RFC 9000 §13.4.2 / A.4: packets marked while testing before waiting for validation.
ECN_TESTING_PACKETS = 10
#: The ECT(0) codepoint (RFC 3168 §5), the only one we send.
ECT0 = 0b10
_SPACES = 3


class EcnState(Enum):
    """RFC 9000 Appendix A.4 states."""

    TESTING = "testing"
    UNKNOWN = "unknown"
    CAPABLE = "capable"
    FAILED = "failed"


class EcnValidator:
    """The sender's ECN state for one path; see the module documentation."""

    __slots__ = ("_counts", "_marked_lost", "_marked_sent", "_testing_sent", "ce_events", "state")

    def __init__(self, *, enabled: bool = True) -> None:
        self.state = EcnState.TESTING if enabled else EcnState.FAILED
        #: CE increases reported by the peer (statistics).
        self.ce_events = 0
        self._testing_sent = 0
        self._marked_sent = 0
        self._marked_lost = 0
        self._counts = [EcnCounts(0, 0, 0)] * _SPACES

    @property
    def marking(self) -> bool:
        """Whether the next packet is sent ECT(0)."""
        state = self.state
        return state is EcnState.CAPABLE or (
            state is EcnState.TESTING and self._testing_sent < ECN_TESTING_PACKETS
        )

    @property
    def marked_sent(self) -> int:
        """Packets sent marked ECT(0) so far."""
        return self._marked_sent

    def peer_counts(self, space: int) -> EcnCounts:
        """The latest counts the peer reported in ``space``."""
        return self._counts[space]

    def on_packet_sent(self, marked: bool) -> None:
        if not marked:
            return
        self._marked_sent += 1
        if self.state is EcnState.TESTING:
            self._testing_sent += 1
            if self._testing_sent >= ECN_TESTING_PACKETS:
                self.state = EcnState.UNKNOWN

    def on_marked_lost(self, count: int) -> None:
        """``count`` marked packets were declared lost; all of them lost while
        testing means the path drops marked packets (§13.4.2.1)."""
        self._marked_lost += count
        if self.state is EcnState.UNKNOWN and self._marked_lost >= self._marked_sent:
            self.state = EcnState.FAILED

    def on_ack(self, space: int, counts: EcnCounts | None, newly_marked: int) -> bool:
        """An ACK in ``space`` that advanced the largest acknowledged newly
        acknowledged ``newly_marked`` marked packets (older ACKs, possibly
        reordered, are not checked: §13.4.2.1).

        Untrusted input (the peer's counts).  Returns True when the CE count grew:
        a congestion signal for the caller (RFC 9002 §7.1).
        """
        if self.state is EcnState.FAILED:
            return False
        previous = self._counts[space]
        if counts is None:
            if newly_marked:
                self.state = EcnState.FAILED  # marked packets acknowledged without counts
            return False
        if counts.ect0 < previous.ect0 or counts.ect1 < previous.ect1 or counts.ce < previous.ce:
            self.state = EcnState.FAILED
            return False
        increase = (counts.ect0 - previous.ect0) + (counts.ce - previous.ce)
        if increase < newly_marked:
            self.state = EcnState.FAILED
            return False
        self._counts[space] = counts
        if newly_marked and self.state is not EcnState.CAPABLE:
            self.state = EcnState.CAPABLE
        if counts.ce > previous.ce:
            self.ce_events += 1
            return True
        return False
