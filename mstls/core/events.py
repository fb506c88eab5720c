"""Events the connection core reports to the layer above (drivers, tests).

Stream events are coalesced: several STREAM frames for one stream in one
datagram give one :class:`StreamDataAvailable`, so a driver wakes exactly the
waiters whose stream changed.  Data itself is not carried: it is read from the
stream (pull), which keeps memory bounded by flow control.
"""

from __future__ import annotations

import attrs

from .lifecycle import TerminationKind

__all__ = [
    "ConnectionTerminatedEvent",
    "DatagramsAvailable",
    "Event",
    "HandshakeCompletedEvent",
    "StopSendingReceived",
    "StreamAcknowledged",
    "StreamDataAvailable",
    "StreamOpened",
    "StreamReset",
    "StreamWritable",
    "StreamsAvailable",
]


@attrs.frozen
class HandshakeCompletedEvent:
    """The handshake completed (RFC 9001 §4.1.1) and is confirmed for the client
    once HANDSHAKE_DONE arrives."""

    alpn_protocol: str | None
    cipher_suite: int
    peer: object | None
    server_name: str | None
    #: Whether a session ticket was resumed (RFC 8446 §2.2).
    resumed: bool = False


@attrs.frozen
class StreamOpened:
    """The peer opened a stream (RFC 9000 §2.1); it can be accepted."""

    stream_id: int


@attrs.frozen
class StreamDataAvailable:
    """New in-order data, or the FIN, can be read from ``stream_id``."""

    stream_id: int


@attrs.frozen
class StreamReset:
    """The peer reset its sending part of ``stream_id`` (RESET_STREAM, RFC 9000 §19.4)."""

    stream_id: int
    error_code: int
    final_size: int


@attrs.frozen
class StopSendingReceived:
    """The peer asked us to stop sending on ``stream_id`` (STOP_SENDING, RFC 9000 §19.5)."""

    stream_id: int
    error_code: int


@attrs.frozen
class StreamWritable:
    """``stream_id`` can take more data (flow control credit or buffer space)."""

    stream_id: int


@attrs.frozen
class StreamAcknowledged:
    """Everything written to ``stream_id`` (and its FIN, if sent) was acknowledged."""

    stream_id: int


@attrs.frozen
class StreamsAvailable:
    """The peer raised its stream limit (MAX_STREAMS, RFC 9000 §19.11)."""

    bidirectional: bool


@attrs.frozen
class DatagramsAvailable:
    """Received datagrams wait to be read (RFC 9221 §5); emitted when the receive
    queue stops being empty (:mod:`mstls.core.datagrams`)."""


@attrs.frozen
class ConnectionTerminatedEvent:
    """The connection ended: who closed it, with which code and reason (RFC 9000 §10)."""

    error_code: int
    frame_type: int | None
    reason: str
    by_peer: bool
    is_application: bool
    #: Why it ended (the lifecycle table's termination kind).
    kind: TerminationKind = TerminationKind.CLOSE


Event = (
    HandshakeCompletedEvent
    | StreamOpened
    | StreamDataAvailable
    | StreamReset
    | StopSendingReceived
    | StreamWritable
    | StreamAcknowledged
    | StreamsAvailable
    | DatagramsAvailable
    | ConnectionTerminatedEvent
)
