"""Control frames: every QUIC frame off the data and ACK hot path (RFC 9000 §19).

Stream control (RESET_STREAM, STOP_SENDING), flow control (MAX_*, *_BLOCKED),
NEW_TOKEN, connection IDs, path validation, CONNECTION_CLOSE, HANDSHAKE_DONE,
and the ACK frequency frames (draft-ietf-quic-ack-frequency).  Each is a slotted
class (:class:`~mstls.wire.frame_types.Frame`) with ``encode(w)`` and a decoder
in :data:`CONTROL_FRAME_DECODERS` or :data:`ACK_FREQUENCY_DECODERS`;
:mod:`mstls.wire.frames` assembles the full tables and re-exports every class,
so users import from there.

Decoders handle untrusted input and raise only
:class:`~mstls.exceptions.DecodeError` (FRAME_ENCODING_ERROR); encoders raise
``ValueError`` on values that cannot be put on the wire.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from ..exceptions import DecodeError
from .buffer import Reader, Writer, encode_varint
from .frame_types import Frame, FrameDecoder, FrameType

__all__ = [
    "ACK_FREQUENCY_DECODERS",
    "CONTROL_FRAME_DECODERS",
    "MAX_CONNECTION_ID_LENGTH",
    "MAX_STREAMS_LIMIT",
    "MIN_CONNECTION_ID_LENGTH",
    "PATH_DATA_LENGTH",
    "STATELESS_RESET_TOKEN_LENGTH",
    "AckFrequencyFrame",
    "ApplicationCloseFrame",
    "ConnectionCloseFrame",
    "DataBlockedFrame",
    "HandshakeDoneFrame",
    "ImmediateAckFrame",
    "MaxDataFrame",
    "MaxStreamDataFrame",
    "MaxStreamsFrame",
    "NewConnectionIdFrame",
    "NewTokenFrame",
    "PathChallengeFrame",
    "PathResponseFrame",
    "ResetStreamFrame",
    "RetireConnectionIdFrame",
    "StopSendingFrame",
    "StreamDataBlockedFrame",
    "StreamsBlockedFrame",
    "encode_new_connection_id",
]

#: Connection IDs in NEW_CONNECTION_ID are 1..20 bytes (RFC 9000 §19.15).
MAX_CONNECTION_ID_LENGTH = 20
MIN_CONNECTION_ID_LENGTH = 1
#: Stateless reset tokens are 16 bytes (RFC 9000 §10.3).
STATELESS_RESET_TOKEN_LENGTH = 16
#: PATH_CHALLENGE / PATH_RESPONSE carry 8 bytes (RFC 9000 §19.17).
PATH_DATA_LENGTH = 8
#: Stream counts above 2**60 cannot be used (RFC 9000 §19.11, §19.14).
MAX_STREAMS_LIMIT = 1 << 60


# -- stream control ---------------------------------------------------------------
class ResetStreamFrame(Frame):
    """RESET_STREAM (RFC 9000 §19.4)."""

    TYPE: ClassVar[int] = FrameType.RESET_STREAM
    FIELDS: ClassVar[tuple[str, ...]] = ("stream_id", "error_code", "final_size")
    __slots__ = FIELDS
    stream_id: int
    error_code: int
    final_size: int

    def __init__(self, stream_id: int, error_code: int, final_size: int) -> None:
        self.stream_id = stream_id
        self.error_code = error_code
        self.final_size = final_size

    def encode(self, w: Writer) -> None:
        w.push_uint8(FrameType.RESET_STREAM)
        w.push_varint(self.stream_id)
        w.push_varint(self.error_code)
        w.push_varint(self.final_size)


def _decode_reset_stream(r: Reader, frame_type: int) -> ResetStreamFrame:
    return ResetStreamFrame(r.pull_varint(), r.pull_varint(), r.pull_varint())


class StopSendingFrame(Frame):
    """STOP_SENDING (RFC 9000 §19.5)."""

    TYPE: ClassVar[int] = FrameType.STOP_SENDING
    FIELDS: ClassVar[tuple[str, ...]] = ("stream_id", "error_code")
    __slots__ = FIELDS
    stream_id: int
    error_code: int

    def __init__(self, stream_id: int, error_code: int) -> None:
        self.stream_id = stream_id
        self.error_code = error_code

    def encode(self, w: Writer) -> None:
        w.push_uint8(FrameType.STOP_SENDING)
        w.push_varint(self.stream_id)
        w.push_varint(self.error_code)


def _decode_stop_sending(r: Reader, frame_type: int) -> StopSendingFrame:
    return StopSendingFrame(r.pull_varint(), r.pull_varint())


# -- flow control ---------------------------------------------------------------------
class MaxDataFrame(Frame):
    """MAX_DATA (RFC 9000 §19.9)."""

    TYPE: ClassVar[int] = FrameType.MAX_DATA
    FIELDS: ClassVar[tuple[str, ...]] = ("maximum",)
    __slots__ = FIELDS
    maximum: int

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum

    def encode(self, w: Writer) -> None:
        w.push_uint8(FrameType.MAX_DATA)
        w.push_varint(self.maximum)


class MaxStreamDataFrame(Frame):
    """MAX_STREAM_DATA (RFC 9000 §19.10)."""

    TYPE: ClassVar[int] = FrameType.MAX_STREAM_DATA
    FIELDS: ClassVar[tuple[str, ...]] = ("stream_id", "maximum")
    __slots__ = FIELDS
    stream_id: int
    maximum: int

    def __init__(self, stream_id: int, maximum: int) -> None:
        self.stream_id = stream_id
        self.maximum = maximum

    def encode(self, w: Writer) -> None:
        w.push_uint8(FrameType.MAX_STREAM_DATA)
        w.push_varint(self.stream_id)
        w.push_varint(self.maximum)


class MaxStreamsFrame(Frame):
    """MAX_STREAMS (RFC 9000 §19.11): 0x12 bidirectional, 0x13 unidirectional."""

    FIELDS: ClassVar[tuple[str, ...]] = ("maximum", "bidi")
    __slots__ = FIELDS
    maximum: int
    bidi: bool

    def __init__(self, maximum: int, bidi: bool = True) -> None:
        self.maximum = maximum
        self.bidi = bidi

    @property
    def frame_type(self) -> int:
        return FrameType.MAX_STREAMS_BIDI if self.bidi else FrameType.MAX_STREAMS_UNI

    def encode(self, w: Writer) -> None:
        w.push_uint8(self.frame_type)
        w.push_varint(self.maximum)


class DataBlockedFrame(Frame):
    """DATA_BLOCKED (RFC 9000 §19.12)."""

    TYPE: ClassVar[int] = FrameType.DATA_BLOCKED
    FIELDS: ClassVar[tuple[str, ...]] = ("limit",)
    __slots__ = FIELDS
    limit: int

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def encode(self, w: Writer) -> None:
        w.push_uint8(FrameType.DATA_BLOCKED)
        w.push_varint(self.limit)


class StreamDataBlockedFrame(Frame):
    """STREAM_DATA_BLOCKED (RFC 9000 §19.13)."""

    TYPE: ClassVar[int] = FrameType.STREAM_DATA_BLOCKED
    FIELDS: ClassVar[tuple[str, ...]] = ("stream_id", "limit")
    __slots__ = FIELDS
    stream_id: int
    limit: int

    def __init__(self, stream_id: int, limit: int) -> None:
        self.stream_id = stream_id
        self.limit = limit

    def encode(self, w: Writer) -> None:
        w.push_uint8(FrameType.STREAM_DATA_BLOCKED)
        w.push_varint(self.stream_id)
        w.push_varint(self.limit)


class StreamsBlockedFrame(Frame):
    """STREAMS_BLOCKED (RFC 9000 §19.14): 0x16 bidirectional, 0x17 unidirectional."""

    FIELDS: ClassVar[tuple[str, ...]] = ("limit", "bidi")
    __slots__ = FIELDS
    limit: int
    bidi: bool

    def __init__(self, limit: int, bidi: bool = True) -> None:
        self.limit = limit
        self.bidi = bidi

    @property
    def frame_type(self) -> int:
        return FrameType.STREAMS_BLOCKED_BIDI if self.bidi else FrameType.STREAMS_BLOCKED_UNI

    def encode(self, w: Writer) -> None:
        w.push_uint8(self.frame_type)
        w.push_varint(self.limit)


def _decode_max_data(r: Reader, frame_type: int) -> MaxDataFrame:
    return MaxDataFrame(r.pull_varint())


def _decode_max_stream_data(r: Reader, frame_type: int) -> MaxStreamDataFrame:
    return MaxStreamDataFrame(r.pull_varint(), r.pull_varint())


def _pull_stream_count(r: Reader) -> int:
    count = r.pull_varint()
    if count > MAX_STREAMS_LIMIT:
        raise DecodeError(f"stream count {count} exceeds 2**60")
    return count


def _decode_max_streams(r: Reader, frame_type: int) -> MaxStreamsFrame:
    """MAX_STREAMS: a count above 2**60 is a FRAME_ENCODING_ERROR (§19.11)."""
    return MaxStreamsFrame(_pull_stream_count(r), frame_type == FrameType.MAX_STREAMS_BIDI)


def _decode_data_blocked(r: Reader, frame_type: int) -> DataBlockedFrame:
    return DataBlockedFrame(r.pull_varint())


def _decode_stream_data_blocked(r: Reader, frame_type: int) -> StreamDataBlockedFrame:
    return StreamDataBlockedFrame(r.pull_varint(), r.pull_varint())


def _decode_streams_blocked(r: Reader, frame_type: int) -> StreamsBlockedFrame:
    """STREAMS_BLOCKED: a count above 2**60 is a FRAME_ENCODING_ERROR (§19.14)."""
    return StreamsBlockedFrame(_pull_stream_count(r), frame_type == FrameType.STREAMS_BLOCKED_BIDI)


# -- NEW_TOKEN ---------------------------------------------------------------------
class NewTokenFrame(Frame):
    """NEW_TOKEN (RFC 9000 §19.7); the token is never empty."""

    TYPE: ClassVar[int] = FrameType.NEW_TOKEN
    FIELDS: ClassVar[tuple[str, ...]] = ("token",)
    __slots__ = FIELDS
    token: bytes

    def __init__(self, token: bytes) -> None:
        self.token = token

    def encode(self, w: Writer) -> None:
        if not self.token:
            raise ValueError("NEW_TOKEN needs a non-empty token")
        w.push_uint8(FrameType.NEW_TOKEN)
        w.push_varint_block(self.token)


def _decode_new_token(r: Reader, frame_type: int) -> NewTokenFrame:
    token = r.pull_varint_block()
    if not token:
        raise DecodeError("NEW_TOKEN with an empty token")
    return NewTokenFrame(token)


# -- connection IDs and paths -------------------------------------------------------------
class NewConnectionIdFrame(Frame):
    """NEW_CONNECTION_ID (RFC 9000 §19.15)."""

    TYPE: ClassVar[int] = FrameType.NEW_CONNECTION_ID
    FIELDS: ClassVar[tuple[str, ...]] = (
        "sequence_number",
        "retire_prior_to",
        "connection_id",
        "stateless_reset_token",
    )
    __slots__ = FIELDS
    sequence_number: int
    retire_prior_to: int
    connection_id: bytes
    stateless_reset_token: bytes

    def __init__(
        self,
        sequence_number: int,
        retire_prior_to: int,
        connection_id: bytes,
        stateless_reset_token: bytes,
    ) -> None:
        self.sequence_number = sequence_number
        self.retire_prior_to = retire_prior_to
        self.connection_id = connection_id
        self.stateless_reset_token = stateless_reset_token

    def encode(self, w: Writer) -> None:
        cid = self.connection_id
        if not MIN_CONNECTION_ID_LENGTH <= len(cid) <= MAX_CONNECTION_ID_LENGTH:
            raise ValueError(f"connection ID of {len(cid)} bytes")
        if len(self.stateless_reset_token) != STATELESS_RESET_TOKEN_LENGTH:
            raise ValueError("stateless reset token must be 16 bytes")
        w.push_uint8(FrameType.NEW_CONNECTION_ID)
        w.push_varint(self.sequence_number)
        w.push_varint(self.retire_prior_to)
        w.push_block(1, cid)
        w.push_bytes(self.stateless_reset_token)


def encode_new_connection_id(
    sequence_number: int, retire_prior_to: int, connection_id: bytes, token: bytes
) -> bytes:
    """The bytes of ``NewConnectionIdFrame(...)``, without building the frame object
    (a server issues several per handshake).  Same checks as its ``encode``."""
    if not MIN_CONNECTION_ID_LENGTH <= len(connection_id) <= MAX_CONNECTION_ID_LENGTH:
        raise ValueError(f"connection ID of {len(connection_id)} bytes")
    if len(token) != STATELESS_RESET_TOKEN_LENGTH:
        raise ValueError("stateless reset token must be 16 bytes")
    return b"".join(
        (
            _NEW_CONNECTION_ID_TYPE,
            encode_varint(sequence_number),
            encode_varint(retire_prior_to),
            bytes((len(connection_id),)),
            connection_id,
            token,
        )
    )


_NEW_CONNECTION_ID_TYPE = bytes((FrameType.NEW_CONNECTION_ID,))


def _decode_new_connection_id(r: Reader, frame_type: int) -> NewConnectionIdFrame:
    """NEW_CONNECTION_ID: length outside 1..20 or Retire Prior To above the
    sequence number is a FRAME_ENCODING_ERROR (§19.15)."""
    sequence_number = r.pull_varint()
    retire_prior_to = r.pull_varint()
    length = r.pull_uint8()
    if not MIN_CONNECTION_ID_LENGTH <= length <= MAX_CONNECTION_ID_LENGTH:
        raise DecodeError(f"NEW_CONNECTION_ID with a {length}-byte connection ID")
    if retire_prior_to > sequence_number:
        raise DecodeError(
            f"NEW_CONNECTION_ID Retire Prior To {retire_prior_to} exceeds "
            f"Sequence Number {sequence_number}"
        )
    cid = r.pull_bytes(length)
    token = r.pull_bytes(STATELESS_RESET_TOKEN_LENGTH)
    return NewConnectionIdFrame(sequence_number, retire_prior_to, cid, token)


class RetireConnectionIdFrame(Frame):
    """RETIRE_CONNECTION_ID (RFC 9000 §19.16)."""

    TYPE: ClassVar[int] = FrameType.RETIRE_CONNECTION_ID
    FIELDS: ClassVar[tuple[str, ...]] = ("sequence_number",)
    __slots__ = FIELDS
    sequence_number: int

    def __init__(self, sequence_number: int) -> None:
        self.sequence_number = sequence_number

    def encode(self, w: Writer) -> None:
        w.push_uint8(FrameType.RETIRE_CONNECTION_ID)
        w.push_varint(self.sequence_number)


def _decode_retire_connection_id(r: Reader, frame_type: int) -> RetireConnectionIdFrame:
    return RetireConnectionIdFrame(r.pull_varint())


def _push_path_data(w: Writer, frame_type: int, data: bytes) -> None:
    if len(data) != PATH_DATA_LENGTH:
        raise ValueError("PATH_CHALLENGE/PATH_RESPONSE data must be 8 bytes")
    w.push_uint8(frame_type)
    w.push_bytes(data)


class PathChallengeFrame(Frame):
    """PATH_CHALLENGE (RFC 9000 §19.17): 8 bytes of data."""

    TYPE: ClassVar[int] = FrameType.PATH_CHALLENGE
    FIELDS: ClassVar[tuple[str, ...]] = ("data",)
    __slots__ = FIELDS
    data: bytes

    def __init__(self, data: bytes) -> None:
        self.data = data

    def encode(self, w: Writer) -> None:
        _push_path_data(w, FrameType.PATH_CHALLENGE, self.data)


class PathResponseFrame(Frame):
    """PATH_RESPONSE (RFC 9000 §19.18): echoes the challenge's 8 bytes."""

    TYPE: ClassVar[int] = FrameType.PATH_RESPONSE
    FIELDS: ClassVar[tuple[str, ...]] = ("data",)
    __slots__ = FIELDS
    data: bytes

    def __init__(self, data: bytes) -> None:
        self.data = data

    def encode(self, w: Writer) -> None:
        _push_path_data(w, FrameType.PATH_RESPONSE, self.data)


