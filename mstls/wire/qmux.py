"""QMux records and frames (draft-ietf-quic-qmux-02 §3.2, §4).

Theory of operation
-------------------
On a byte stream (TLS application data over TCP) QMux sends QUIC v1 frames in
records: ``Size (i)`` then exactly ``Size`` bytes of frames (§3.2).  A frame
never spans records; a record whose last frame is cut short is a
FRAME_ENCODING_ERROR, which :func:`decode_record` gets for free from the frame
decoders.

:class:`RecordReader` turns arbitrarily split plaintext into whole records.
Records complete inside one ``feed`` are returned as ``memoryview`` slices of
the fed bytes (no copy); only an incomplete tail is buffered, and the declared
``Size`` is checked against our advertised ``max_record_size`` as soon as it is
read, so the buffer never exceeds one record plus its header (bounded memory).

Frames: QMux allows only a subset of QUIC v1 frames (§4).  The prohibited ones
(:data:`QMUX_FORBIDDEN_FRAME_TYPES`) are FRAME_ENCODING_ERROR on receipt, so
:data:`QMUX_FRAME_DECODERS` maps them to a decoder that raises exactly that,
and adds QX_TRANSPORT_PARAMETERS (§4.2) and QX_PING (§4.3).  Ordering rules
(QX_TRANSPORT_PARAMETERS first, QX_PING sequence numbers) are the connection's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from ..exceptions import DecodeError
from .buffer import VARINT_MAX, Reader, Writer, decode_varint, encode_varint
from .frame_types import FrameType, QMuxFrameType, frame_type_name
from .frames import FRAME_DECODERS, Frame, FrameDecoder, decode_frames
from .transport_params import (
    DEFAULT_MAX_RECORD_SIZE,
    TransportParameters,
    decode_transport_parameters,
    encode_transport_parameters,
)

__all__ = [
    "DEFAULT_MAX_RECORD_SIZE",
    "QMUX_FORBIDDEN_FRAME_TYPES",
    "QMUX_FRAME_DECODERS",
    "QMUX_PERMITTED_FRAME_TYPES",
    "QMuxFrameType",
    "QxPingFrame",
    "QxTransportParametersFrame",
    "RecordReader",
    "decode_record",
    "encode_record",
    "record_header",
]

#: draft-ietf-quic-qmux-02 §4: QUIC v1 frames QMux prohibits.
QMUX_FORBIDDEN_FRAME_TYPES: frozenset[int] = frozenset(
    {
        FrameType.PING,
        FrameType.ACK,
        FrameType.ACK_ECN,
        FrameType.CRYPTO,
        FrameType.NEW_TOKEN,
        FrameType.NEW_CONNECTION_ID,
        FrameType.RETIRE_CONNECTION_ID,
        FrameType.PATH_CHALLENGE,
        FrameType.PATH_RESPONSE,
        FrameType.HANDSHAKE_DONE,
    }
)
#: draft-ietf-quic-qmux-02 §4: the QUIC v1 frames QMux uses, plus its own.
QMUX_PERMITTED_FRAME_TYPES: frozenset[int] = (
    frozenset(FRAME_DECODERS) - QMUX_FORBIDDEN_FRAME_TYPES
) | frozenset(QMuxFrameType)


class QxTransportParametersFrame(Frame):
    """QX_TRANSPORT_PARAMETERS (draft-ietf-quic-qmux-02 §4.2): the first frame sent."""

    TYPE: ClassVar[int] = QMuxFrameType.QX_TRANSPORT_PARAMETERS
    FIELDS: ClassVar[tuple[str, ...]] = ("parameters",)
    __slots__ = FIELDS
    parameters: TransportParameters

    def __init__(self, parameters: TransportParameters) -> None:
        self.parameters = parameters

    def encode(self, w: Writer) -> None:
        w.push_varint(QMuxFrameType.QX_TRANSPORT_PARAMETERS)
        w.push_varint_block(encode_transport_parameters(self.parameters))


def _decode_qx_transport_parameters(r: Reader, frame_type: int) -> QxTransportParametersFrame:
    """Truncation is a FRAME_ENCODING_ERROR; bad parameters a TRANSPORT_PARAMETER_ERROR."""
    body = r.pull_view(r.pull_varint())
    return QxTransportParametersFrame(decode_transport_parameters(body))


class QxPingFrame(Frame):
    """QX_PING (draft-ietf-quic-qmux-02 §4.3): a request, or the response echoing it."""

    FIELDS: ClassVar[tuple[str, ...]] = ("sequence_number", "response")
    __slots__ = FIELDS
    sequence_number: int
    response: bool

    def __init__(self, sequence_number: int, response: bool = False) -> None:
        self.sequence_number = sequence_number
        self.response = response

    @property
    def frame_type(self) -> int:
        if self.response:
            return QMuxFrameType.QX_PING_RESPONSE
        return QMuxFrameType.QX_PING_REQUEST

    def encode(self, w: Writer) -> None:
        w.push_varint(self.frame_type)
        w.push_varint(self.sequence_number)


def _decode_qx_ping(r: Reader, frame_type: int) -> QxPingFrame:
    return QxPingFrame(r.pull_varint(), frame_type == QMuxFrameType.QX_PING_RESPONSE)


def _prohibited(r: Reader, frame_type: int) -> Frame:
    raise DecodeError(f"{frame_type_name(frame_type)} is prohibited in QMux")


#: Frame table for QMux records: QUIC v1 minus the prohibited frames (which
#: raise FRAME_ENCODING_ERROR), plus QX_TRANSPORT_PARAMETERS and QX_PING.
QMUX_FRAME_DECODERS: Mapping[int, FrameDecoder] = {
    **FRAME_DECODERS,
    **dict.fromkeys(QMUX_FORBIDDEN_FRAME_TYPES, _prohibited),
    QMuxFrameType.QX_TRANSPORT_PARAMETERS: _decode_qx_transport_parameters,
    QMuxFrameType.QX_PING_REQUEST: _decode_qx_ping,
    QMuxFrameType.QX_PING_RESPONSE: _decode_qx_ping,
}


def decode_record(
    payload: bytes | bytearray | memoryview,
    decoders: Mapping[int, FrameDecoder] = QMUX_FRAME_DECODERS,
) -> list[Frame]:
    """The frames of one record's Frames field (§3.2).

    Handles untrusted input: a truncated final frame or a prohibited frame is a
    FRAME_ENCODING_ERROR.
    """
    return decode_frames(payload, decoders)


def record_header(size: int) -> bytes:
    """The Size field of a record whose Frames field has ``size`` bytes (§3.2)."""
    return encode_varint(size)


def encode_record(frames: bytes | bytearray | memoryview, max_size: int | None = None) -> bytes:
    """A whole QMux record around already encoded ``frames`` (§3.2).

    ``max_size`` is the peer's max_record_size; exceeding it raises ``ValueError``.
    """
    if max_size is not None and len(frames) > max_size:
        raise ValueError(f"record of {len(frames)} bytes exceeds the peer's limit {max_size}")
    return encode_varint(len(frames)) + bytes(frames)


class RecordReader:
    """Splits a byte stream into QMux record payloads (§3.2).

    ``feed(data)`` returns the Frames fields of every record completed by
    ``data``.  Records wholly inside ``data`` are ``memoryview`` slices of it
    (keep ``data`` unchanged while using them); a record completed from
    buffered bytes is returned as ``bytes``.  A Size above ``max_record_size``
    (the value we advertised) is a FRAME_ENCODING_ERROR, raised on this and
    every later call.  Handles untrusted input.
    """

    __slots__ = ("_buffer", "_error", "max_record_size")

    def __init__(self, max_record_size: int = DEFAULT_MAX_RECORD_SIZE) -> None:
        if not DEFAULT_MAX_RECORD_SIZE <= max_record_size <= VARINT_MAX:
            raise ValueError(
                f"max_record_size {max_record_size} outside {DEFAULT_MAX_RECORD_SIZE}..2**62-1"
            )
        self.max_record_size = max_record_size
        self._buffer = bytearray()
        self._error: DecodeError | None = None

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete record held back (0 at a record boundary).

        At end of stream, a non-zero value means the peer stopped mid-record.
        """
        return len(self._buffer)

    def _check_size(self, size: int) -> None:
        if size > self.max_record_size:
            self._error = DecodeError(
                f"QMux record of {size} bytes exceeds max_record_size {self.max_record_size}"
            )
            raise self._error

    def _complete_buffered(self, view: memoryview, out: list[bytes | memoryview]) -> int:
        """Move bytes from ``view`` into the pending record; return how many were used."""
        buf = self._buffer
        used = 0
        while True:
            header_size = 1 << (buf[0] >> 6)
            if len(buf) >= header_size:
                size, header_size = decode_varint(buf, 0)
                self._check_size(size)
                missing = header_size + size - len(buf)
                if not missing:  # handed over as it is (no copy); a new buffer follows
                    out.append(memoryview(buf)[header_size:])
                    self._buffer = bytearray()
                    return used
            else:
                missing = header_size - len(buf)
            take = min(missing, len(view) - used)
            if not take:
                return used
            buf += view[used : used + take]
            used += take

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes | memoryview]:
        """Add received bytes; return the payloads of the records they complete."""
        if self._error is not None:
            raise self._error
        view = memoryview(data).cast("B")
        out: list[bytes | memoryview] = []
        pos = 0
        end = len(view)
        if self._buffer and end:
            pos = self._complete_buffered(view, out)
            if self._buffer:
                return out
        while pos < end:
            if pos + (1 << (view[pos] >> 6)) > end:  # Size field incomplete
                break
            size, start = decode_varint(view, pos)
            self._check_size(size)
            if start + size > end:
                break
            out.append(view[start : start + size])
            pos = start + size
        if pos < end:
            self._buffer += view[pos:]
        return out
