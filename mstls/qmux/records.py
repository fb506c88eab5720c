"""Building outgoing QMux records in place (draft-ietf-quic-qmux-02 §3.2).

Theory of operation
-------------------
A record is ``Size (i)`` followed by its frames.  :class:`RecordSink` is the
:class:`~mstls.core.sending.FrameSink` the stream layer writes into: it
reserves the Size field up front, in the width the record's *capacity* needs
(a variable-length integer need not be minimal, RFC 9000 §16), appends frames
straight into one ``bytearray`` and fills Size in at :meth:`RecordSink.finish`.
So a record is built with one copy of the stream data and handed to TLS as one
buffer; with a capacity of 16382 the 2-byte Size makes it exactly one full TLS
record (RFC 8446 §5.1), with our default of 65532 the 4-byte Size four.

QMux has no acknowledgements: a frame counts as acknowledged once it is handed
to the transport (§4), so the sink calls each frame's ``on_acked`` right after
copying the frame in (the stream layer has already updated its state, and may
now free the bytes).
"""

from __future__ import annotations

from ..core.sending import SentRecord
from ..wire.buffer import varint_size

__all__ = ["RecordSink", "fixed_varint"]

#: The two-bit length prefix of a variable-length integer, by its width (RFC 9000 §16),
#: already shifted into place.
_VARINT_PREFIX = {1: 0, 2: 0x40 << 8, 4: 0x80 << 24, 8: 0xC0 << 56}


def fixed_varint(value: int, width: int) -> bytes:
    """``value`` as a variable-length integer of exactly ``width`` bytes (RFC 9000 §16)."""
    if value >> (8 * width - 2):
        raise ValueError(f"{value} does not fit a {width}-byte variable-length integer")
    return (value | _VARINT_PREFIX[width]).to_bytes(width, "big")


class RecordSink:
    """One QMux record under construction, acknowledging frames as it takes them."""

    __slots__ = ("_buffer", "_header", "_limit", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._header = varint_size(capacity)
        self._buffer = bytearray(self._header)
        self._limit = self._header + capacity

    @property
    def remaining(self) -> int:
        return self._limit - len(self._buffer)

    @property
    def size(self) -> int:
        """Bytes of frames added so far."""
        return len(self._buffer) - self._header

    def add(
        self,
        frame: bytes | bytearray | memoryview,
        record: SentRecord | None = None,
        *,
        ack_eliciting: bool = True,
    ) -> None:
        if len(frame) > self._limit - len(self._buffer):
            raise ValueError(f"frame of {len(frame)} bytes does not fit in {self.remaining}")
        self._buffer += frame
        if record is not None:
            record[0](*record[2])

    def add_parts(
        self,
        header: bytes,
        payload: bytes | bytearray | memoryview,
        record: SentRecord | None = None,
    ) -> None:
        buffer = self._buffer
        if len(header) + len(payload) > self._limit - len(buffer):
            raise ValueError("frame does not fit in the record")
        buffer += header
        buffer += payload
        if record is not None:
            record[0](*record[2])

    def finish(self) -> bytearray:
        """The whole record (Size filled in); empty when no frame was added."""
        buffer = self._buffer
        size = len(buffer) - self._header
        if not size:
            return bytearray()
        header = self._header
        buffer[:header] = (size | _VARINT_PREFIX[header]).to_bytes(header, "big")
        return buffer