def _decode_path_challenge(r: Reader, frame_type: int) -> PathChallengeFrame:
    return PathChallengeFrame(r.pull_bytes(PATH_DATA_LENGTH))


def _decode_path_response(r: Reader, frame_type: int) -> PathResponseFrame:
    return PathResponseFrame(r.pull_bytes(PATH_DATA_LENGTH))


# -- CONNECTION_CLOSE, HANDSHAKE_DONE --------------------------------------------------
class ConnectionCloseFrame(Frame):
    """CONNECTION_CLOSE of type 0x1c: a transport error (RFC 9000 §19.19).

    ``offending_frame_type`` is the type of the frame that triggered the error
    (0 when unknown); ``reason`` is the phrase's bytes (UTF-8 by convention).
    """

    TYPE: ClassVar[int] = FrameType.CONNECTION_CLOSE
    FIELDS: ClassVar[tuple[str, ...]] = ("error_code", "offending_frame_type", "reason")
    __slots__ = FIELDS
    error_code: int
    offending_frame_type: int
    reason: bytes

    def __init__(
        self,
        error_code: int,
        offending_frame_type: int = 0,
        reason: bytes = b"",
    ) -> None:
        self.error_code = error_code
        self.offending_frame_type = offending_frame_type
        self.reason = reason

    @property
    def reason_text(self) -> str:
        return self.reason.decode("utf-8", "replace")

    def encode(self, w: Writer) -> None:
        w.push_uint8(FrameType.CONNECTION_CLOSE)
        w.push_varint(self.error_code)
        w.push_varint(self.offending_frame_type)
        w.push_varint_block(self.reason)


