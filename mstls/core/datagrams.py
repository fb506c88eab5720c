"""Unreliable datagrams (RFC 9221): the bounded send and receive queues of one connection.

Theory of operation
-------------------
Both transports share this: QUIC (DATAGRAM frames in 1-RTT packets) and QMux
(DATAGRAM frames in records, delivered reliably by TCP, draft-ietf-quic-qmux
§8.1).  The connection tells :class:`DatagramQueues` the largest payload the path
allows *now* (``max_payload``, computed from the peer's max_datagram_frame_size,
the packet or record size and the frame overhead); the queues do the rest:

* Sending.  :meth:`DatagramQueues.send` refuses, with an exception naming the
  cause, a payload above ``max_payload`` (:class:`DatagramTooLarge`), a full send
  queue (:class:`DatagramQueueFull`, never a silent drop or a wait) and a
  connection where either side did not enable the extension
  (:class:`DatagramsUnsupported`).  :meth:`DatagramQueues.write_frames` moves
  queued datagrams, whole and in order, into a packet or record: a frame is
  never split (§5), carries no retransmission record (§5: not retransmitted), and
  is ack-eliciting and congestion controlled like any frame of its packet.  A
  queued datagram that no longer fits the path (it shrank) is dropped and
  counted.
* Receiving (§3, §5).  A DATAGRAM frame when we did not advertise
  max_datagram_frame_size, or larger than what we advertised, is a
  PROTOCOL_VIOLATION.  Accepted payloads are copied into a queue bounded in count
  and in bytes (:data:`MAX_DATAGRAM_RECEIVE_BYTES`); beyond either bound the
  *oldest* is dropped and counted (receiving is unreliable, §5).  A
  :class:`~mstls.core.events.DatagramsAvailable` event is emitted when the queue
  goes from empty to non-empty, so a driver wakes receivers once per batch.
"""

from __future__ import annotations

from collections import deque

from ..codes import TransportErrorCode
from ..exceptions import (
    DatagramQueueFull,
    DatagramsUnsupported,
    DatagramTooLarge,
    ProtocolError,
)
from ..wire.buffer import encode_varint
from ..wire.datagram_frames import (
    DatagramFrame,
    datagram_frame_size,
    largest_datagram_payload,
)
from ..wire.frame_types import FrameType
from .events import DatagramsAvailable, Event
from .sending import FrameSink

__all__ = [
    "DATAGRAM_FRAME_TYPES",
    "DEFAULT_DATAGRAM_RECEIVE_QUEUE",
    "DEFAULT_DATAGRAM_SEND_QUEUE",
    "DEFAULT_MAX_DATAGRAM_FRAME_SIZE",
    "MAX_DATAGRAM_QUEUE",
    "MAX_DATAGRAM_RECEIVE_BYTES",
    "DatagramQueues",
    "validate_datagram_queue",
]

#: RFC 9221 §3: 65535 accepts any DATAGRAM frame that fits in a packet.
DEFAULT_MAX_DATAGRAM_FRAME_SIZE = 65535
#: Datagrams waiting to be sent, at most; beyond it ``send_datagram_frame`` raises.
DEFAULT_DATAGRAM_SEND_QUEUE = 128
#: Datagrams received and not yet read, at most; beyond it the oldest is dropped.
DEFAULT_DATAGRAM_RECEIVE_QUEUE = 256
#: Payload bytes received and not yet read, at most (whatever the count): the oldest
#: go first beyond it, so a connection's unread datagrams never hold more memory.
MAX_DATAGRAM_RECEIVE_BYTES = 1 << 20
#: Upper bound of both queue settings (memory: each entry is up to one packet).
MAX_DATAGRAM_QUEUE = 1 << 16


def validate_datagram_queue(name: str, value: int) -> None:
    """Raise ``ValueError`` unless ``value`` is a usable queue bound."""
    if not 1 <= value <= MAX_DATAGRAM_QUEUE:
        raise ValueError(f"{name} {value} outside 1..{MAX_DATAGRAM_QUEUE}")


def _violation(reason: str, frame_type: int) -> ProtocolError:
    return ProtocolError(
        reason, error_code=TransportErrorCode.PROTOCOL_VIOLATION, frame_type=frame_type
    )


