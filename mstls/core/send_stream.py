"""The sending part of a stream (RFC 9000 §2.2, §3.1, §4.1, §19.8).

Theory of operation
-------------------
Application data is kept as a list of chunks indexed by their end offsets:
``bytes`` given by the application are kept without copying; small writes are
coalesced into one ``bytearray`` that is sealed (never resized again) the
first time a frame refers to it.  A frame's payload is therefore a
``memoryview`` slice of one chunk (a join only when a frame spans chunks), and
acknowledged chunks are dropped from the front.  The buffer is bounded
(``buffer_size``): :meth:`SendStream.write` takes what fits and says how much,
so the layer above can block.

Lost ranges go to a retransmission :class:`~mstls.core.rangeset.RangeSet` and
are resent before new data; an acknowledgement removes its range from it and
from nothing else (a range acknowledged by one copy and lost in another is
not resent).  State is always updated *before* a frame is handed to the sink,
because a QMux sink acknowledges frames during ``add``.  The owner (the stream
manager) hears about losses and progress through a :class:`SendListener`.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from typing import Protocol

from ..exceptions import StreamStateError, StreamStoppedError
from ..wire.buffer import encode_varint
from ..wire.frames import ResetStreamFrame, stream_frame_capacity, stream_frame_overhead
from .flow_control import SendCredit
from .rangeset import RangeSet
from .sending import FrameSink
from .stream_states import SEND_TERMINAL, SEND_TRANSITIONS, SendEvent, SendState, transition

__all__ = [
    "COALESCE_LIMIT",
    "DEFAULT_SEND_BUFFER",
    "NO_ROOM",
    "SMALL_WRITE",
    "SendListener",
    "SendStream",
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
#: ``write_new`` / ``write_retransmission`` result: the frame did not fit in the sink.
NO_ROOM = -1


#: STREAM frame type bytes with the LEN bit, by [OFF bit][FIN bit] (RFC 9000 §19.8).
#: STREAM frame types with LEN set, by [OFF bit][FIN bit] (RFC 9000 §19.8).
_STREAM_TYPES = ((b"\x0a", b"\x0b"), (b"\x0e", b"\x0f"))
_EMPTY = memoryview(b"")
_ONE_BYTE = [bytes((value,)) for value in range(0x40)]
_PACK16 = struct.Struct(">H").pack
_PACK32 = struct.Struct(">L").pack
_PACK64 = struct.Struct(">Q").pack


def _varint(value: int) -> bytes:
    """RFC 9000 §16 encoding, unchecked: offsets and lengths here stay below 2**62
    (flow control bounds them)."""
    if value < 0x40:
        return _ONE_BYTE[value]
    if value < 0x4000:
        return _PACK16(value | 0x4000)
    if value < 0x40000000:
        return _PACK32(value | 0x80000000)
    return _PACK64(value | 0xC000000000000000)


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
        "_chunks",
        "_ends",
        "_fin_lost",
        "_first",
        "_id_bytes",
        "_lost",
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
        # Sealed chunks are memoryviews (sliced without copying); only the last
        # chunk may be an open bytearray still taking small writes.
        self._chunks: list[memoryview | bytearray] = []
        self._ends: list[int] = []
        self._first = 0
        self._tail_open = False
        # Acknowledged ranges above acked_offset, and lost ranges to resend;
        # None when empty (the per-frame paths test that cheaply).
        self._acked: RangeSet | None = None
        self._lost: RangeSet | None = None
        self._fin_lost = False
        self._write_blocked = False
        # Progress goes to the listener named in each frame's record, not to one kept
        # here: a stream holding its manager, which holds the stream, was a reference
        # cycle (every connection's streams freed only by the cyclic collector, the
        # soak's RSS slope, issue 11); mypyc classes cannot be weakly referenced.
        # No bound methods or per-frame prefixes kept here: a bound method of our own
        # would make a reference cycle (the stream freed only by the cyclic collector),
        # and every byte per stream counts with 10^5 streams open (issue 11).
        #: The Stream ID field of our STREAM frames.
        self._id_bytes = encode_varint(stream_id)

    def __repr__(self) -> str:
        return (
            f"<SendStream {self.stream_id} {self.state.value} written={self.write_offset} "
            f"sent={self.send_offset} acked={self.acked_offset} limit={self.credit.limit}>"
        )

    def _fire(self, event: SendEvent) -> None:
        new_state = SEND_TRANSITIONS.get((self.state, event))  # inline: once per frame
        if new_state is None:  # refused: transition() raises the right error
            new_state = transition(SEND_TRANSITIONS, self.state, event, self.stream_id)
        self.state = new_state

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
                chunk = memoryview(data) if size == len(data) else memoryview(data)[:size]
            elif isinstance(data, memoryview) and _immutable_view(data):
                chunk = data if size == len(data) else data[:size]  # as bytes: no copy
            else:
                chunk = memoryview(bytes(data[:size]))
            chunks.append(chunk)
            ends.append(self.write_offset + size)
            self._tail_open = False
        self.write_offset += size

    def _view(self, offset: int, length: int) -> Buffer:
        """The data ``[offset, offset + length)``: a view of one chunk, or a join."""
        ends = self._ends
        i = bisect_right(ends, offset, self._first)
        chunks = self._chunks
        chunk = chunks[i]
        if isinstance(chunk, bytearray):  # a frame refers to the open tail: seal it
            chunk = chunks[i] = memoryview(chunk)
            self._tail_open = False
        end = ends[i]
        start = end - len(chunk)
        if offset + length <= end:
            return chunk[offset - start : offset - start + length]
        parts = [chunk[offset - start :]]
        remaining = length - (end - offset)
        while remaining > 0:
            i += 1
            chunk = chunks[i]
            if isinstance(chunk, bytearray):
                chunk = chunks[i] = memoryview(chunk)
                self._tail_open = False
            parts.append(chunk[:remaining])
            remaining -= len(chunk)
        return b"".join(parts)

    def _drop_acked(self) -> None:
        ends, first, prefix = self._ends, self._first, self.acked_offset
        count = len(ends)
        chunks = self._chunks
        while first < count and ends[first] <= prefix:
            chunks[first] = _EMPTY
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
        return self._lost is not None or self._fin_lost

    def write_frame(
        self, sink: FrameSink, credit: int, listener: SendListener = _NULL_LISTENER
    ) -> int:
        """Write the next STREAM frame: lost data first, else new data.

        Returns the new bytes sent (to charge the connection credit ``credit``),
        or :data:`NO_ROOM` when nothing fitted.  ``listener`` hears of the frame's
        loss and of the progress its acknowledgement makes.
        """
        if self._lost is not None or self._fin_lost:
            return 0 if self.write_retransmission(sink, listener) else NO_ROOM
        return self.write_new(sink, credit, listener)

    def write_new(
        self, sink: FrameSink, credit: int, listener: SendListener = _NULL_LISTENER
    ) -> int:
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
        offset_field = _varint(offset) if offset else b""
        id_bytes = self._id_bytes
        room = sink.remaining - 1 - len(id_bytes) - len(offset_field)
        if length > 0:
            capacity = room - 2 if 0x40 < room <= 0x4001 else _capacity(room)
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
        header = _STREAM_TYPES[offset > 0][fin] + id_bytes + offset_field + _varint(length)
        sink.add_parts(
            header,
            self._view(offset, length) if length else b"",
            (self.on_data_acked, self.on_data_lost, (offset, length, fin, listener)),
        )
        return length

    def _header(self, offset: int, length: int, fin: bool) -> bytes:
        # RFC 9000 §19.8: type 0x08 | OFF (0x04) | LEN (0x02) | FIN (0x01).
        if offset:
            return _STREAM_TYPES[1][fin] + self._id_bytes + _varint(offset) + _varint(length)
        return _STREAM_TYPES[0][fin] + self._id_bytes + _varint(length)

    def on_blocked_sent(self) -> None:
        """A STREAM_DATA_BLOCKED is being sent: Ready becomes Send (§3.1)."""
        if self.state is SendState.READY:
            self._fire(SendEvent.SEND_DATA)

    def write_retransmission(
        self, sink: FrameSink, listener: SendListener = _NULL_LISTENER
    ) -> bool:
        """Resend the first lost range (or a lost FIN); False when it did not fit."""
        lost = self._lost
        if lost is not None and lost.lowest < self.acked_offset:
            lost.drop_below(self.acked_offset)
            if not lost:
                lost = self._lost = None
        if lost is not None:
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
        if lost is not None:
            lost.subtract(start, end)
            if not lost:
                self._lost = None
        if fin:
            self._fin_lost = False
        self._fire(SendEvent.SEND_FIN if fin else SendEvent.SEND_DATA)
        payload = self._view(start, length) if length else b""
        sink.add_parts(
            self._header(start, length, fin),
            payload,
            (self.on_data_acked, self.on_data_lost, (start, length, fin, listener)),
        )
        return True

    # -- recovery callbacks -------------------------------------------------------------
    def on_data_acked(
        self, offset: int, length: int, fin: bool, listener: SendListener = _NULL_LISTENER
    ) -> None:
        """A STREAM frame ``[offset, offset + length)`` (+FIN) was acknowledged."""
        if self.reset_code is not None:
            return
        end = offset + length
        changed = end > self.acked_offset
        if changed:
            self._mark_acked(offset, end)
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
        acknowledged = self.acked_offset == self.write_offset and (
            self.fin_acked or not self.fin_requested
        )
        if acknowledged and self.fin_acked and self.state is SendState.DATA_SENT:
            self._fire(SendEvent.RECV_ALL_ACKS)
        if writable or acknowledged:
            listener.on_send_progress(self, writable, acknowledged)

    def _mark_acked(self, offset: int, end: int) -> None:
        """Record ``[offset, end)`` as acknowledged (it reaches past ``acked_offset``):
        move the contiguous prefix on, or keep it in the out-of-order set."""
        prefix = self.acked_offset
        if offset <= prefix:
            prefix = end
            acked = self._acked
            if acked is not None:
                while acked and acked.lowest <= prefix:
                    _, stop = acked.shift()
                    prefix = max(prefix, stop)
                if not acked:
                    self._acked = None
            self.acked_offset = prefix
            ends = self._ends
            if ends and ends[self._first] <= prefix:
                self._drop_acked()
        else:
            if self._acked is None:
                self._acked = RangeSet()
            self._acked.add(offset, end)
        lost = self._lost
        if lost is not None:
            lost.subtract(offset, end)
            if not lost:
                self._lost = None

    def on_data_lost(
        self, offset: int, length: int, fin: bool, listener: SendListener = _NULL_LISTENER
    ) -> None:
        """A STREAM frame was declared lost: queue what is not acknowledged."""
        if self.reset_code is not None:
            return
        end = offset + length
        queued = False
        if end > self.acked_offset:
            start = max(offset, self.acked_offset)
            if self._acked is None or not self._acked.covers(start, end):
                if self._lost is None:
                    self._lost = RangeSet()
                self._lost.add(start, end)
                queued = True
        if fin and not self.fin_acked:
            self._fin_lost = True
            queued = True
        if queued:
            listener.on_send_lost(self)

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
        self._lost = None
        self._acked = None
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


def _immutable_view(data: Buffer) -> bool:
    """``data`` is a flat byte ``memoryview`` of a ``bytes`` object (which nobody can
    change while we keep it, so it need not be copied)."""
    return (
        type(data) is memoryview
        and type(data.obj) is bytes
        and data.format == "B"
        and data.c_contiguous
    )