class ApplicationCloseFrame(Frame):
    """CONNECTION_CLOSE of type 0x1d: an application error (RFC 9000 §19.19)."""

    TYPE: ClassVar[int] = FrameType.CONNECTION_CLOSE_APPLICATION
    FIELDS: ClassVar[tuple[str, ...]] = ("error_code", "reason")
    __slots__ = FIELDS
    error_code: int
    reason: bytes

    def __init__(self, error_code: int, reason: bytes = b"") -> None:
        self.error_code = error_code
        self.reason = reason

    @property
    def reason_text(self) -> str:
        return self.reason.decode("utf-8", "replace")

    def encode(self, w: Writer) -> None:
        w.push_uint8(FrameType.CONNECTION_CLOSE_APPLICATION)
        w.push_varint(self.error_code)
        w.push_varint_block(self.reason)


class HandshakeDoneFrame(Frame):
    """HANDSHAKE_DONE (RFC 9000 §19.20)."""

    TYPE: ClassVar[int] = FrameType.HANDSHAKE_DONE
    __slots__ = ()

    def encode(self, w: Writer) -> None:
        w.push_uint8(FrameType.HANDSHAKE_DONE)


def _decode_connection_close(r: Reader, frame_type: int) -> ConnectionCloseFrame:
    return ConnectionCloseFrame(r.pull_varint(), r.pull_varint(), r.pull_varint_block())


