"""What a lost control frame of the connection's own sets in motion, kept apart from it.

A packet in flight carries a record callback per frame, called when the packet is
acknowledged or declared lost (RFC 9002 §6; :mod:`mstls.quic.builder`).  When the
callback is a method of the connection, the connection refers to itself through
its recovery state (connection -> recovery -> packet -> method -> connection), and
a connection dropped with such a packet in flight waits for the cyclic collector,
which runs rarely once a daemon's heap is large (issue 11: the soak's RSS slope;
an Initial flood's timed-out handshakes).  So these callbacks are methods of the
small objects below, which the connection owns and which hold nothing of it.
"""

from __future__ import annotations

from ..core.congestion import NewReno
from .mtu import PathMtu

__all__ = ["ControlFrames", "MtuProbeOutcome"]


class ControlFrames:
    """Single control frames waiting to be sent, again when lost (RFC 9000 §13.3)."""

    __slots__ = ("ack_frequency_pending", "handshake_done_pending")

    def __init__(self) -> None:
        #: HANDSHAKE_DONE (RFC 9000 §19.20; server only).
        self.handshake_done_pending = False
        #: ACK_FREQUENCY (draft-ietf-quic-ack-frequency §4): the newest one is sent again.
        self.ack_frequency_pending = False

    def resend_handshake_done(self) -> None:
        self.handshake_done_pending = True

    def resend_ack_frequency(self) -> None:
        self.ack_frequency_pending = True


class MtuProbeOutcome:
    """An MTU probe's result, for the path it was sent on (RFC 8899 §5.2, RFC 9000 §14.3)."""

    __slots__ = ("congestion", "mtu")

    def __init__(self, mtu: PathMtu, congestion: NewReno) -> None:
        self.mtu = mtu
        self.congestion = congestion

    def acked(self, size: int, sent: float) -> None:
        if self.mtu.on_probe_acked(size, sent):
            self.congestion.set_max_datagram_size(size)

    def lost(self, size: int, sent: float) -> None:
        self.mtu.on_probe_lost(size, sent)
