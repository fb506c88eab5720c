"""Stream IDs and the two halves of a QUIC stream (RFC 9000 §2-§3).

Theory of operation
-------------------
A stream is a sending part (:class:`SendStream`) and/or a receiving part
(:class:`RecvStream`); a unidirectional stream has only one (§2.1).  Each part
is an explicit state machine whose transitions are *data*:
:data:`SEND_TRANSITIONS` and :data:`RECV_TRANSITIONS` map ``(state, event)`` to
the next state, transcribed from the RFC's diagrams printed beside them.  A
pair missing from a table is refused: an event the peer caused becomes a
STREAM_STATE_ERROR :class:`~mstls.exceptions.ProtocolError` (with the frame
type), a local one a :class:`~mstls.exceptions.StreamStateError`.

Sending part.  Application data is kept as a list of chunks (``bytes`` given
by the application are kept without copying; small writes are coalesced into
one ``bytearray`` that is sealed the first time a frame refers to it), indexed
by their end offsets, so a frame's payload is a ``memoryview`` slice of one
chunk (a join only when a frame spans chunks).  Acknowledged chunks are
dropped from the front.  The buffer is bounded (``buffer_size``): ``write``
takes what fits and says how much, so the layer above can block.  Lost ranges
go to a retransmission :class:`~mstls.core.rangeset.RangeSet` and are resent
before new data; an acknowledgement also removes its range from it.  State is
always updated *before* a frame is handed to the sink, because a QMux sink
acknowledges frames during ``add``.

Receiving part.  Data lives in one ``bytearray`` that starts at the first
unread offset; out-of-order data is written at its place (gaps zero-filled)
and its ranges kept in a RangeSet, so nothing is copied twice and memory is
bounded by our flow-control window (the peer cannot send beyond it).  The
number of gaps is bounded too (:data:`MAX_RECV_GAPS`).  Final-size rules are
§4.5.  A RESET_STREAM discards unread data (§3.2: what was read stays read).

The owner (the stream manager) is told about sending progress through a
:class:`SendListener`; receive-side news is left in :attr:`RecvStream.notify`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from enum import Enum
from typing import Protocol, TypeVar

from ..codes import TransportErrorCode
from ..exceptions import (
    ProtocolError,
    StreamResetError,
    StreamStateError,
    StreamStoppedError,
)
from ..wire.buffer import encode_varint
from ..wire.frame_types import FrameType
from ..wire.frames import ResetStreamFrame, stream_frame_capacity, stream_frame_overhead
from .flow_control import ReceiveWindow, SendCredit
from .rangeset import RangeSet
from .sending import FrameSink

__all__ = [
    "DEFAULT_SEND_BUFFER",
    "MAX_RECV_GAPS",
    "NO_ROOM",
    "RECV_TRANSITIONS",
    "SEND_TRANSITIONS",
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
]

Buffer = bytes | bytearray | memoryview

#: Bytes an application may have written and not yet seen acknowledged, per stream.
DEFAULT_SEND_BUFFER = 1 << 20
#: Writes smaller than this are coalesced into a shared chunk (fewer, larger frames).
SMALL_WRITE = 4096
#: A coalescing chunk is sealed at this size.
COALESCE_LIMIT = 64 * 1024
#: Dropped-chunk slots are compacted away past this many.
_COMPACT_AFTER = 64
#: Out-of-order ranges kept per receiving stream before giving up (RFC 9000 §21.7).
MAX_RECV_GAPS = 1024
#: ``write_new`` / ``write_retransmission`` result: the frame did not fit in the sink.
NO_ROOM = -1


#: STREAM frame type bytes with the LEN bit, by [OFF bit][FIN bit] (RFC 9000 §19.8).
_STREAM_TYPES = ((b"\x0a", b"\x0b"), (b"\x0e", b"\x0f"))


def _capacity(room: int) -> int:
    """Data bytes that fit in ``room`` bytes left after type, ID and offset: the
    Length field (a varint, RFC 9000 §16) takes the rest."""
    if room <= 0x40:
        return room - 1
    if room <= 0x4000 + 1:
        return room - 2
    if room <= 0x40000000 + 3:
        return room - 4
    return room - 8


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


# -- state tables ------------------------------------------------------------------------
class SendState(Enum):
    """States of a sending part (RFC 9000 §3.1)."""

    READY = "Ready"
    SEND = "Send"
    DATA_SENT = "Data Sent"
    DATA_RECVD = "Data Recvd"
    RESET_SENT = "Reset Sent"
    RESET_RECVD = "Reset Recvd"


class SendEvent(Enum):
    """What moves a sending part (RFC 9000 §3.1, Figure 2)."""

    SEND_DATA = "Send STREAM / STREAM_DATA_BLOCKED"
    SEND_FIN = "Send STREAM + FIN"
    SEND_RESET = "Send RESET_STREAM"
    RECV_ALL_ACKS = "Recv All ACKs"
    RECV_RESET_ACK = "Recv ACK (of RESET_STREAM)"


#        o
#        | Create Stream (Sending)
#        | Peer Creates Bidirectional Stream
#        v
#    +-------+
#    | Ready | Send RESET_STREAM
#    |       |-----------------------.
#    +-------+                       |
#        |                           |
#        | Send STREAM /             |
#        |      STREAM_DATA_BLOCKED  |
#        v                           |
#    +-------+                       |
#    | Send  | Send RESET_STREAM     |
#    |       |---------------------->|
#    +-------+                       |
#        |                           |
#        | Send STREAM + FIN         |
#        v                           v
#    +-------+                   +-------+
#    | Data  | Send RESET_STREAM | Reset |
#    | Sent  |------------------>| Sent  |
#    +-------+                   +-------+
#        |                           |
#        | Recv All ACKs             | Recv ACK
#        v                           v
#    +-------+                   +-------+
#    | Data  |                   | Reset |
#    | Recvd |                   | Recvd |
#    +-------+                   +-------+
#
# Self-loops: retransmissions (of data, of the FIN, of RESET_STREAM) and a duplicate
# acknowledgement of RESET_STREAM.  The RESET_STREAM transition is taken when the
# reset is decided; the frame itself is queued and resent until acknowledged.
_S, _SE = SendState, SendEvent
SEND_TRANSITIONS: Mapping[tuple[SendState, SendEvent], SendState] = {
    (_S.READY, _SE.SEND_DATA): _S.SEND,
    (_S.READY, _SE.SEND_FIN): _S.DATA_SENT,
    (_S.READY, _SE.SEND_RESET): _S.RESET_SENT,
    (_S.SEND, _SE.SEND_DATA): _S.SEND,
    (_S.SEND, _SE.SEND_FIN): _S.DATA_SENT,
    (_S.SEND, _SE.SEND_RESET): _S.RESET_SENT,
    (_S.DATA_SENT, _SE.SEND_DATA): _S.DATA_SENT,
    (_S.DATA_SENT, _SE.SEND_FIN): _S.DATA_SENT,
    (_S.DATA_SENT, _SE.SEND_RESET): _S.RESET_SENT,
    (_S.DATA_SENT, _SE.RECV_ALL_ACKS): _S.DATA_RECVD,
    (_S.RESET_SENT, _SE.SEND_RESET): _S.RESET_SENT,
    (_S.RESET_SENT, _SE.RECV_RESET_ACK): _S.RESET_RECVD,
    (_S.RESET_RECVD, _SE.RECV_RESET_ACK): _S.RESET_RECVD,
}
SEND_TERMINAL = frozenset({_S.DATA_RECVD, _S.RESET_RECVD})


class RecvState(Enum):
    """States of a receiving part (RFC 9000 §3.2)."""

    RECV = "Recv"
    SIZE_KNOWN = "Size Known"
    DATA_RECVD = "Data Recvd"
    DATA_READ = "Data Read"
    RESET_RECVD = "Reset Recvd"
    RESET_READ = "Reset Read"


class RecvEvent(Enum):
    """What moves a receiving part (RFC 9000 §3.2, Figure 3)."""

    RECV_DATA = "Recv STREAM"
    RECV_FIN = "Recv STREAM + FIN"
    RECV_ALL_DATA = "Recv All Data"
    RECV_RESET = "Recv RESET_STREAM"
    APP_READ_ALL = "App Read All Data"
    APP_READ_RESET = "App Read Reset"


#        o
#        | Recv STREAM / STREAM_DATA_BLOCKED / RESET_STREAM
#        | Create Bidirectional Stream (Sending)
#        | Recv MAX_STREAM_DATA / STOP_SENDING (Bidirectional)
#        | Create Higher-Numbered Stream
#        v
#    +-------+
#    | Recv  | Recv RESET_STREAM
#    |       |-----------------------.
#    +-------+                       |
#        |                           |
#        | Recv STREAM + FIN         |
#        v                           |
#    +-------+                       |
#    | Size  | Recv RESET_STREAM     |
#    | Known |---------------------->|
#    +-------+                       |
#        |                           |
#        | Recv All Data             |
#        v                           v
#    +-------+ Recv RESET_STREAM +-------+
#    | Data  |--- (optional) --->| Reset |
#    | Recvd |  Recv All Data    | Recvd |
#    +-------+<-- (optional) ----+-------+
#        |                           |
#        | App Read All Data         | App Read Reset
#        v                           v
#    +-------+                   +-------+
#    | Data  |                   | Reset |
#    | Read  |                   | Read  |
#    +-------+                   +-------+
#
# "Recv STREAM" without FIN never changes the state, so the per-frame hot path does
# not look it up; the sweep in the tests checks that every state allows it.
# Peer frames after the size is known are duplicates or late retransmissions:
# self-loops (their final size is still checked, §4.5).  Of the two optional
# transitions we take neither: once all data is received it is delivered.
_R, _RE = RecvState, RecvEvent
RECV_TRANSITIONS: Mapping[tuple[RecvState, RecvEvent], RecvState] = {
    (_R.RECV, _RE.RECV_DATA): _R.RECV,
    (_R.RECV, _RE.RECV_FIN): _R.SIZE_KNOWN,
    (_R.RECV, _RE.RECV_RESET): _R.RESET_RECVD,
    (_R.SIZE_KNOWN, _RE.RECV_DATA): _R.SIZE_KNOWN,
    (_R.SIZE_KNOWN, _RE.RECV_FIN): _R.SIZE_KNOWN,
    (_R.SIZE_KNOWN, _RE.RECV_ALL_DATA): _R.DATA_RECVD,
    (_R.SIZE_KNOWN, _RE.RECV_RESET): _R.RESET_RECVD,
    (_R.DATA_RECVD, _RE.RECV_DATA): _R.DATA_RECVD,
    (_R.DATA_RECVD, _RE.RECV_FIN): _R.DATA_RECVD,
    (_R.DATA_RECVD, _RE.RECV_RESET): _R.DATA_RECVD,
    (_R.DATA_RECVD, _RE.APP_READ_ALL): _R.DATA_READ,
    (_R.RESET_RECVD, _RE.RECV_DATA): _R.RESET_RECVD,
    (_R.RESET_RECVD, _RE.RECV_FIN): _R.RESET_RECVD,
    (_R.RESET_RECVD, _RE.RECV_RESET): _R.RESET_RECVD,
    (_R.RESET_RECVD, _RE.APP_READ_RESET): _R.RESET_READ,
    (_R.DATA_READ, _RE.RECV_DATA): _R.DATA_READ,
    (_R.DATA_READ, _RE.RECV_FIN): _R.DATA_READ,
    (_R.DATA_READ, _RE.RECV_RESET): _R.DATA_READ,
    (_R.RESET_READ, _RE.RECV_DATA): _R.RESET_READ,
    (_R.RESET_READ, _RE.RECV_FIN): _R.RESET_READ,
    (_R.RESET_READ, _RE.RECV_RESET): _R.RESET_READ,
}
RECV_TERMINAL = frozenset({_R.DATA_READ, _R.RESET_READ})

#: Events caused by a peer's frame (a refusal is a connection error).
PEER_EVENTS: frozenset[Enum] = frozenset(
    {_RE.RECV_DATA, _RE.RECV_FIN, _RE.RECV_RESET, _SE.RECV_ALL_ACKS, _SE.RECV_RESET_ACK}
)
#: Frame type named in a refusal of a peer event.
_EVENT_FRAME_TYPES: Mapping[Enum, int] = {
    _RE.RECV_DATA: FrameType.STREAM,
    _RE.RECV_FIN: FrameType.STREAM | 1,
    _RE.RECV_RESET: FrameType.RESET_STREAM,
    _SE.RECV_ALL_ACKS: FrameType.ACK,
    _SE.RECV_RESET_ACK: FrameType.ACK,
}

StateT = TypeVar("StateT", SendState, RecvState)
EventT = TypeVar("EventT", SendEvent, RecvEvent)


def transition(
    table: Mapping[tuple[StateT, EventT], StateT],
    state: StateT,
    event: EventT,
    stream_id: int = -1,
    frame_type: int | None = None,
) -> StateT:
    """Look ``(state, event)`` up in ``table``; a missing pair is refused.

    A peer event is a STREAM_STATE_ERROR (RFC 9000 §3) naming ``frame_type``;
    a local one a :class:`StreamStateError`.
    """
    new_state = table.get((state, event))
    if new_state is not None:
        return new_state
    reason = f"stream {stream_id}: {event.value!r} not allowed in state {state.value!r}"
    if event in PEER_EVENTS:
        raise ProtocolError(
            reason,
            error_code=TransportErrorCode.STREAM_STATE_ERROR,
            frame_type=_EVENT_FRAME_TYPES[event] if frame_type is None else frame_type,
        )
    raise StreamStateError(reason, stream_id=stream_id)


# -- sending part --------------------------------------------------------------------------
class SendListener(Protocol):
    """Who is told about a sending part's progress (the stream manager)."""

    def on_send_lost(self, stream: SendStream) -> None:
        """Data or the FIN was lost: ``stream`` has something to retransmit."""

    def on_send_progress(self, stream: SendStream, writable: bool, acknowledged: bool) -> None:
        """Buffer space was freed (``writable``) or everything written is acknowledged."""


