"""Control frames: every QUIC frame off the data and ACK hot path (RFC 9000 §19).

Stream control (RESET_STREAM, STOP_SENDING), flow control (MAX_*, *_BLOCKED),
NEW_TOKEN, connection IDs, path validation, CONNECTION_CLOSE, HANDSHAKE_DONE,
and the ACK frequency frames (draft-ietf-quic-ack-frequency).  Each is a slotted
``attrs`` class with ``encode(w)`` and a decoder in :data:`CONTROL_FRAME_DECODERS`
or :data:`ACK_FREQUENCY_DECODERS`; :mod:`mstls.wire.frames` assembles the full
tables and re-exports every class, so users import from there.

Decoders handle untrusted input and raise only
:class:`~mstls.exceptions.DecodeError` (FRAME_ENCODING_ERROR); encoders raise
``ValueError`` on values that cannot be put on the wire.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

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
@attrs.define
class ResetStreamFrame(Frame):
    """RESET_STREAM (RFC 9000 §19.4)."""

    TYPE = FrameType.RESET_STREAM
    stream_id: int
    error_code: int
    final_size: int

    def encode(self, w: Writer) -> None:
        w.push_uint8(FrameType.RESET_STREAM)
        w.push_varint(self.stream_id)
        w.push_varint(self.error_code)
        w.push_varint(self.final_size)


def _decode_reset_stream(r: Reader, frame_type: int) -> ResetStreamFrame:
    return ResetStreamFrame(r.pull_varint(), r.pull_varint(), r.pull_varint())


@attrs.define
class StopSendingFrame(Frame):
    """STOP_SENDING (RFC 9000 §19.5)."""

    TYPE = FrameType.STOP_SENDING
    stream_id: int
    error_code: int

    def encode(self, w: Writer) -> None:
        w.push_uint8(FrameType.STOP_SENDING)
        w.push_varint(self.stream_id)
        w.push_varint(self.error_code)


def _decode_stop_sending(r: Reader, frame_type: int) -> StopSendingFrame:
    return StopSendingFrame(r.pull_varint(), r.pull_varint())


# -- flow control ---------------------------------------------------------------------
@attrs.define
class MaxDataFrame(Frame):
    """MAX_DATA (RFC 9000 §19.9)."""

    TYPE = FrameType.MAX_DATA
    maximum: int

    def encode(self, w: Writer) -> None:
        w.push_uint8(FrameType.MAX_DATA)
        w.push_varint(self.maximum)


@attrs.define
class MaxStreamDataFrame(Frame):
    """MAX_STREAM_DATA (RFC 9000 §19.10)."""

    TYPE = FrameType.MAX_STREAM_DATA
    stream_id: int
    maximum: int

    def encode(self, w: Writer) -> None:
        w.push_uint8(FrameType.MAX_STREAM_DATA)
        w.push_varint(self.stream_id)
        w.push_varint(self.maximum)


@attrs.define
class MaxStreamsFrame(Frame):
    """MAX_STREAMS (RFC 9000 §19.11): 0x12 bidirectional, 0x13 unidirectional."""

    maximum: int
    bidi: bool = True

    @property
    def frame_type(self) -> int:
        return FrameType.MAX_STREAMS_BIDI if self.bidi else FrameType.MAX_STREAMS_UNI

    def encode(self, w: Writer) -> None:
        w.push_uint8(self.frame_type)
        w.push_varint(self.maximum)


@attrs.define
class DataBlockedFrame(Frame):
    """DATA_BLOCKED (RFC 9000 §19.12)."""

    TYPE = FrameType.DATA_BLOCKED
    limit: int

    def encode(self, w: Writer) -> None:
        w.push_uint8(FrameType.DATA_BLOCKED)
        w.push_varint(self.limit)


@attrs.define
class StreamDataBlockedFrame(Frame):
    """STREAM_DATA_BLOCKED (RFC 9000 §19.13)."""

    TYPE = FrameType.STREAM_DATA_BLOCKED
    stream_id: int
    limit: int

    def encode(self, w: Writer) -> None:
        w.push_uint8(FrameType.STREAM_DATA_BLOCKED)
        w.push_varint(self.stream_id)
        w.push_varint(self.limit)


@attrs.define
class StreamsBlockedFrame(Frame):
    """STREAMS_BLOCKED (RFC 9000 §19.14): 0x16 bidirectional, 0x17 unidirectional."""

    limit: int
    bidi: bool = True

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
@attrs.define
class NewTokenFrame(Frame):
    """NEW_TOKEN (RFC 9000 §19.7); the token is never empty."""

    TYPE = FrameType.NEW_TOKEN
    token: bytes

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
@attrs.define
class NewConnectionIdFrame(Frame):
    """NEW_CONNECTION_ID (RFC 9000 §19.15)."""

    TYPE = FrameType.NEW_CONNECTION_ID
    sequence_number: int
    retire_prior_to: int
    connection_id: bytes
    stateless_reset_token: bytes

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


@attrs.define
class RetireConnectionIdFrame(Frame):
    """RETIRE_CONNECTION_ID (RFC 9000 §19.16)."""

    TYPE = FrameType.RETIRE_CONNECTION_ID
    sequence_number: int

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


@attrs.define
class PathChallengeFrame(Frame):
    """PATH_CHALLENGE (RFC 9000 §19.17): 8 bytes of data."""

    TYPE = FrameType.PATH_CHALLENGE
    data: bytes

    def encode(self, w: Writer) -> None:
        _push_path_data(w, FrameType.PATH_CHALLENGE, self.data)


@attrs.define
class PathResponseFrame(Frame):
    """PATH_RESPONSE (RFC 9000 §19.18): echoes the challenge's 8 bytes."""

    TYPE = FrameType.PATH_RESPONSE
    data: bytes

    def encode(self, w: Writer) -> None:
        _push_path_data(w, FrameType.PATH_RESPONSE, self.data)