def _decode_application_close(r: Reader, frame_type: int) -> ApplicationCloseFrame:
    return ApplicationCloseFrame(r.pull_varint(), r.pull_varint_block())


def _decode_handshake_done(r: Reader, frame_type: int) -> HandshakeDoneFrame:
    return HandshakeDoneFrame()


# -- ACK frequency (draft-ietf-quic-ack-frequency) --------------------------------------
class AckFrequencyFrame(Frame):
    """ACK_FREQUENCY (draft-ietf-quic-ack-frequency §4).

    ``requested_max_ack_delay`` is in microseconds.  Whether it is acceptable
    (not below the peer's min_ack_delay, below 2**14 ms) is checked by the core:
    it is a PROTOCOL_VIOLATION, not an encoding error.
    """

    TYPE: ClassVar[int] = FrameType.ACK_FREQUENCY
    FIELDS: ClassVar[tuple[str, ...]] = (
        "sequence_number",
        "ack_eliciting_threshold",
        "requested_max_ack_delay",
        "reordering_threshold",
    )
    __slots__ = FIELDS
    sequence_number: int
    ack_eliciting_threshold: int
    requested_max_ack_delay: int
    reordering_threshold: int

    def __init__(
        self,
        sequence_number: int,
        ack_eliciting_threshold: int,
        requested_max_ack_delay: int,
        reordering_threshold: int,
    ) -> None:
        self.sequence_number = sequence_number
        self.ack_eliciting_threshold = ack_eliciting_threshold
        self.requested_max_ack_delay = requested_max_ack_delay
        self.reordering_threshold = reordering_threshold

    def encode(self, w: Writer) -> None:
        w.push_varint(FrameType.ACK_FREQUENCY)
        w.push_varint(self.sequence_number)
        w.push_varint(self.ack_eliciting_threshold)
        w.push_varint(self.requested_max_ack_delay)
        w.push_varint(self.reordering_threshold)