class _NullListener:
    def on_send_lost(self, stream: SendStream) -> None:
        pass

    def on_send_progress(self, stream: SendStream, writable: bool, acknowledged: bool) -> None:
        pass


_NULL_LISTENER = _NullListener()


class SendStream:
    """The sending part of a stream (RFC 9000 §3.1), with its peer credit.

    ``write_offset`` counts bytes accepted from the application,
    ``send_offset`` the next new byte to send, ``acked_offset`` the
    acknowledged prefix.  The final size is ``write_offset`` once the FIN is
    requested, ``send_offset`` when reset (§4.5).
    """

    __slots__ = (
        "_acked",
        "_acked_cb",
        "_chunks",
        "_ends",
        "_fin_lost",
        "_first",
        "_id_bytes",
        "_listener",
        "_lost",
        "_lost_cb",
        "_tail_open",
        "_write_blocked",
        "acked_offset",
        "buffer_size",
        "credit",
        "fin_acked",
        "fin_requested",
        "fin_sent",
        "final_size",
        "reset_code",
        "retransmit_scheduled",
        "scheduled",
        "send_offset",
        "state",
        "stop_code",
        "stream_id",
        "write_offset",
    )

    def __init__(
        self,
        stream_id: int,
        *,
        limit: int = 0,
        buffer_size: int = DEFAULT_SEND_BUFFER,
        listener: SendListener | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.state = SendState.READY
        self.credit = SendCredit(limit)
        self.buffer_size = buffer_size
        self.write_offset = 0
        self.send_offset = 0
        self.acked_offset = 0
        self.fin_requested = False
        self.fin_sent = False
        self.fin_acked = False
        self.final_size: int | None = None
        self.reset_code: int | None = None
        self.stop_code: int | None = None
        #: In the manager's new-data queue / retransmission queue.
        self.scheduled = False
        self.retransmit_scheduled = False
        self._chunks: list[Buffer] = []
        self._ends: list[int] = []
        self._first = 0
        self._tail_open = False
        self._acked = RangeSet()
        self._lost = RangeSet()
        self._fin_lost = False
        self._write_blocked = False
        self._listener: SendListener = listener or _NULL_LISTENER
        self._acked_cb = self.on_data_acked
        self._lost_cb = self.on_data_lost
        self._id_bytes = encode_varint(stream_id)

    def __repr__(self) -> str:
        return (
            f"<SendStream {self.stream_id} {self.state.value} written={self.write_offset} "
            f"sent={self.send_offset} acked={self.acked_offset} limit={self.credit.limit}>"
        )

    def _fire(self, event: SendEvent) -> None:
        self.state = transition(SEND_TRANSITIONS, self.state, event, self.stream_id)

    # -- application side -------------------------------------------------------------
    @property
    def buffered(self) -> int:
        """Bytes held: written and not yet acknowledged."""
        return self.write_offset - self.acked_offset

    @property
    def free_space(self) -> int:
        """How many bytes ``write`` would take now."""
        return max(0, self.buffer_size - self.buffered)

    def check_writable(self) -> None:
        """Raise unless the application may still write (RFC 9000 §3.1)."""
        if self.stop_code is not None:
            raise StreamStoppedError(
                f"stream {self.stream_id}: the peer sent STOP_SENDING (code {self.stop_code:#x})",
                self.stop_code,
                stream_id=self.stream_id,
            )
        if self.reset_code is not None:
            raise StreamStateError(f"stream {self.stream_id} was reset", stream_id=self.stream_id)
        if self.fin_requested:
            raise StreamStateError(
                f"stream {self.stream_id}: write after the end of the stream (FIN)",
                stream_id=self.stream_id,
            )

    def write(self, data: Buffer, fin: bool = False) -> int:
        """Take as much of ``data`` as the buffer allows; return how many bytes.

        ``fin`` ends the stream only when all of ``data`` was taken.  Raises
        :class:`StreamStoppedError` after the peer's STOP_SENDING and
        :class:`StreamStateError` after our reset or FIN.
        """
        self.check_writable()
        size = len(data)
        free = self.buffer_size - (self.write_offset - self.acked_offset)
        taken = size if size <= free else max(free, 0)
        if taken < size:
            self._write_blocked = True
        if taken:
            self._append(data, taken)
        if fin and taken == size:
            self.fin_requested = True
        return taken

    def _append(self, data: Buffer, size: int) -> None:
        chunks, ends = self._chunks, self._ends
        if size < SMALL_WRITE:
            if self._tail_open and len(chunks[-1]) + size <= COALESCE_LIMIT:
                tail = chunks[-1]
                assert isinstance(tail, bytearray)
                tail += data[:size] if size < len(data) else data
                ends[-1] += size
            else:
                chunks.append(bytearray(data[:size]))
                ends.append(self.write_offset + size)
                self._tail_open = True
        else:
            if isinstance(data, bytes):  # immutable: keep it, no copy
                chunk: Buffer = data if size == len(data) else memoryview(data)[:size]
            else:
                chunk = bytes(data[:size])
            chunks.append(chunk)
            ends.append(self.write_offset + size)
            self._tail_open = False
        self.write_offset += size

    def _view(self, offset: int, length: int) -> Buffer:
        """The data ``[offset, offset + length)``: a view of one chunk, or a join."""
        ends = self._ends
        i = bisect_right(ends, offset, self._first)
        if i == len(ends) - 1:
            self._tail_open = False  # a frame refers to it: never resize it again
        chunk = self._chunks[i]
        end = ends[i]
        start = end - len(chunk)
        if offset + length <= end:
            if offset == start and length == len(chunk):
                return chunk
            return memoryview(chunk)[offset - start : offset - start + length]
        parts: list[Buffer] = [memoryview(chunk)[offset - start :]]
        remaining = length - (end - offset)
        while remaining > 0:
            i += 1
            chunk = self._chunks[i]
            parts.append(chunk if len(chunk) <= remaining else memoryview(chunk)[:remaining])
            remaining -= len(chunk)
        if i == len(ends) - 1:
            self._tail_open = False
        return b"".join(parts)

    def _drop_acked(self) -> None:
        ends, first, prefix = self._ends, self._first, self.acked_offset
        count = len(ends)
        chunks = self._chunks
        while first < count and ends[first] <= prefix:
            chunks[first] = b""
            first += 1
        if first == count:
            chunks.clear()
            ends.clear()
            first = 0
            self._tail_open = False
        elif first > _COMPACT_AFTER and 2 * first > count:
            del chunks[:first]
            del ends[:first]
            first = 0
        self._first = first

    # -- sending ---------------------------------------------------------------------
    @property
    def has_sendable(self) -> bool:
        """New data within the peer's stream credit, or a FIN, waits to be sent."""
        if self.reset_code is not None:
            return False
        offset = self.send_offset
        if offset < self.write_offset:
            return offset < self.credit.limit
        return self.fin_requested and not self.fin_sent

    @property
    def needs_credit(self) -> bool:
        """The next frame carries new data (a FIN alone needs no credit)."""
        return self.send_offset < self.write_offset and self.reset_code is None

    @property
    def is_flow_blocked(self) -> bool:
        """Data waits but the peer's stream credit is used up (§4.1)."""
        return (
            self.reset_code is None
            and self.send_offset < self.write_offset
            and self.send_offset >= self.credit.limit
        )

    @property
    def has_retransmission(self) -> bool:
        return bool(self._lost) or self._fin_lost

    def write_new(self, sink: FrameSink, credit: int) -> int:
        """Write one STREAM frame of new data (and/or the FIN) into ``sink``.

        ``credit`` is the connection-level credit left.  Returns the number of
        new bytes sent (what the connection credit must be charged), or
        :data:`NO_ROOM` when not even a minimal frame fits.
        """
        if self.reset_code is not None:
            return 0
        offset = self.send_offset
        limit = self.credit.limit
        limit = offset + credit if offset + credit < limit else limit
        end = self.write_offset
        length = (limit if end > limit else end) - offset
        offset_field = encode_varint(offset) if offset else b""
        room = sink.remaining - 1 - len(self._id_bytes) - len(offset_field)
        if length > 0:
            capacity = _capacity(room)
            if capacity <= 0:
                return NO_ROOM
            length = capacity if length > capacity else length
        else:
            length = 0
        fin = self.fin_requested and offset + length == self.write_offset and not self.fin_sent
        if not length:
            if not fin:
                return 0
            if room < 1:
                return NO_ROOM
        new_offset = offset + length
        self.send_offset = new_offset
        self.credit.used = new_offset
        if fin:
            self.fin_sent = True
            self._fire(SendEvent.SEND_FIN)
        elif self.state is SendState.READY:
            self._fire(SendEvent.SEND_DATA)
        header = b"".join(
            (_STREAM_TYPES[bool(offset)][fin], self._id_bytes, offset_field, encode_varint(length))
        )
        payload = self._view(offset, length) if length else b""
        sink.add_parts(header, payload, (self._acked_cb, self._lost_cb, (offset, length, fin)))
        return length

    def _header(self, offset: int, length: int, fin: bool) -> bytes:
        # RFC 9000 §19.8: type 0x08 | OFF (0x04) | LEN (0x02) | FIN (0x01).
        return b"".join(
            (
                _STREAM_TYPES[bool(offset)][fin],
                self._id_bytes,
                encode_varint(offset) if offset else b"",
                encode_varint(length),
            )
        )

    def on_blocked_sent(self) -> None:
        """A STREAM_DATA_BLOCKED is being sent: Ready becomes Send (§3.1)."""
        if self.state is SendState.READY:
            self._fire(SendEvent.SEND_DATA)

    def write_retransmission(self, sink: FrameSink) -> bool:
        """Resend the first lost range (or a lost FIN); False when it did not fit."""
        lost = self._lost
        if lost and lost.lowest < self.acked_offset:
            lost.drop_below(self.acked_offset)
        if lost:
            start, stop = lost.first_range()
            capacity = stream_frame_capacity(sink.remaining, self.stream_id, start)
            if capacity <= 0:
                return False
            length = min(stop - start, capacity)
            end = start + length
            fin = self._fin_lost and end == self.write_offset
        elif self._fin_lost:
            start = end = self.write_offset
            length = 0
            fin = True
            if stream_frame_overhead(self.stream_id, start, 0) > sink.remaining:
                return False
        else:
            return True
        if length:
            lost.subtract(start, end)
        if fin:
            self._fin_lost = False
        self._fire(SendEvent.SEND_FIN if fin else SendEvent.SEND_DATA)
        payload = self._view(start, length) if length else b""
        sink.add_parts(
            self._header(start, length, fin),
            payload,
            (self._acked_cb, self._lost_cb, (start, length, fin)),
        )
        return True

    # -- recovery callbacks -------------------------------------------------------------
    def on_data_acked(self, offset: int, length: int, fin: bool) -> None:
        """A STREAM frame ``[offset, offset + length)`` (+FIN) was acknowledged."""
        if self.reset_code is not None:
            return
        end = offset + length
        prefix = self.acked_offset
        changed = False
        if end > prefix:
            changed = True
            if offset <= prefix:
                prefix = end
                acked = self._acked
                while acked and acked.lowest <= prefix:
                    _, stop = acked.shift()
                    prefix = max(prefix, stop)
                self.acked_offset = prefix
                self._drop_acked()
            else:
                self._acked.add(offset, end)
            if self._lost:
                self._lost.subtract(offset, end)
        if fin and not self.fin_acked:
            changed = True
            self.fin_acked = True
            self._fin_lost = False
        if not changed:
            return
        writable = False
        if self._write_blocked and self.free_space * 2 >= self.buffer_size:
            self._write_blocked = False
            writable = True
        acknowledged = prefix == self.write_offset and (self.fin_acked or not self.fin_requested)
        if acknowledged and self.fin_acked and self.state is SendState.DATA_SENT:
            self._fire(SendEvent.RECV_ALL_ACKS)
        if writable or acknowledged:
            self._listener.on_send_progress(self, writable, acknowledged)

    def on_data_lost(self, offset: int, length: int, fin: bool) -> None:
        """A STREAM frame was declared lost: queue what is not acknowledged."""
        if self.reset_code is not None:
            return
        end = offset + length
        queued = False
        if end > self.acked_offset:
            start = max(offset, self.acked_offset)
            if not self._acked.covers(start, end):
                self._lost.add(start, end)
                queued = True
        if fin and not self.fin_acked:
            self._fin_lost = True
            queued = True
        if queued:
            self._listener.on_send_lost(self)

    @property
    def all_acknowledged(self) -> bool:
        """Everything written (and the FIN, if requested) is acknowledged."""
        return (
            self.reset_code is None
            and self.acked_offset == self.write_offset
            and (self.fin_acked or not self.fin_requested)
        )

    # -- reset ---------------------------------------------------------------------------
    def reset(self, error_code: int) -> bool:
        """Abandon sending (RESET_STREAM, §3.1); True when a RESET_STREAM must be sent.

        Idempotent: a stream already reset or fully acknowledged is left alone.
        """
        if self.state in SEND_TERMINAL or self.state is SendState.RESET_SENT:
            return False
        self._fire(SendEvent.SEND_RESET)
        self.reset_code = error_code
        self.final_size = self.send_offset
        self._chunks.clear()
        self._ends.clear()
        self._first = 0
        self._tail_open = False
        self._lost = RangeSet()
        self._acked = RangeSet()
        self._fin_lost = False
        return True

    def reset_frame(self) -> ResetStreamFrame:
        """The RESET_STREAM to (re)send."""
        assert self.reset_code is not None and self.final_size is not None
        return ResetStreamFrame(self.stream_id, self.reset_code, self.final_size)

    def on_reset_acked(self) -> None:
        """Our RESET_STREAM was acknowledged: Reset Recvd."""
        self._fire(SendEvent.RECV_RESET_ACK)

    def on_stop_sending(self, error_code: int) -> bool:
        """The peer sent STOP_SENDING: remember its code and reset with it (§3.5).

        Returns True when a RESET_STREAM must now be sent.
        """
        if self.stop_code is None:
            self.stop_code = error_code
        return self.reset(error_code)

    @property
    def is_terminal(self) -> bool:
        return self.state in SEND_TERMINAL


# -- receiving part -------------------------------------------------------------------------
class RecvStream:
    """The receiving part of a stream (RFC 9000 §3.2), with our window for it.

    ``connection`` is the connection-level window (§4.1), charged with the
    stream's new highest offsets and credited with what is read or discarded.
    """

    __slots__ = (
        "_buffer",
        "_ranges",
        "connection",
        "final_size",
        "frontier",
        "max_gaps",
        "notify",
        "reset_code",
        "state",
        "stop_code",
        "stream_id",
        "window",
    )

    def __init__(
        self,
        stream_id: int,
        window: ReceiveWindow,
        connection: ReceiveWindow | None = None,
        *,
        max_gaps: int = MAX_RECV_GAPS,
    ) -> None:
        self.stream_id = stream_id
        self.state = RecvState.RECV
        self.window = window
        self.connection = connection
        self.max_gaps = max_gaps
        #: Everything below is received (``window.consumed`` <= frontier <= ``window.received``).
        self.frontier = 0
        self.final_size: int | None = None
        self.reset_code: int | None = None
        self.stop_code: int | None = None
        #: Set when new data, the end, or a reset can be observed; the owner clears it.
        self.notify = False
        self._buffer = bytearray()
        self._ranges = RangeSet()

    def __repr__(self) -> str:
        w = self.window
        return (
            f"<RecvStream {self.stream_id} {self.state.value} read={w.consumed} "
            f"received={self.frontier}/{w.received} limit={w.limit}>"
        )

    def _fire(self, event: RecvEvent, frame_type: int | None = None) -> None:
        self.state = transition(RECV_TRANSITIONS, self.state, event, self.stream_id, frame_type)

    @property
    def readable(self) -> int:
        """Bytes that ``read`` would return now."""
        return self.frontier - self.window.consumed

    @property
    def is_terminal(self) -> bool:
        return self.state in RECV_TERMINAL

    def _charge(self, end: int, frame_type: int) -> None:
        """Raise the highest received offset to ``end``, charging the connection (§4.1)."""
        window = self.window
        increase = end - window.received
        if increase <= 0:
            return
        connection = self.connection
        if connection is not None:
            connection.check(connection.received + increase, frame_type)
            connection.received += increase
        window.received = end

    def _final_size_error(self, reason: str, frame_type: int) -> ProtocolError:
        return ProtocolError(
            f"stream {self.stream_id}: {reason}",
            error_code=TransportErrorCode.FINAL_SIZE_ERROR,
            frame_type=frame_type,
        )

    def _check_size(self, end: int, fin: bool, frame_type: int) -> None:
        """Final size rules (RFC 9000 §4.5) and the stream limit (§4.1)."""
        final = self.final_size
        if final is not None:
            if fin and end != final:
                raise self._final_size_error(
                    f"final size changed from {final} to {end}", frame_type
                )
            if end > final:
                raise self._final_size_error(
                    f"data up to {end} beyond final size {final}", frame_type
                )
        elif fin and end < self.window.received:
            raise self._final_size_error(
                f"final size {end} below data already received ({self.window.received})",
                frame_type,
            )
        self.window.check(end, frame_type)

    def on_data(self, offset: int, data: Buffer, fin: bool) -> None:
        """A STREAM frame (RFC 9000 §19.8).  Handles untrusted input.

        Raises FINAL_SIZE_ERROR / FLOW_CONTROL_ERROR (stream or connection)
        :class:`ProtocolError`; the caller fills in the exact frame type.
        """
        end = offset + len(data)
        window = self.window
        if fin or self.final_size is not None or end > window.limit:
            self._check_size(end, fin, FrameType.STREAM | fin)
        if end > window.received:
            self._charge(end, FrameType.STREAM)
        state = self.state
        if state is not RecvState.RECV and state is not RecvState.SIZE_KNOWN:
            return  # a duplicate or a late frame (§3.2); its size was checked above
        if self.stop_code is not None:
            self._discard_to(window.received)
        elif end > self.frontier and data:
            self._store(offset, end, data)
        if fin and state is RecvState.RECV:
            self.final_size = end
            self._fire(RecvEvent.RECV_FIN)
        if self.final_size is not None and self.frontier == self.final_size:
            self._fire(RecvEvent.RECV_ALL_DATA)
            if self.stop_code is None:
                self.notify = True
            else:
                self._fire(RecvEvent.APP_READ_ALL)

    def _store(self, offset: int, end: int, data: Buffer) -> None:
        frontier = self.frontier
        if offset < frontier:
            data = memoryview(data)[frontier - offset :]
            offset = frontier
        buffer = self._buffer
        base = self.window.consumed
        start = offset - base
        size = len(buffer)
        if start == size:
            buffer += data
        elif start > size:
            buffer += bytes(start - size)
            buffer += data
        elif end - base <= size:
            buffer[start : end - base] = data
        else:
            split = size - start
            buffer[start:] = memoryview(data)[:split]
            buffer += memoryview(data)[split:]
        ranges = self._ranges
        if offset == frontier:
            frontier = end
            while ranges and ranges.lowest <= frontier:
                _, stop = ranges.shift()
                frontier = max(frontier, stop)
            self.frontier = frontier
            self.notify = True
        else:
            ranges.add(offset, end)
            if len(ranges) > self.max_gaps:
                raise ProtocolError(
                    f"stream {self.stream_id}: more than {self.max_gaps} gaps in received data",
                    error_code=TransportErrorCode.INTERNAL_ERROR,
                    frame_type=FrameType.STREAM,
                )

    def _discard_to(self, offset: int) -> None:
        """Drop everything below ``offset`` as if read, crediting the connection."""
        window = self.window
        amount = offset - window.consumed
        self._buffer.clear()
        self._ranges = RangeSet()
        self.frontier = max(self.frontier, offset)
        if amount > 0:
            window.consumed = offset
            if self.connection is not None:
                self.connection.consume(amount)

    def read(self, max_bytes: int) -> tuple[bytes, bool]:
        """Up to ``max_bytes`` of in-order data, and whether the FIN was reached.

        Raises :class:`StreamStateError` after our own STOP_SENDING, else
        :class:`StreamResetError` once the peer reset the stream.
        """
        if self.stop_code is not None:
            raise StreamStateError(
                f"stream {self.stream_id}: reading was stopped (STOP_SENDING sent)",
                stream_id=self.stream_id,
            )
        state = self.state
        if state is RecvState.RESET_RECVD or state is RecvState.RESET_READ:
            if state is RecvState.RESET_RECVD:
                self._fire(RecvEvent.APP_READ_RESET)
            code = self.reset_code
            assert code is not None
            raise StreamResetError(
                f"stream {self.stream_id} was reset by the peer (code {code:#x})",
                code,
                stream_id=self.stream_id,
            )
        window = self.window
        base = window.consumed
        size = self.frontier - base
        size = min(size, max_bytes)
        data = b""
        if size > 0:
            buffer = self._buffer
            if size == len(buffer):
                data = bytes(buffer)
                buffer.clear()
            else:
                with memoryview(buffer) as view:
                    data = bytes(view[:size])
                del buffer[:size]
            window.consumed = base + size
            if self.connection is not None:
                self.connection.consume(size)
        if state is RecvState.DATA_RECVD and window.consumed == self.final_size:
            self._fire(RecvEvent.APP_READ_ALL)
            return data, True
        return data, state is RecvState.DATA_READ

    def on_reset(self, error_code: int, final_size: int) -> bool:
        """RESET_STREAM (RFC 9000 §19.4).  Handles untrusted input.

        Returns True when the reset takes effect (data discarded, the
        application is to be told); False when it came too late to matter.
        """
        frame_type = FrameType.RESET_STREAM
        self._check_size(final_size, True, frame_type)
        self._charge(final_size, frame_type)
        before = self.state
        self._fire(RecvEvent.RECV_RESET, frame_type)
        if before is self.state:
            return False
        self.final_size = final_size
        self.reset_code = error_code
        self._discard_to(final_size)
        if self.stop_code is not None:
            self._fire(RecvEvent.APP_READ_RESET)
        return True

    def stop(self, error_code: int) -> bool:
        """The application stops reading (STOP_SENDING, §3.5): unread data is discarded.

        Returns True when a STOP_SENDING frame should be sent (the peer may
        still send: Recv or Size Known); idempotent.
        """
        if self.stop_code is not None or self.state in RECV_TERMINAL:
            return False
        self.stop_code = error_code
        self._discard_to(self.window.received)
        if self.state is RecvState.DATA_RECVD:
            self._fire(RecvEvent.APP_READ_ALL)
            return False
        if self.state is RecvState.RESET_RECVD:
            self._fire(RecvEvent.APP_READ_RESET)
            return False
        return True

    @property
    def wants_window_update(self) -> bool:
        """MAX_STREAM_DATA is worth sending: more data is expected and half the window is read."""
        return (
            self.state is RecvState.RECV
            and self.stop_code is None
            and self.window.consumed >= self.window.update_at
        )


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
