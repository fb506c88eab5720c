"""Streams (RFC 9000 §2-§3): stream IDs, the stream container, and the public names.

Theory of operation
-------------------
A stream is a sending part and/or a receiving part; a unidirectional stream
has only one (§2.1).  The pieces live in modules of one concern each, all
re-exported here:

* :mod:`mstls.core.stream_states` — the §3.1 and §3.2 state machines as
  tables beside the RFC's diagrams, and :func:`transition`;
* :mod:`mstls.core.send_stream` — :class:`SendStream`: the bounded, zero-copy
  send buffer, retransmission of lost ranges, FIN, RESET_STREAM, the peer's
  credit;
* :mod:`mstls.core.recv_stream` — :class:`RecvStream`: reassembly bounded by
  our window, final-size rules, RESET_STREAM and STOP_SENDING, window updates;
* :mod:`mstls.core.flow_control` — the windows both levels share;
* :mod:`mstls.core.stream_manager` — every stream of a connection (QUIC or QMux).

This module adds the stream ID arithmetic of §2.1 and :class:`Stream`, which
pairs the two parts; a stream can be forgotten once both are terminal (§3.3).
"""

from __future__ import annotations

from .recv_stream import MAX_RECV_GAPS, RecvStream
from .send_stream import (
    COALESCE_LIMIT,
    DEFAULT_SEND_BUFFER,
    NO_ROOM,
    SMALL_WRITE,
    SendListener,
    SendStream,
)
from .stream_states import (
    PEER_EVENTS,
    RECV_TERMINAL,
    RECV_TRANSITIONS,
    SEND_TERMINAL,
    SEND_TRANSITIONS,
    RecvEvent,
    RecvState,
    SendEvent,
    SendState,
    transition,
)

__all__ = [
    "COALESCE_LIMIT",
    "DEFAULT_SEND_BUFFER",
    "MAX_RECV_GAPS",
    "NO_ROOM",
    "PEER_EVENTS",
    "RECV_TERMINAL",
    "RECV_TRANSITIONS",
    "SEND_TERMINAL",
    "SEND_TRANSITIONS",
    "SMALL_WRITE",
    "RecvEvent",
    "RecvState",
    "RecvStream",
    "SendEvent",
    "SendListener",
    "SendState",
    "SendStream",
    "Stream",
    "is_bidirectional",
    "is_client_initiated",
    "is_local",
    "make_stream_id",
    "stream_index",
    "transition",
]


# -- stream IDs (§2.1) ----------------------------------------------------------------
def is_client_initiated(stream_id: int) -> bool:
    """Bit 0x01 clear: opened by the client (RFC 9000 §2.1)."""
    return not stream_id & 1


def is_bidirectional(stream_id: int) -> bool:
    """Bit 0x02 clear: bidirectional (RFC 9000 §2.1)."""
    return not stream_id & 2


def is_local(stream_id: int, is_client: bool) -> bool:
    """True when the endpoint whose role is ``is_client`` opened ``stream_id``."""
    return (not stream_id & 1) == is_client


def stream_index(stream_id: int) -> int:
    """The stream's sequence number within its type (stream count minus one)."""
    return stream_id >> 2


def make_stream_id(index: int, *, client: bool, bidirectional: bool) -> int:
    """The ID of the ``index``-th stream of a type (RFC 9000 §2.1)."""
    return index << 2 | (0 if client else 1) | (0 if bidirectional else 2)


class Stream:
    """One stream: its sending and/or receiving part (unidirectional streams have one)."""

    __slots__ = ("recv", "send", "stream_id")

    def __init__(self, stream_id: int, send: SendStream | None, recv: RecvStream | None) -> None:
        self.stream_id = stream_id
        self.send = send
        self.recv = recv

    def __repr__(self) -> str:
        return f"<Stream {self.stream_id} send={self.send!r} recv={self.recv!r}>"

    @property
    def is_terminal(self) -> bool:
        """Both parts reached a terminal state (RFC 9000 §3.3): the stream can be forgotten."""
        send, recv = self.send, self.recv
        return (send is None or send.state in SEND_TERMINAL) and (
            recv is None or recv.state in RECV_TERMINAL
        )