def _decode_path_challenge(r: Reader, frame_type: int) -> PathChallengeFrame:
    return PathChallengeFrame(r.pull_bytes(PATH_DATA_LENGTH))


def _decode_path_response(r: Reader, frame_type: int) -> PathResponseFrame:
    return PathResponseFrame(r.pull_bytes(PATH_DATA_LENGTH))


# -- CONNECTION_CLOSE, HANDSHAKE_DONE --------------------------------------------------
@attrs.define
class ConnectionCloseFrame(Frame):
    """CONNECTION_CLOSE of type 0x1c: a transport error (RFC 9000 §19.19).

    ``offending_frame_type`` is the type of the frame that triggered the error
    (0 when unknown); ``reason`` is the phrase's bytes (UTF-8 by convention).
    """

    TYPE = FrameType.CONNECTION_CLOSE
    error_code: int
    offending_frame_type: int = 0
    reason: bytes = b""

    @property
    def reason_text(self) -> str:
        return self.reason.decode("utf-8", "replace")

    def encode(self, w: Writer) -> None:
        w.push_uint8(FrameType.CONNECTION_CLOSE)
        w.push_varint(self.error_code)
        w.push_varint(self.offending_frame_type)
        w.push_varint_block(self.reason)


@attrs.define
class ApplicationCloseFrame(Frame):
    """CONNECTION_CLOSE of type 0x1d: an application error (RFC 9000 §19.19)."""

    TYPE = FrameType.CONNECTION_CLOSE_APPLICATION
    error_code: int
    reason: bytes = b""

    @property
    def reason_text(self) -> str:
        return self.reason.decode("utf-8", "replace")

    def encode(self, w: Writer) -> None:
        w.push_uint8(FrameType.CONNECTION_CLOSE_APPLICATION)
        w.push_varint(self.error_code)
        w.push_varint_block(self.reason)


@attrs.define
class HandshakeDoneFrame(Frame):
    """HANDSHAKE_DONE (RFC 9000 §19.20)."""

    TYPE = FrameType.HANDSHAKE_DONE

    def encode(self, w: Writer) -> None:
        w.push_uint8(FrameType.HANDSHAKE_DONE)


def _decode_connection_close(r: Reader, frame_type: int) -> ConnectionCloseFrame:
    return ConnectionCloseFrame(r.pull_varint(), r.pull_varint(), r.pull_varint_block())


def _decode_application_close(r: Reader, frame_type: int) -> ApplicationCloseFrame:
    return ApplicationCloseFrame(r.pull_varint(), r.pull_varint_block())


def _decode_handshake_done(r: Reader, frame_type: int) -> HandshakeDoneFrame:
    return HandshakeDoneFrame()


# -- ACK frequency (draft-ietf-quic-ack-frequency) --------------------------------------
@attrs.define
class AckFrequencyFrame(Frame):
    """ACK_FREQUENCY (draft-ietf-quic-ack-frequency §4).

    ``requested_max_ack_delay`` is in microseconds.  Whether it is acceptable
    (not below the peer's min_ack_delay, below 2**14 ms) is checked by the core:
    it is a PROTOCOL_VIOLATION, not an encoding error.
    """

    TYPE = FrameType.ACK_FREQUENCY
    sequence_number: int
    ack_eliciting_threshold: int
    requested_max_ack_delay: int
    reordering_threshold: int

    def encode(self, w: Writer) -> None:
        w.push_varint(FrameType.ACK_FREQUENCY)
        w.push_varint(self.sequence_number)
        w.push_varint(self.ack_eliciting_threshold)
        w.push_varint(self.requested_max_ack_delay)
        w.push_varint(self.reordering_threshold)


@attrs.define
class ImmediateAckFrame(Frame):
    """IMMEDIATE_ACK (draft-ietf-quic-ack-frequency §5)."""

    TYPE = FrameType.IMMEDIATE_ACK

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