class DatagramQueues:
    """The DATAGRAM state of one connection; see the module documentation."""

    __slots__ = (
        "_events",
        "_receive",
        "_receive_bytes",
        "_send",
        "dropped",
        "max_frame_size",
        "peer_max_frame_size",
        "receive_limit",
        "received",
        "send_limit",
        "sent",
    )

    def __init__(
        self, events: deque[Event], *, max_frame_size: int, send_limit: int, receive_limit: int
    ) -> None:
        #: What we advertise (0: the extension is off for this connection).
        self.max_frame_size = max_frame_size
        #: The peer's max_datagram_frame_size; ``None`` until its parameters arrive.
        self.peer_max_frame_size: int | None = None
        self.send_limit = send_limit
        self.receive_limit = receive_limit
        self._events = events
        self._send: deque[bytes] = deque()
        self._receive: deque[bytes] = deque()
        self._receive_bytes = 0
        #: Counters (statistics): frames sent, payloads accepted, payloads dropped.
        self.sent = 0
        self.received = 0
        self.dropped = 0

    # -- limits ---------------------------------------------------------------------------
    def set_peer_limit(self, value: int) -> None:
        """The peer's max_datagram_frame_size (RFC 9221 §3; 0: it does not accept any).
        Datagrams queued early (QMux, see :meth:`send`) that it rules out are
        dropped and counted."""
        self.peer_max_frame_size = value
        if not value and self._send:
            self.dropped += len(self._send)
            self._send.clear()

    def max_payload(self, room: int) -> int:
        """The largest payload that can be sent when a packet or record has ``room``
        bytes for frames; 0 when either side did not enable datagrams."""
        peer = self.peer_max_frame_size
        if not self.max_frame_size or not peer:
            return 0
        return largest_datagram_payload(min(peer, room))

    # -- sending --------------------------------------------------------------------------
    def send(
        self, data: bytes | bytearray | memoryview, max_payload: int, *, early: bool = False
    ) -> None:
        """Queue one datagram; raises instead of dropping or waiting (see module doc).

        ``early``: the peer's parameters may still be on their way (QMux: they
        follow the TLS handshake in a record); the datagram is queued against
        ``max_payload`` and, should the peer not accept datagrams or this size,
        dropped and counted when they arrive."""
        if not self.max_frame_size:
            raise DatagramsUnsupported(
                "datagrams are not enabled on this connection (configure datagrams=True)"
            )
        if self.peer_max_frame_size is None and not early:
            raise DatagramsUnsupported(
                "the peer's transport parameters have not arrived: wait for the handshake"
            )
        if self.peer_max_frame_size == 0:
            raise DatagramsUnsupported(
                "the peer does not accept datagrams (no max_datagram_frame_size, RFC 9221 §3)"
            )
        size = len(data)
        if size > max_payload:
            raise DatagramTooLarge(size, max_payload)
        if len(self._send) >= self.send_limit:
            raise DatagramQueueFull(self.send_limit)
        self._send.append(bytes(data))

    @property
    def has_data_to_send(self) -> bool:
        return bool(self._send)

    @property
    def queued(self) -> int:
        """Datagrams waiting to be sent."""
        return len(self._send)

    def write_frames(self, sink: FrameSink, max_payload: int) -> None:
        """Move queued datagrams, whole and in order, into ``sink`` while they fit."""
        queue = self._send
        while queue:
            data = queue[0]
            if len(data) > max_payload:
                queue.popleft()  # the path shrank below it: it can never be sent
                self.dropped += 1
                continue
            if datagram_frame_size(len(data)) > sink.remaining:
                return  # the next packet or record
            queue.popleft()
            sink.add_parts(b"\x31" + encode_varint(len(data)), data)  # no copy of data
            self.sent += 1

    def clear(self) -> None:
        """Forget every queued datagram (the connection ended)."""
        self._send.clear()

    # -- receiving ------------------------------------------------------------------------
    def on_frame(self, frame: DatagramFrame) -> None:
        """A DATAGRAM frame from the peer (untrusted input, RFC 9221 §3, §5)."""
        frame_type = frame.frame_type
        if not self.max_frame_size:
            raise _violation("DATAGRAM received but max_datagram_frame_size not sent", frame_type)
        length = len(frame.data)
        size = datagram_frame_size(length) if frame.has_length else 1 + length
        if size > self.max_frame_size:
            raise _violation(
                f"DATAGRAM frame of {size} bytes exceeds our max_datagram_frame_size "
                f"{self.max_frame_size}",
                frame_type,
            )
        queue = self._receive
        if not queue:
            self._events.append(DatagramsAvailable())
        queue.append(bytes(frame.data))
        self._receive_bytes += length
        self.received += 1
        while len(queue) > self.receive_limit or self._receive_bytes > MAX_DATAGRAM_RECEIVE_BYTES:
            self._receive_bytes -= len(queue.popleft())  # oldest first (§5)
            self.dropped += 1

    def receive(self) -> bytes | None:
        """The oldest received datagram not yet read, or ``None``."""
        if not self._receive:
            return None
        data = self._receive.popleft()
        self._receive_bytes -= len(data)
        return data

    def stats(self) -> dict[str, int]:
        """The counters as :class:`~mstls.stats.ConnectionStats` fields."""
        return {
            "datagrams_sent": self.sent,
            "datagrams_received": self.received,
            "datagrams_dropped": self.dropped,
        }

    @property
    def pending(self) -> int:
        """Received datagrams not yet read."""
        return len(self._receive)


#: The two DATAGRAM frame types (for handler tables).
DATAGRAM_FRAME_TYPES = (FrameType.DATAGRAM, FrameType.DATAGRAM_WITH_LENGTH)
