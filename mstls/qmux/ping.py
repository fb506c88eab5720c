"""QX_PING requests and responses (draft-ietf-quic-qmux-02 §4.3).

Rules kept here:

* Our requests carry strictly increasing sequence numbers (0, 1, 2, ...).
  Requests asked for before the previous one went out are merged: only the
  newest is sent.
* A peer request whose sequence number is not above the previous request's is
  a PROTOCOL_VIOLATION.  Requests received before we could answer get one
  response carrying the largest sequence number (the MAY of §4.3).
* A response with a sequence number above the largest request we sent is a
  PROTOCOL_VIOLATION.  Since we send every number up to that one (merged
  requests aside) we do not try to detect "a number we did not send".
* A response to our newest request is an RTT sample, fed to the RFC 9002 §5
  estimator (there is no ACK delay to subtract: a peer answers as soon as it
  writes).  Responses to merged or older requests are not timed.

Handles untrusted input (the sequence numbers come from the peer).
"""

from __future__ import annotations

from ..codes import TransportErrorCode
from ..core.rtt import RttEstimator
from ..exceptions import ProtocolError
from ..wire.frames import encode_frame
from ..wire.qmux import QMuxFrameType, QxPingFrame

__all__ = ["PingState"]


class PingState:
    """Our QX_PING sequence numbers, the peer's, and what is waiting to be sent."""

    __slots__ = (
        "_pending_request",
        "_request_sent_at",
        "largest_acknowledged",
        "largest_received",
        "largest_sent",
        "latest_rtt",
        "next_sequence",
        "response_pending",
        "rtt",
        "samples",
    )

    def __init__(self) -> None:
        self.next_sequence = 0
        #: Largest sequence number sent in a request / answered by the peer (-1: none).
        self.largest_sent = -1
        self.largest_acknowledged = -1
        #: Largest sequence number received in a peer request (-1: none).
        self.largest_received = -1
        self.response_pending = False
        #: Round-trip time measured by the latest answered request, in seconds.
        self.latest_rtt: float | None = None
        #: Smoothed, minimum and variation of the RTT samples (RFC 9002 §5).
        self.rtt = RttEstimator()
        #: Round trips measured.
        self.samples = 0
        self._pending_request: int | None = None
        self._request_sent_at: tuple[int, float] | None = None

    @property
    def has_pending(self) -> bool:
        return self.response_pending or self._pending_request is not None

    @property
    def outstanding(self) -> bool:
        """A request was sent (or queued) and its response has not arrived."""
        return self._pending_request is not None or self.largest_acknowledged < self.largest_sent

    def request(self) -> int:
        """Queue a request; returns its sequence number."""
        sequence = self.next_sequence
        self.next_sequence += 1
        self._pending_request = sequence
        return sequence

    def pending_frames(self, now: float) -> bytes:
        """Encoded frames to send now (a response, then a request); marks them sent."""
        out = b""
        if self.response_pending:
            self.response_pending = False
            out = encode_frame(QxPingFrame(self.largest_received, response=True))
        sequence = self._pending_request
        if sequence is not None:
            self._pending_request = None
            self.largest_sent = sequence
            self._request_sent_at = (sequence, now)
            out += encode_frame(QxPingFrame(sequence))
        return out

    def on_frame(self, frame: QxPingFrame, now: float) -> None:
        """A QX_PING from the peer (untrusted input)."""
        sequence = frame.sequence_number
        if not frame.response:
            if sequence <= self.largest_received:
                raise ProtocolError(
                    f"QX_PING request {sequence} does not follow {self.largest_received}",
                    error_code=TransportErrorCode.PROTOCOL_VIOLATION,
                    frame_type=QMuxFrameType.QX_PING_REQUEST,
                )
            self.largest_received = sequence
            self.response_pending = True
            return
        if sequence > self.largest_sent:
            raise ProtocolError(
                f"QX_PING response {sequence} to a request never sent "
                f"(largest sent: {self.largest_sent})",
                error_code=TransportErrorCode.PROTOCOL_VIOLATION,
                frame_type=QMuxFrameType.QX_PING_RESPONSE,
            )
        self.largest_acknowledged = max(self.largest_acknowledged, sequence)
        sent = self._request_sent_at
        if sent is not None and sent[0] == sequence:
            sample = now - sent[1]
            self.latest_rtt = sample
            self.rtt.update(sample, 0.0, now, max_ack_delay=None)
            self.samples += 1
            self._request_sent_at = None
