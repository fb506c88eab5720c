"""CRYPTO data per packet number space (RFC 9000 §7.5, §19.6).

Sending keeps every handshake byte until it is acknowledged and resends lost
ranges first.  Receiving reassembles out-of-order CRYPTO frames and hands the
TLS engine contiguous bytes; data buffered beyond what TLS has consumed, and
the number of gaps in it, are bounded (CRYPTO_BUFFER_EXCEEDED, RFC 9000 §7.5).
"""

from __future__ import annotations

from ..codes import TransportErrorCode
from ..core.rangeset import RangeSet
from ..core.sending import FrameSink
from ..exceptions import ProtocolError
from ..wire.frame_types import FrameType
from ..wire.frames import crypto_frame_capacity, encode_crypto_frame_header

__all__ = ["MAX_CRYPTO_GAPS", "CryptoReceiver", "CryptoSender"]

#: Disjoint out-of-order CRYPTO ranges buffered per level, at most.
MAX_CRYPTO_GAPS = 64


class CryptoSender:
    """Handshake bytes to send at one level, with retransmission of lost ranges."""

    __slots__ = ("_acked", "_base", "_buffer", "_lost", "_sent_until")

    def __init__(self) -> None:
        self._buffer = bytearray()  # bytes from offset _base on
        self._base = 0
        self._sent_until = 0
        self._lost = RangeSet()
        self._acked = RangeSet()

    def write(self, data: bytes) -> None:
        self._buffer += data

    @property
    def end(self) -> int:
        return self._base + len(self._buffer)

    def has_data(self) -> bool:
        return bool(self._lost) or self._sent_until < self.end

    def all_acknowledged(self) -> bool:
        return self._acked.covers(0, self.end) if self.end else True

    def write_frames(self, sink: FrameSink) -> None:
        """Put CRYPTO frames in ``sink``: lost ranges first, then new bytes."""
        while self._lost:
            start, stop = self._lost.first_range()
            if not self._emit(sink, start, stop):
                return
        while self._sent_until < self.end:
            if not self._emit(sink, self._sent_until, self.end):
                return

    def _emit(self, sink: FrameSink, start: int, stop: int) -> bool:
        room = crypto_frame_capacity(sink.remaining, start)
        if room <= 0:
            return False
        stop = min(stop, start + room)
        view = memoryview(self._buffer)[start - self._base : stop - self._base]
        sink.add_parts(
            encode_crypto_frame_header(start, stop - start),
            bytes(view),
            (self._on_acked, self._on_lost, (start, stop)),
        )
        self._lost.subtract(start, stop)
        self._sent_until = max(self._sent_until, stop)
        return True

    def _on_acked(self, start: int, stop: int) -> None:
        self._acked.add(start, stop)
        self._lost.subtract(start, stop)
        # Drop the acknowledged prefix.
        if self._acked and self._acked.lowest <= self._base:
            _, acked_to = self._acked.first_range()
            if acked_to > self._base:
                del self._buffer[: acked_to - self._base]
                self._base = acked_to

    def _on_lost(self, start: int, stop: int) -> None:
        start = max(start, self._base)
        if start < stop:
            self._lost.add(start, stop)
            for a, b in self._acked:
                self._lost.subtract(a, b)

    def requeue_unacknowledged(self) -> None:
        """Mark everything sent but unacknowledged for resending (PTO probes, Retry)."""
        if self._sent_until > self._base:
            self._on_lost(self._base, self._sent_until)


class CryptoReceiver:
    """Reassembles CRYPTO frames into the in-order byte stream TLS reads.

    Handles untrusted input.  Out-of-order data is written at its place in one
    ``bytearray`` that starts at the first byte TLS has not seen (gaps
    zero-filled) and its ranges are kept in a :class:`RangeSet`, so memory is
    bounded by ``limit`` however the peer overlaps its frames, and the number
    of gaps by :data:`MAX_CRYPTO_GAPS`.
    """

    __slots__ = ("_buffer", "_limit", "_max_gaps", "_offset", "_received")

    def __init__(self, limit: int, max_gaps: int = MAX_CRYPTO_GAPS) -> None:
        self._offset = 0  # bytes delivered to TLS
        self._buffer = bytearray()  # bytes from _offset on
        self._received = RangeSet()  # ranges held in _buffer, all above _offset
        self._limit = limit
        self._max_gaps = max_gaps

    def receive(self, offset: int, data: bytes | bytearray | memoryview) -> bytes:
        """Accept a CRYPTO frame; return the bytes that became contiguous."""
        end = offset + len(data)
        if end - self._offset > self._limit:
            raise _buffer_exceeded(
                f"CRYPTO data up to offset {end} exceeds the buffer of {self._limit} bytes"
            )
        if end <= self._offset or offset == end:
            return b""  # a retransmission of what TLS already has, or nothing
        if offset < self._offset:
            data = memoryview(data)[self._offset - offset :]
            offset = self._offset
        received = self._received
        if offset == self._offset and not received:
            self._offset = end
            return bytes(data)
        buffer = self._buffer
        start = offset - self._offset
        if start > len(buffer):
            buffer += bytes(start - len(buffer))
        buffer[start : start + len(data)] = data  # grows the buffer when past its end
        received.add(offset, end)
        if received.lowest > self._offset:
            if len(received) > self._max_gaps:
                raise _buffer_exceeded(f"more than {self._max_gaps} gaps in CRYPTO data")
            return b""
        _, stop = received.shift()
        size = stop - self._offset
        out = bytes(buffer[:size])
        del buffer[:size]
        self._offset = stop
        return out


def _buffer_exceeded(reason: str) -> ProtocolError:
    """RFC 9000 §7.5: too much CRYPTO data buffered is CRYPTO_BUFFER_EXCEEDED."""
    return ProtocolError(
        reason, error_code=TransportErrorCode.CRYPTO_BUFFER_EXCEEDED, frame_type=FrameType.CRYPTO
    )