class ImmediateAckFrame(Frame):
    """IMMEDIATE_ACK (draft-ietf-quic-ack-frequency §5)."""

    TYPE: ClassVar[int] = FrameType.IMMEDIATE_ACK
    __slots__ = ()

    def encode(self, w: Writer) -> None:
        w.push_uint8(FrameType.IMMEDIATE_ACK)


def _decode_ack_frequency(r: Reader, frame_type: int) -> AckFrequencyFrame:
    pull = r.pull_varint
    return AckFrequencyFrame(pull(), pull(), pull(), pull())


def _decode_immediate_ack(r: Reader, frame_type: int) -> ImmediateAckFrame:
    return ImmediateAckFrame()


#: RFC 9000 control frames: frame type -> decoder.
CONTROL_FRAME_DECODERS: Mapping[int, FrameDecoder] = {
    FrameType.RESET_STREAM: _decode_reset_stream,
    FrameType.STOP_SENDING: _decode_stop_sending,
    FrameType.NEW_TOKEN: _decode_new_token,
    FrameType.MAX_DATA: _decode_max_data,
    FrameType.MAX_STREAM_DATA: _decode_max_stream_data,
    FrameType.MAX_STREAMS_BIDI: _decode_max_streams,
    FrameType.MAX_STREAMS_UNI: _decode_max_streams,
    FrameType.DATA_BLOCKED: _decode_data_blocked,
    FrameType.STREAM_DATA_BLOCKED: _decode_stream_data_blocked,
    FrameType.STREAMS_BLOCKED_BIDI: _decode_streams_blocked,
    FrameType.STREAMS_BLOCKED_UNI: _decode_streams_blocked,
    FrameType.NEW_CONNECTION_ID: _decode_new_connection_id,
    FrameType.RETIRE_CONNECTION_ID: _decode_retire_connection_id,
    FrameType.PATH_CHALLENGE: _decode_path_challenge,
    FrameType.PATH_RESPONSE: _decode_path_response,
    FrameType.CONNECTION_CLOSE: _decode_connection_close,
    FrameType.CONNECTION_CLOSE_APPLICATION: _decode_application_close,
    FrameType.HANDSHAKE_DONE: _decode_handshake_done,
}

#: The ACK frequency extension's frames (draft-ietf-quic-ack-frequency §4, §5).
ACK_FREQUENCY_DECODERS: Mapping[int, FrameDecoder] = {
    FrameType.IMMEDIATE_ACK: _decode_immediate_ack,
    FrameType.ACK_FREQUENCY: _decode_ack_frequency,
}
