"""Tests for mstls.wire.qmux (draft-ietf-quic-qmux-02 §3.2, §4, §5.2)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mstls.codes import TransportErrorCode
from mstls.exceptions import DecodeError, ProtocolError, TransportParameterError
from mstls.wire.buffer import VARINT_MAX, encode_varint
from mstls.wire.frame_types import FrameType, QMuxFrameType
from mstls.wire.frames import (
    FRAME_DECODERS,
    AckFrame,
    ConnectionCloseFrame,
    CryptoFrame,
    EcnCounts,
    Frame,
    HandshakeDoneFrame,
    MaxDataFrame,
    NewConnectionIdFrame,
    NewTokenFrame,
    PathChallengeFrame,
    PathResponseFrame,
    PingFrame,
    RetireConnectionIdFrame,
    StreamFrame,
    decode_frames,
    encode_frame,
    encode_frames,
)
from mstls.wire.qmux import (
    DEFAULT_MAX_RECORD_SIZE,
    QMUX_FORBIDDEN_FRAME_TYPES,
    QMUX_FRAME_DECODERS,
    QMUX_PERMITTED_FRAME_TYPES,
    QxPingFrame,
    QxTransportParametersFrame,
    RecordReader,
    decode_record,
    encode_record,
    record_header,
)
from mstls.wire.transport_params import TransportParameters

from .test_frames import QUIC_FRAMES, normalize
from .test_transport_params import transport_parameters

SETTINGS = settings(max_examples=200, deadline=None)
FEE = TransportErrorCode.FRAME_ENCODING_ERROR

QX_FRAMES = st.one_of(
    st.builds(QxTransportParametersFrame, transport_parameters()),
    st.builds(QxPingFrame, st.integers(0, VARINT_MAX), st.booleans()),
)
QMUX_FRAMES = QX_FRAMES | QUIC_FRAMES.filter(
    lambda f: f.frame_type not in QMUX_FORBIDDEN_FRAME_TYPES
)


# -- frames --------------------------------------------------------------------------------
@given(st.lists(QMUX_FRAMES, min_size=1, max_size=6))
@SETTINGS
def test_qmux_frames_roundtrip_in_a_record(frames: list[Frame]) -> None:
    record = encode_record(encode_frames(frames))
    payloads = RecordReader(max_record_size=VARINT_MAX).feed(record)
    assert len(payloads) == 1
    assert decode_record(payloads[0]) == normalize(frames)


def test_qx_known_answers() -> None:
    # Type 0x348c67529ef8c7bd as an 8-byte varint: 0xc0 | 0x34 = 0xf4.
    assert encode_frame(QxPingFrame(5)) == bytes.fromhex("f48c67529ef8c7bd05")
    assert encode_frame(QxPingFrame(5, response=True)) == bytes.fromhex("f48c67529ef8c7be05")
    # QX_TRANSPORT_PARAMETERS with max_idle_timeout = 10 (0x01 0x01 0x0a).
    frame = QxTransportParametersFrame(TransportParameters(max_idle_timeout=10))
    encoded = bytes.fromhex("ff5153300d0a0d0a 03 01010a".replace(" ", ""))
    assert encode_frame(frame) == encoded
    assert decode_record(encoded) == [frame]
    assert frame.frame_type == QMuxFrameType.QX_TRANSPORT_PARAMETERS
    assert QxPingFrame(1).frame_type == QMuxFrameType.QX_PING_REQUEST


def test_record_known_answer() -> None:
    frames = encode_frame(StreamFrame(0, 0, b"hi", fin=True))  # 0b 00 02 6869
    assert encode_record(frames) == bytes.fromhex("05 0b 00 02 6869".replace(" ", ""))
    assert record_header(16382) == bytes.fromhex("7ffe")
    assert record_header(16383) == bytes.fromhex("7fff")


FORBIDDEN_EXAMPLES: list[Frame] = [
    PingFrame(),
    AckFrame([(0, 3)]),
    AckFrame([(0, 3)], 0, EcnCounts(0, 0, 0)),
    CryptoFrame(0, b"x"),
    NewTokenFrame(b"t"),
    NewConnectionIdFrame(1, 0, b"\x01", bytes(16)),
    RetireConnectionIdFrame(1),
    PathChallengeFrame(bytes(8)),
    PathResponseFrame(bytes(8)),
    HandshakeDoneFrame(),
]


@pytest.mark.parametrize("frame", FORBIDDEN_EXAMPLES, ids=repr)
def test_prohibited_frames_are_frame_encoding_errors(frame: Frame) -> None:
    encoded = encode_frame(frame)
    assert decode_frames(encoded) == [frame]  # fine in QUIC
    with pytest.raises(DecodeError, match="prohibited in QMux") as info:
        decode_record(encoded)
    assert info.value.error_code == FEE
    assert info.value.frame_type == frame.frame_type


def test_prohibited_set_matches_the_draft() -> None:
    names = {FrameType(t).name for t in QMUX_FORBIDDEN_FRAME_TYPES}
    assert names == {
        "PING",
        "ACK",
        "ACK_ECN",
        "CRYPTO",
        "NEW_TOKEN",
        "NEW_CONNECTION_ID",
        "RETIRE_CONNECTION_ID",
        "PATH_CHALLENGE",
        "PATH_RESPONSE",
        "HANDSHAKE_DONE",
    }
    assert QMUX_FORBIDDEN_FRAME_TYPES.isdisjoint(QMUX_PERMITTED_FRAME_TYPES)
    assert set(QMUX_FRAME_DECODERS) == QMUX_PERMITTED_FRAME_TYPES | QMUX_FORBIDDEN_FRAME_TYPES
    assert set(range(0x08, 0x10)) <= QMUX_PERMITTED_FRAME_TYPES
    assert {0x00, 0x04, 0x05, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x1C, 0x1D} <= (
        QMUX_PERMITTED_FRAME_TYPES
    )
    # Extensions not mapped to QMux are unknown there.
    assert 0xAF not in QMUX_FRAME_DECODERS


def test_qx_frames_are_unknown_in_quic() -> None:
    for frame in (QxPingFrame(1), QxTransportParametersFrame(TransportParameters())):
        with pytest.raises(DecodeError) as info:
            decode_frames(encode_frame(frame), FRAME_DECODERS)
        assert info.value.frame_type == frame.frame_type
        assert info.value.error_code == FEE


def test_truncated_final_frame_is_frame_encoding_error() -> None:
    frames = encode_frames([MaxDataFrame(1000), ConnectionCloseFrame(0, 0, b"bye")])
    for cut in range(1, len(frames)):
        if cut == len(encode_frame(MaxDataFrame(1000))):
            continue  # a frame boundary
        with pytest.raises(DecodeError) as info:
            decode_record(frames[:cut])
        assert info.value.error_code == FEE


def test_bad_transport_parameters_in_frame() -> None:
    # max_udp_payload_size = 1000 is invalid: TRANSPORT_PARAMETER_ERROR, with the frame type.
    body = bytes.fromhex("03 02 43e8".replace(" ", ""))
    encoded = encode_varint(QMuxFrameType.QX_TRANSPORT_PARAMETERS) + encode_varint(4) + body
    with pytest.raises(TransportParameterError) as info:
        decode_record(encoded)
    assert info.value.error_code == TransportErrorCode.TRANSPORT_PARAMETER_ERROR
    assert info.value.frame_type == QMuxFrameType.QX_TRANSPORT_PARAMETERS
    # Length longer than the record: FRAME_ENCODING_ERROR.
    short = encode_varint(QMuxFrameType.QX_TRANSPORT_PARAMETERS) + encode_varint(5) + body
    with pytest.raises(DecodeError):
        decode_record(short)


# -- records ---------------------------------------------------------------------------------
@given(
    st.lists(st.binary(max_size=300), max_size=8),
    st.lists(st.integers(1, 400), min_size=1, max_size=20),
)
@SETTINGS
def test_record_reader_reassembles_any_split(payloads: list[bytes], chunks: list[int]) -> None:
    stream = b"".join(encode_record(p) for p in payloads)
    reader = RecordReader()
    got: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(stream):
        size = chunks[i % len(chunks)]
        got.extend(bytes(p) for p in reader.feed(stream[pos : pos + size]))
        pos += size
        i += 1
    assert got == payloads
    assert reader.buffered == 0


def test_records_in_one_feed_are_views() -> None:
    data = encode_record(b"\x01") + encode_record(b"\x00\x00")
    out = RecordReader().feed(data)
    assert [bytes(p) for p in out] == [b"\x01", b"\x00\x00"]
    assert all(isinstance(p, memoryview) and p.obj is data for p in out)


def test_non_minimal_size_field_split_across_feeds() -> None:
    reader = RecordReader()
    assert reader.feed(b"\x40") == []
    assert reader.buffered == 1
    assert reader.feed(b"\x00") == [b""]  # a two-byte Size of 0 completes the record
    assert reader.buffered == 0
    assert reader.feed(b"\x80\x00") == []
    assert reader.feed(b"\x00\x02ab\x01") == [b"ab"]
    assert reader.buffered == 1


def test_size_at_the_limit_is_accepted() -> None:
    reader = RecordReader()
    record = encode_record(bytes(DEFAULT_MAX_RECORD_SIZE))
    assert [len(p) for p in reader.feed(record)] == [DEFAULT_MAX_RECORD_SIZE]


@pytest.mark.parametrize("split", [1, 2, 3, 100])
def test_oversized_record_is_rejected_as_soon_as_size_is_read(split: int) -> None:
    reader = RecordReader()
    header = record_header(DEFAULT_MAX_RECORD_SIZE + 1)  # 4-byte varint
    with pytest.raises(DecodeError, match="max_record_size") as info:
        for i in range(0, len(header), split):
            reader.feed(header[i : i + split])
    assert info.value.error_code == FEE
    assert reader.buffered <= len(header)
    with pytest.raises(DecodeError):  # the reader stays failed
        reader.feed(b"\x00")


def test_larger_advertised_limit() -> None:
    reader = RecordReader(max_record_size=1 << 20)
    assert len(reader.feed(encode_record(bytes(1 << 20)))[0]) == 1 << 20
    with pytest.raises(DecodeError):
        reader.feed(record_header((1 << 20) + 1))


def test_buffering_is_bounded_by_one_record() -> None:
    reader = RecordReader()
    record = encode_record(bytes(DEFAULT_MAX_RECORD_SIZE))
    for i in range(0, len(record) - 1, 1000):
        reader.feed(record[i : min(i + 1000, len(record) - 1)])
        assert reader.buffered <= DEFAULT_MAX_RECORD_SIZE + 8
    assert reader.buffered == len(record) - 1
    assert len(reader.feed(record[-1:])[0]) == DEFAULT_MAX_RECORD_SIZE


def test_huge_declared_size_fails_without_allocating() -> None:
    with pytest.raises(DecodeError):
        RecordReader().feed(encode_varint(VARINT_MAX) + b"x")


def test_reader_and_encoder_argument_checks() -> None:
    with pytest.raises(ValueError):
        RecordReader(max_record_size=DEFAULT_MAX_RECORD_SIZE - 1)
    with pytest.raises(ValueError):
        encode_record(bytes(20000), max_size=DEFAULT_MAX_RECORD_SIZE)
    assert encode_record(b"\x00", max_size=1) == b"\x01\x00"


def test_decode_record_errors_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError):
        decode_record(b"\x21")
