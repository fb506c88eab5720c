"""The DATAGRAM frame of the unreliable datagram extension (RFC 9221 §4).

Types 0x30 (no Length field: the data runs to the end of the packet or QMux
record) and 0x31 (with a Length field).  The decoder handles untrusted input and
raises only :class:`~mstls.exceptions.DecodeError`; the payload is a
``memoryview`` of the input (no copy), as for STREAM frames.  Whether the frame
may be received at all (the max_datagram_frame_size transport parameter, §3) is
the connection's check, not the codec's: the decoder is in every frame table so
that a peer sending DATAGRAM uninvited gets the PROTOCOL_VIOLATION §3 asks for,
not a FRAME_ENCODING_ERROR.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from .buffer import Reader, Writer, encode_varint, varint_size
from .frame_types import Frame, FrameDecoder, FrameType

__all__ = [
    "DATAGRAM_FRAME_DECODERS",
    "DatagramFrame",
    "datagram_frame_size",
    "encode_datagram_frame",
    "largest_datagram_payload",
]

Buffer = bytes | bytearray | memoryview


class DatagramFrame(Frame):
    """DATAGRAM (RFC 9221 §4): ``has_length`` selects type 0x31 over 0x30."""

    FIELDS: ClassVar[tuple[str, ...]] = ("data", "has_length")
    __slots__ = FIELDS
    data: Buffer
    has_length: bool

    def __init__(self, data: Buffer = b"", has_length: bool = True) -> None:
        self.data = data
        self.has_length = has_length

    @property
    def frame_type(self) -> int:
        return FrameType.DATAGRAM_WITH_LENGTH if self.has_length else FrameType.DATAGRAM

    def encode(self, w: Writer) -> None:
        w.push_bytes(encode_datagram_frame(self.data, with_length=self.has_length))


def encode_datagram_frame(data: Buffer, *, with_length: bool = True) -> bytes:
    """The whole frame: type, Length (type 0x31), then ``data`` (§4)."""
    if with_length:
        return b"\x31" + encode_varint(len(data)) + bytes(data)
    return b"\x30" + bytes(data)


def datagram_frame_size(payload_length: int) -> int:
    """Bytes of a DATAGRAM frame with a Length field carrying ``payload_length`` bytes."""
    return 1 + varint_size(payload_length) + payload_length


def largest_datagram_payload(room: int) -> int:
    """The largest payload whose frame with a Length field fits in ``room`` bytes
    (0 when not even an empty one fits)."""
    if room < 2:
        return 0
    payload = room - 1 - varint_size(room)
    while payload > 0 and datagram_frame_size(payload + 1) <= room:
        payload += 1
    return max(payload, 0)


def _decode_datagram(r: Reader, frame_type: int) -> DatagramFrame:
    """DATAGRAM: a Length beyond the input is a FRAME_ENCODING_ERROR (§4)."""
    has_length = frame_type == FrameType.DATAGRAM_WITH_LENGTH
    length = r.pull_varint() if has_length else r.remaining
    return DatagramFrame(r.pull_view(length), has_length)


#: Frame type -> decoder for both DATAGRAM types.
DATAGRAM_FRAME_DECODERS: Mapping[int, FrameDecoder] = {
    FrameType.DATAGRAM: _decode_datagram,
    FrameType.DATAGRAM_WITH_LENGTH: _decode_datagram,
}
