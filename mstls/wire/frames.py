"""QUIC v1 frame codecs (RFC 9000 §12.4, §19) and the ACK frequency frames.

Theory of operation
-------------------
Every frame is a small slotted class with ``encode(w)``, which writes the frame
type and body to a :class:`~mstls.wire.buffer.Writer`.  The classes are plain
(no ``attrs``: the compiled build makes them native classes, constructed
without the interpreter); :class:`~mstls.wire.frame_types.Frame` gives them
``__eq__`` and ``__repr__`` from their ``FIELDS``.  This
module holds the data path (PADDING, PING, ACK, CRYPTO, STREAM) and the public
entry points; :mod:`mstls.wire.control_frames` holds the other frames, all
re-exported here.

Decoding goes through a *table* ``{frame_type: decoder}``: :func:`decode_frame`
reads the type, looks it up and calls ``decoder(reader, frame_type)``.  A type
missing from the table is a FRAME_ENCODING_ERROR naming it (RFC 9000 §12.4).  Extensions (the ACK
frequency frames here, the QMux frames in :mod:`mstls.wire.qmux`) are other
tables built from :data:`FRAME_DECODERS`, so what a connection accepts is
decided by the table it passes, not by flags.

Decoders handle untrusted input.  They raise only
:class:`~mstls.exceptions.DecodeError` (FRAME_ENCODING_ERROR) or another
:class:`~mstls.exceptions.ProtocolError`, and every error leaving
:func:`decode_frame` carries the ``frame_type`` it happened in.  Lengths are
checked against the bytes present before anything is sliced, so a huge declared
length never allocates.  STREAM and CRYPTO payloads are ``memoryview`` slices of
the input (no copy): the caller keeps the input alive and unchanged while it
uses them.

Encoders trust their arguments up to cheap checks and raise ``ValueError`` on
values that cannot be put on the wire (a programming error, not a wire error).
The hot path of a packet builder does not build frame objects for stream data:
:func:`encode_stream_frame_header`, :func:`stream_frame_overhead` and
:func:`stream_frame_capacity` size and write STREAM headers directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, NamedTuple

from ..codes import TransportErrorCode
from ..exceptions import DecodeError, ProtocolError
from .buffer import VARINT_MAX, Reader, Writer, encode_varint, varint_size
from .control_frames import (
    ACK_FREQUENCY_DECODERS,
    CONTROL_FRAME_DECODERS,
    MAX_CONNECTION_ID_LENGTH,
    MAX_STREAMS_LIMIT,
    PATH_DATA_LENGTH,
    STATELESS_RESET_TOKEN_LENGTH,
    AckFrequencyFrame,
    ApplicationCloseFrame,
    ConnectionCloseFrame,
    DataBlockedFrame,
    HandshakeDoneFrame,
    ImmediateAckFrame,
    MaxDataFrame,
    MaxStreamDataFrame,
    MaxStreamsFrame,
    NewConnectionIdFrame,
    NewTokenFrame,
    PathChallengeFrame,
    PathResponseFrame,
    ResetStreamFrame,
    RetireConnectionIdFrame,
    StopSendingFrame,
    StreamDataBlockedFrame,
    StreamsBlockedFrame,
)
from .datagram_frames import DATAGRAM_FRAME_DECODERS, DatagramFrame
from .frame_types import (
    KNOWN_FRAME_TYPES,
    STREAM_FLAG_FIN,
    STREAM_FLAG_LEN,
    STREAM_FLAG_OFF,
    Frame,
    FrameDecoder,
    FrameType,
    frame_type_name,
)

__all__ = [
    "ACK_FREQUENCY_FRAME_DECODERS",
    "FRAME_DECODERS",
    "MAX_CONNECTION_ID_LENGTH",
    "MAX_STREAMS_LIMIT",
    "PATH_DATA_LENGTH",
    "STATELESS_RESET_TOKEN_LENGTH",
    "AckFrame",
    "AckFrequencyFrame",
    "ApplicationCloseFrame",
    "ConnectionCloseFrame",
    "CryptoFrame",
    "DataBlockedFrame",
    "DatagramFrame",
    "EcnCounts",
    "Frame",
    "FrameDecoder",
    "HandshakeDoneFrame",
    "ImmediateAckFrame",
    "MaxDataFrame",
    "MaxStreamDataFrame",
    "MaxStreamsFrame",
    "NewConnectionIdFrame",
    "NewTokenFrame",
    "PaddingFrame",
    "PathChallengeFrame",
    "PathResponseFrame",
    "PingFrame",
    "ResetStreamFrame",
    "RetireConnectionIdFrame",
    "StopSendingFrame",
    "StreamDataBlockedFrame",
    "StreamFrame",
    "StreamsBlockedFrame",
    "crypto_frame_capacity",
    "crypto_frame_overhead",
    "decode_frame",
    "decode_frames",
    "encode_crypto_frame_header",
    "encode_frame",
    "encode_frames",
    "encode_stream_frame_header",
    "stream_frame_capacity",
    "stream_frame_overhead",
]

Buffer = bytes | bytearray | memoryview


class EcnCounts(NamedTuple):
    """ECN counts of an ACK frame of type 0x03 (RFC 9000 §19.3.2)."""

    ect0: int
    ect1: int
    ce: int


# -- frames without fields ------------------------------------------------------
class PaddingFrame(Frame):
    """A run of ``length`` PADDING bytes (RFC 9000 §19.1), decoded as one object."""

    TYPE: ClassVar[int] = FrameType.PADDING
    FIELDS: ClassVar[tuple[str, ...]] = ("length",)
    __slots__ = FIELDS
    length: int

    def __init__(self, length: int = 1) -> None:
        self.length = length

    def encode(self, w: Writer) -> None:
        w.push_bytes(bytes(self.length))


class PingFrame(Frame):
    """PING (RFC 9000 §19.2)."""

    TYPE: ClassVar[int] = FrameType.PING
    __slots__ = ()

    def encode(self, w: Writer) -> None:
        w.push_uint8(FrameType.PING)


# -- ACK ------------------------------------------------------------------------
class AckFrame(Frame):
    """ACK (RFC 9000 §19.3).

    ``ranges`` are inclusive ``(smallest, largest)`` packet number pairs in
    descending order, disjoint and not adjacent.  ``ack_delay`` is the raw field
    (to be scaled by ``2**ack_delay_exponent`` microseconds).  ``ecn`` is present
    for type 0x03.
    """

    FIELDS: ClassVar[tuple[str, ...]] = ("ranges", "ack_delay", "ecn")
    __slots__ = FIELDS
    ranges: list[tuple[int, int]]
    ack_delay: int
    ecn: EcnCounts | None

    def __init__(
        self,
        ranges: list[tuple[int, int]],
        ack_delay: int = 0,
        ecn: EcnCounts | None = None,
    ) -> None:
        self.ranges = ranges
        self.ack_delay = ack_delay
        self.ecn = ecn

    @property
    def frame_type(self) -> int:
        return FrameType.ACK if self.ecn is None else FrameType.ACK_ECN

    @property
    def largest_acknowledged(self) -> int:
        return self.ranges[0][1]

    def encode(self, w: Writer) -> None:
        ranges = self.ranges
        if not ranges:
            raise ValueError("an ACK frame acknowledges at least one packet")
        smallest, largest = ranges[0]
        if smallest > largest:
            raise ValueError(f"bad ACK range {ranges[0]}")
        w.push_uint8(self.frame_type)
        w.push_varint(largest)
        w.push_varint(self.ack_delay)
        w.push_varint(len(ranges) - 1)
        w.push_varint(largest - smallest)
        for i in range(1, len(ranges)):
            low, high = ranges[i]
            gap = smallest - high - 2
            if gap < 0 or low > high:
                raise ValueError("ACK ranges must be descending, disjoint and not adjacent")
            w.push_varint(gap)
            w.push_varint(high - low)
            smallest = low
        if self.ecn is not None:
            w.push_varint(self.ecn.ect0)
            w.push_varint(self.ecn.ect1)
            w.push_varint(self.ecn.ce)


def _decode_ack(r: Reader, frame_type: int) -> AckFrame:
    """ACK, §19.3.1: a range reaching below packet number 0 is FRAME_ENCODING_ERROR."""
    largest = r.pull_varint()
    ack_delay = r.pull_varint()
    count = r.pull_varint()
    smallest = largest - r.pull_varint()
    if smallest < 0:
        raise DecodeError("ACK First ACK Range goes below packet number 0")
    if count > r.remaining // 2:  # each range needs at least two bytes
        raise DecodeError(f"ACK Range Count {count} exceeds the frame")
    ranges = [(smallest, largest)]
    pull = r.pull_varint
    for _ in range(count):
        largest = smallest - pull() - 2
        smallest = largest - pull()
        if smallest < 0:
            raise DecodeError("ACK Range goes below packet number 0")
        ranges.append((smallest, largest))
    ecn = None
    if frame_type == FrameType.ACK_ECN:
        ecn = EcnCounts(pull(), pull(), pull())
    return AckFrame(ranges, ack_delay, ecn)


# -- CRYPTO, STREAM ----------------------------------------------------------
class CryptoFrame(Frame):
    """CRYPTO (RFC 9000 §19.6); ``data`` is a view into the packet when decoded."""

    TYPE: ClassVar[int] = FrameType.CRYPTO
    FIELDS: ClassVar[tuple[str, ...]] = ("offset", "data")
    __slots__ = FIELDS
    offset: int
    data: Buffer

    def __init__(self, offset: int, data: Buffer) -> None:
        self.offset = offset
        self.data = data

    def encode(self, w: Writer) -> None:
        w.push_bytes(encode_crypto_frame_header(self.offset, len(self.data)))
        w.push_bytes(self.data)


def _check_end(offset: int, length: int) -> None:
    if offset + length > VARINT_MAX:
        raise DecodeError(f"data ends at {offset + length}, beyond 2**62-1")


def _decode_crypto(r: Reader, frame_type: int) -> CryptoFrame:
    """CRYPTO: offset + length above 2**62-1 is a FRAME_ENCODING_ERROR (§19.6)."""
    offset = r.pull_varint()
    length = r.pull_varint()
    _check_end(offset, length)
    return CryptoFrame(offset, r.pull_view(length))


class StreamFrame(Frame):
    """STREAM (RFC 9000 §19.8), types 0x08..0x0f.

    ``has_length`` is the LEN bit: without it the data runs to the end of the
    packet (or QMux record), so such a frame must come last.  The OFF bit is set
    when ``offset`` is non-zero.  ``data`` is a view into the packet when decoded.
    """

    FIELDS: ClassVar[tuple[str, ...]] = ("stream_id", "offset", "data", "fin", "has_length")
    __slots__ = FIELDS
    stream_id: int
    offset: int
    data: Buffer
    fin: bool
    has_length: bool

    def __init__(
        self,
        stream_id: int,
        offset: int = 0,
        data: Buffer = b"",
        fin: bool = False,
        has_length: bool = True,
    ) -> None:
        self.stream_id = stream_id
        self.offset = offset
        self.data = data
        self.fin = fin
        self.has_length = has_length

    @property
    def frame_type(self) -> int:
        return (
            FrameType.STREAM
            | (STREAM_FLAG_OFF if self.offset else 0)
            | (STREAM_FLAG_LEN if self.has_length else 0)
            | (STREAM_FLAG_FIN if self.fin else 0)
        )

    def encode(self, w: Writer) -> None:
        w.push_bytes(
            encode_stream_frame_header(
                self.stream_id, self.offset, len(self.data), self.fin, with_length=self.has_length
            )
        )
        w.push_bytes(self.data)


def _decode_stream(r: Reader, frame_type: int) -> StreamFrame:
    """STREAM: offset + length above 2**62-1 is a FRAME_ENCODING_ERROR (§19.8)."""
    stream_id = r.pull_varint()
    offset = r.pull_varint() if frame_type & STREAM_FLAG_OFF else 0
    has_length = bool(frame_type & STREAM_FLAG_LEN)
    length = r.pull_varint() if has_length else r.remaining
    _check_end(offset, length)
    return StreamFrame(
        stream_id, offset, r.pull_view(length), bool(frame_type & STREAM_FLAG_FIN), has_length
    )


def _decode_padding(r: Reader, frame_type: int) -> PaddingFrame:
    """Consume the whole run of zero bytes that follows (RFC 9000 §19.1).

    The run's length comes from the big-endian integer value of the rest of the
    input: its leading zero bytes are the padding (one C-speed pass, ~0.5 µs
    for a 1200-byte packet, where a regex takes ~5 µs).
    """
    start = r.tell()
    n = r.remaining
    value = int.from_bytes(r.data[start : start + n])
    zeros = n - (value.bit_length() + 7) // 8
    r.seek(start + zeros)
    return PaddingFrame(zeros + 1)


def _decode_ping(r: Reader, frame_type: int) -> PingFrame:
    return PingFrame()


# -- dispatch -------------------------------------------------------------------------
#: The QUIC v1 frame table (RFC 9000 §19) and DATAGRAM (RFC 9221): type -> decoder.
FRAME_DECODERS: Mapping[int, FrameDecoder] = {
    FrameType.PADDING: _decode_padding,
    FrameType.PING: _decode_ping,
    FrameType.ACK: _decode_ack,
    FrameType.ACK_ECN: _decode_ack,
    FrameType.CRYPTO: _decode_crypto,
    **dict.fromkeys(range(FrameType.STREAM, FrameType.STREAM + 8), _decode_stream),
    **CONTROL_FRAME_DECODERS,
    # RFC 9221: always decoded, so that an unnegotiated DATAGRAM is the
    # PROTOCOL_VIOLATION of §3 (the connection checks), not an unknown frame.
    **DATAGRAM_FRAME_DECODERS,
}

#: QUIC v1 plus the ACK frequency frames, once min_ack_delay was advertised.
ACK_FREQUENCY_FRAME_DECODERS: Mapping[int, FrameDecoder] = {
    **FRAME_DECODERS,
    **ACK_FREQUENCY_DECODERS,
}


def decode_frame(r: Reader, decoders: Mapping[int, FrameDecoder] = FRAME_DECODERS) -> Frame:
    """Decode one frame at the reader's position (RFC 9000 §12.4).

    Handles untrusted input.  An unknown type is a FRAME_ENCODING_ERROR; a
    type not in its shortest encoding is a PROTOCOL_VIOLATION (§12.4 allows
    it); every error raised carries ``frame_type``.
    """
    start = r.tell()
    frame_type = r.pull_varint()
    size = r.tell() - start
    if size != 1 and size != varint_size(frame_type):
        raise ProtocolError(
            f"frame type {frame_type:#x} not in its shortest encoding",
            error_code=TransportErrorCode.PROTOCOL_VIOLATION,
            frame_type=frame_type,
        )
    decoder = decoders.get(frame_type)
    if decoder is None:
        name = frame_type_name(frame_type)
        if frame_type in KNOWN_FRAME_TYPES:  # an extension this table leaves out
            name += " is not allowed here"
        raise DecodeError(name, frame_type=frame_type)
    try:
        return decoder(r, frame_type)
    except ProtocolError as exc:
        if exc.frame_type is None:
            exc.frame_type = frame_type
            exc.reason = f"{frame_type_name(frame_type)}: {exc.reason}"
            exc.args = (exc.reason,)
        raise


def decode_frames(
    data: Buffer, decoders: Mapping[int, FrameDecoder] = FRAME_DECODERS
) -> list[Frame]:
    """Decode a packet payload (or QMux record) into frames (RFC 9000 §12.4).

    Handles untrusted input: a truncated last frame is a FRAME_ENCODING_ERROR.
    An empty payload gives an empty list (the caller decides whether that is a
    PROTOCOL_VIOLATION, as it is for QUIC packets).
    """
    r = Reader(data)
    frames: list[Frame] = []
    append = frames.append
    while not r.eof():
        append(decode_frame(r, decoders))
    return frames


def encode_frame(frame: Frame) -> bytes:
    """The wire encoding of one frame."""
    w = Writer()
    frame.encode(w)
    return w.data


def encode_frames(frames: list[Frame]) -> bytes:
    """The wire encoding of several frames, back to back."""
    w = Writer()
    for frame in frames:
        frame.encode(w)
    return w.data


# -- hot-path helpers for packet builders ---------------------------------------------
def encode_stream_frame_header(
    stream_id: int, offset: int, length: int, fin: bool, *, with_length: bool = True
) -> bytes:
    """Type, Stream ID, [Offset], [Length] of a STREAM frame (RFC 9000 §19.8).

    The OFF bit is set only when ``offset`` is non-zero.  Without ``with_length``
    the data must run to the end of the packet.
    """
    frame_type = (
        FrameType.STREAM
        | (STREAM_FLAG_OFF if offset else 0)
        | (STREAM_FLAG_LEN if with_length else 0)
        | (STREAM_FLAG_FIN if fin else 0)
    )
    header = bytearray((frame_type,))
    header += encode_varint(stream_id)
    if offset:
        header += encode_varint(offset)
    if with_length:
        header += encode_varint(length)
    return bytes(header)


def stream_frame_overhead(
    stream_id: int, offset: int, length: int, *, with_length: bool = True
) -> int:
    """Bytes of a STREAM frame besides its data (the size of its header)."""
    size = 1 + varint_size(stream_id)
    if offset:
        size += varint_size(offset)
    if with_length:
        size += varint_size(length)
    return size


_LENGTH_FIELD_LIMITS = ((1, 0x3F), (2, 0x3FFF), (4, 0x3FFFFFFF), (8, VARINT_MAX))


def _capacity(room: int, offset: int) -> int:
    # Largest n with n + varint_size(n) <= room, and offset + n <= 2**62-1.
    for field_size, limit in _LENGTH_FIELD_LIMITS:
        n = room - field_size
        if n <= limit:
            return max(0, min(n, VARINT_MAX - offset))
    return 0  # pragma: no cover - the last limit always matches


def stream_frame_capacity(space: int, stream_id: int, offset: int) -> int:
    """Most data bytes a STREAM frame with a Length field can carry in ``space`` bytes.

    Returns 0 when not even one data byte fits (a zero-length FIN frame may
    still fit: compare ``stream_frame_overhead(stream_id, offset, 0)`` to
    ``space``).
    """
    room = space - 1 - varint_size(stream_id) - (varint_size(offset) if offset else 0)
    return _capacity(room, offset)


def encode_crypto_frame_header(offset: int, length: int) -> bytes:
    """Type, Offset, Length of a CRYPTO frame (RFC 9000 §19.6)."""
    return bytes((FrameType.CRYPTO,)) + encode_varint(offset) + encode_varint(length)


def crypto_frame_overhead(offset: int, length: int) -> int:
    """Bytes of a CRYPTO frame besides its data."""
    return 1 + varint_size(offset) + varint_size(length)


def crypto_frame_capacity(space: int, offset: int) -> int:
    """Most data bytes a CRYPTO frame can carry in ``space`` bytes (0 if none)."""
    return _capacity(space - 1 - varint_size(offset), offset)
