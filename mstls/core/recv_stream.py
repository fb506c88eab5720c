"""The receiving part of a stream (RFC 9000 §2.2, §3.2, §4.5, §19.8).

Theory of operation
-------------------
Data lives in one ``bytearray`` that starts at the first unread offset;
out-of-order data is written at its place (gaps zero-filled) and its ranges
kept in a :class:`~mstls.core.rangeset.RangeSet`, so received bytes are copied
once in and once out, and memory is bounded by our flow-control window (the
peer cannot send beyond it).  The number of gaps is bounded too
(:data:`MAX_RECV_GAPS`).  Final-size rules are §4.5.  News for the
application (data, the end) is left in :attr:`RecvStream.notify` for the owner.

A RESET_STREAM keeps what was delivered (rule E6; RFC 9000 §3.2 allows it):
the bytes received contiguously from the read position up to the first gap
stay readable, and only once they are read does :meth:`RecvStream.read` raise
:class:`~mstls.exceptions.StreamResetError` with the peer's code.  Bytes beyond
that gap can never be delivered: they are dropped at once, and the connection
window is credited for everything from the gap up to the final size (§4.5:
the final size is what the peer's credit was charged), so only the readable
prefix still holds credit and memory, until it is read (or discarded by our
STOP_SENDING).  The buffer is released when the reset is reported.
"""

from __future__ import annotations

from ..codes import TransportErrorCode
from ..exceptions import ProtocolError, StreamResetError, StreamStateError
from ..wire.frame_types import FrameType
from .flow_control import ReceiveWindow
from .rangeset import RangeSet
from .stream_states import RECV_TERMINAL, RECV_TRANSITIONS, RecvEvent, RecvState, transition

__all__ = ["MAX_RECV_GAPS", "RecvStream"]

_STREAM = int(FrameType.STREAM)
_RECV, _SIZE_KNOWN = RecvState.RECV, RecvState.SIZE_KNOWN

Buffer = bytes | bytearray | memoryview

#: Out-of-order ranges kept per receiving stream before giving up (RFC 9000 §21.7).
MAX_RECV_GAPS = 1024


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
        #: Received ranges above ``frontier`` (out of order); None when there are none.
        self._ranges: RangeSet | None = None

    def __repr__(self) -> str:
        w = self.window
        return (
            f"<RecvStream {self.stream_id} {self.state.value} read={w.consumed} "
            f"received={self.frontier}/{w.received} limit={w.limit}>"
        )

    def _fire(self, event: RecvEvent, frame_type: int | None = None) -> None:
        new_state = RECV_TRANSITIONS.get((self.state, event))  # inline: once per frame
        if new_state is None:  # refused: transition() raises the right error
            new_state = transition(RECV_TRANSITIONS, self.state, event, self.stream_id, frame_type)
        self.state = new_state

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
            total = connection.received + increase
            if total > connection.limit:
                connection.check(total, frame_type)  # raises FLOW_CONTROL_ERROR
            connection.received = total
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
            self._check_size(end, fin, _STREAM | fin)
        if end > window.received:
            self._charge(end, _STREAM)
        state = self.state
        if state is not _RECV and state is not _SIZE_KNOWN:
            return  # a duplicate or a late frame (§3.2); its size was checked above
        if self.stop_code is not None:
            self._discard_to(window.received)
        elif end > self.frontier and data:
            buffer = self._buffer
            if (
                offset == self.frontier
                and self._ranges is None
                and offset - window.consumed == len(buffer)
            ):
                buffer += data  # in order, nothing out of order: the common case
                self.frontier = end
                self.notify = True
            else:
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
            if ranges is not None:
                while ranges and ranges.lowest <= frontier:
                    _, stop = ranges.shift()
                    frontier = max(frontier, stop)
                if not ranges:
                    self._ranges = None
            self.frontier = frontier
            self.notify = True
        else:
            if ranges is None:
                ranges = self._ranges = RangeSet()
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
        self._ranges = None
        self.frontier = max(self.frontier, offset)
        if amount > 0:
            window.consumed = offset
            if self.connection is not None:
                self.connection.consume(amount)

    def read(self, max_bytes: int) -> tuple[bytes, bool]:
        """Up to ``max_bytes`` of in-order data, and whether the FIN was reached.

        Raises :class:`StreamStateError` after our own STOP_SENDING.  After the
        peer's reset, data delivered before it is returned first (E6); once none
        is left, :class:`StreamResetError` with the peer's code is raised (and
        keeps being raised).
        """
        if self.stop_code is not None:
            raise StreamStateError(
                f"stream {self.stream_id}: reading was stopped (STOP_SENDING sent)",
                stream_id=self.stream_id,
            )
        state = self.state
        window = self.window
        base = window.consumed
        if (state is RecvState.RESET_RECVD and self.frontier == base) or (
            state is RecvState.RESET_READ
        ):
            if state is RecvState.RESET_RECVD:
                self._fire(RecvEvent.APP_READ_RESET)
                self._buffer = bytearray()  # reported: release the memory
            code = self.reset_code
            assert code is not None
            raise StreamResetError(
                f"stream {self.stream_id} was reset by the peer (code {code:#x})",
                code,
                stream_id=self.stream_id,
            )
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

        Returns True when the reset takes effect (the application is to be
        told); False when it came too late to matter (all data was received).
        Data delivered before it stays readable (E6); the rest is dropped and
        credited to the connection (:meth:`_drop_undeliverable`).
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
        if self.stop_code is not None:
            self._discard_to(final_size)  # we read nothing more anyway
            self._fire(RecvEvent.APP_READ_RESET)
        else:
            self._drop_undeliverable(final_size)
        return True

    def _drop_undeliverable(self, final_size: int) -> None:
        """After a reset: keep the readable prefix, drop what lies beyond its gap,
        and credit the connection with ``[frontier, final_size)`` (§4.5, §4.1)."""
        keep = self.frontier - self.window.consumed
        if keep:
            del self._buffer[keep:]
        else:
            self._buffer = bytearray()
        self._ranges = None
        undeliverable = final_size - self.frontier
        if undeliverable > 0 and self.connection is not None:
            self.connection.consume(undeliverable)

    def stop(self, error_code: int) -> bool:
        """The application stops reading (STOP_SENDING, §3.5): unread data is discarded.

        Returns True when a STOP_SENDING frame should be sent (the peer may
        still send: Recv or Size Known); idempotent.
        """
        if self.stop_code is not None or self.state in RECV_TERMINAL:
            return False
        self.stop_code = error_code
        # After a reset only the readable prefix still holds connection credit.
        reset = self.reset_code is not None
        self._discard_to(self.frontier if reset else self.window.received)
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
