"""Tests for mstls.wire.frames and mstls.wire.frame_types (RFC 9000 §12.4, §19)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mstls.codes import TransportErrorCode
from mstls.exceptions import DecodeError, ProtocolError
from mstls.wire.buffer import VARINT_MAX, Reader, encode_varint
from mstls.wire.datagram_frames import datagram_frame_size, largest_datagram_payload
from mstls.wire.frame_types import (
    ACK_ELICITING,
    ALLOWED_FRAME_TYPES,
    CONGESTION_CONTROLLED,
    FLOW_CONTROLLED,
    FRAME_INFO,
    FRAME_SPACES,
    NOT_ACK_ELICITING,
    PROBING,
    FrameType,
    PacketKind,
    frame_type_name,
    is_ack_eliciting,
)
from mstls.wire.frames import (
    ACK_FREQUENCY_FRAME_DECODERS,
    FRAME_DECODERS,
    MAX_STREAMS_LIMIT,
    AckFrame,
    AckFrequencyFrame,
    ApplicationCloseFrame,
    ConnectionCloseFrame,
    CryptoFrame,
    DataBlockedFrame,
    DatagramFrame,
    EcnCounts,
    Frame,
    HandshakeDoneFrame,
    ImmediateAckFrame,
    MaxDataFrame,
    MaxStreamDataFrame,
    MaxStreamsFrame,
    NewConnectionIdFrame,
    NewTokenFrame,
    PaddingFrame,
    PathChallengeFrame,
    PathResponseFrame,
    PingFrame,
    ResetStreamFrame,
    RetireConnectionIdFrame,
    StopSendingFrame,
    StreamDataBlockedFrame,
    StreamFrame,
    StreamsBlockedFrame,
    crypto_frame_capacity,
    crypto_frame_overhead,
    decode_frame,
    decode_frames,
    encode_crypto_frame_header,
    encode_frame,
    encode_frames,
    encode_stream_frame_header,
    stream_frame_capacity,
    stream_frame_overhead,
)

SETTINGS = settings(max_examples=300, deadline=None)
FRAME_ENCODING_ERROR = TransportErrorCode.FRAME_ENCODING_ERROR

# -- strategies (shared with test_fuzz_decoders) ------------------------------------------
varints = st.integers(0, VARINT_MAX)
payloads = st.binary(max_size=64)
offsets = st.integers(0, VARINT_MAX - 64)
cids = st.binary(min_size=1, max_size=20)
tokens16 = st.binary(min_size=16, max_size=16)


@st.composite
def ack_frames(draw: st.DrawFn) -> AckFrame:
    largest = draw(varints)
    smallest = largest - draw(st.integers(0, min(largest, 1000)))
    ranges = [(smallest, largest)]
    for _ in range(draw(st.integers(0, 8))):
        if smallest < 2:
            break
        high = smallest - 2 - draw(st.integers(0, smallest - 2))
        low = high - draw(st.integers(0, high))
        ranges.append((low, high))
        smallest = low
    ecn = draw(st.none() | st.builds(EcnCounts, varints, varints, varints))
    return AckFrame(ranges, draw(varints), ecn)


def _stream_frame(sid: int, offset: int, data: bytes, fin: bool) -> StreamFrame:
    return StreamFrame(sid, offset, data, fin)


QUIC_FRAMES = st.one_of(
    st.builds(PaddingFrame, st.integers(1, 50)),
    st.just(PingFrame()),
    ack_frames(),
    st.builds(ResetStreamFrame, varints, varints, varints),
    st.builds(StopSendingFrame, varints, varints),
    st.builds(CryptoFrame, offsets, payloads),
    st.builds(NewTokenFrame, st.binary(min_size=1, max_size=64)),
    st.builds(_stream_frame, varints, offsets, payloads, st.booleans()),
    st.builds(MaxDataFrame, varints),
    st.builds(MaxStreamDataFrame, varints, varints),
    st.builds(MaxStreamsFrame, st.integers(0, MAX_STREAMS_LIMIT), st.booleans()),
    st.builds(DataBlockedFrame, varints),
    st.builds(StreamDataBlockedFrame, varints, varints),
    st.builds(StreamsBlockedFrame, st.integers(0, MAX_STREAMS_LIMIT), st.booleans()),
    st.integers(0, VARINT_MAX).flatmap(
        lambda seq: st.builds(
            NewConnectionIdFrame, st.just(seq), st.integers(0, seq), cids, tokens16
        )
    ),
    st.builds(RetireConnectionIdFrame, varints),
    st.builds(PathChallengeFrame, st.binary(min_size=8, max_size=8)),
    st.builds(PathResponseFrame, st.binary(min_size=8, max_size=8)),
    st.builds(ConnectionCloseFrame, varints, varints, payloads),
    st.builds(ApplicationCloseFrame, varints, payloads),
    st.just(HandshakeDoneFrame()),
    st.builds(DatagramFrame, payloads),
)
ACK_FREQUENCY_FRAMES = st.one_of(
    st.just(ImmediateAckFrame()),
    st.builds(AckFrequencyFrame, varints, varints, varints, varints),
)
ALL_FRAMES = QUIC_FRAMES | ACK_FREQUENCY_FRAMES


def normalize(frames: list[Frame]) -> list[Frame]:
    """What decoding ``encode_frames(frames)`` gives: adjacent PADDING merges."""
    out: list[Frame] = []
    for frame in frames:
        if isinstance(frame, PaddingFrame) and out and isinstance(out[-1], PaddingFrame):
            out[-1] = PaddingFrame(out[-1].length + frame.length)
        else:
            out.append(frame)
    return out


# -- round trips ---------------------------------------------------------------------------
@given(ALL_FRAMES)
@SETTINGS
def test_every_frame_roundtrips(frame: Frame) -> None:
    encoded = encode_frame(frame)
    r = Reader(encoded)
    assert decode_frame(r, ACK_FREQUENCY_FRAME_DECODERS) == frame
    assert r.eof()
    # The advertised frame type is what is on the wire.
    assert Reader(encoded).pull_varint() == frame.frame_type


@given(st.lists(ALL_FRAMES, max_size=8), st.booleans())
@SETTINGS
def test_frame_sequences_roundtrip(frames: list[Frame], last_without_length: bool) -> None:
    if last_without_length and frames and isinstance(frames[-1], StreamFrame | DatagramFrame):
        frames[-1].has_length = False
    encoded = encode_frames(frames)
    assert decode_frames(encoded, ACK_FREQUENCY_FRAME_DECODERS) == normalize(frames)


@given(varints, offsets, payloads, st.booleans(), st.booleans())
@SETTINGS
def test_stream_header_helpers(
    sid: int, offset: int, data: bytes, fin: bool, with_length: bool
) -> None:
    frame = StreamFrame(sid, offset, data, fin, with_length)
    header = encode_stream_frame_header(sid, offset, len(data), fin, with_length=with_length)
    assert encode_frame(frame) == header + data
    assert stream_frame_overhead(sid, offset, len(data), with_length=with_length) == len(header)
    crypto_header = encode_crypto_frame_header(offset, len(data))
    assert encode_frame(CryptoFrame(offset, data)) == crypto_header + data
    assert crypto_frame_overhead(offset, len(data)) == len(crypto_header)


@given(st.integers(0, 70000), varints, st.integers(0, 2**40))
@SETTINGS
def test_capacity_is_the_largest_that_fits(space: int, sid: int, offset: int) -> None:
    n = stream_frame_capacity(space, sid, offset)
    if n:
        assert stream_frame_overhead(sid, offset, n) + n <= space
    assert stream_frame_overhead(sid, offset, n + 1) + n + 1 > space
    m = crypto_frame_capacity(space, offset)
    if m:
        assert crypto_frame_overhead(offset, m) + m <= space
    assert crypto_frame_overhead(offset, m + 1) + m + 1 > space


def test_capacity_boundaries() -> None:
    # 1 type byte + 1 stream id byte leaves 64: a 1-byte length and 63 data bytes.
    assert stream_frame_capacity(66, 0, 0) == 63
    assert stream_frame_capacity(67, 0, 0) == 63  # 64 data bytes need a 2-byte length
    assert stream_frame_capacity(68, 0, 0) == 64
    assert stream_frame_capacity(3, 0, 0) == 0
    assert stream_frame_capacity(0, 0, 0) == 0
    assert crypto_frame_capacity(1200, 0) == 1200 - 1 - 1 - 2


def test_capacity_respects_the_final_offset_limit() -> None:
    assert stream_frame_capacity(1200, 0, VARINT_MAX - 10) == 10


# -- known answers, written from the RFC 9000 §19 layouts ----------------------------------
KNOWN_ANSWERS: list[tuple[Frame, str]] = [
    (PaddingFrame(3), "000000"),
    (PingFrame(), "01"),
    # Largest 100, delay 16, one more range: first range 4 -> 96..100; gap 3,
    # length 5 -> 86..91 (§19.3.1: largest = 96 - 3 - 2 = 91).
    (AckFrame([(96, 100), (86, 91)], 16), "02 4064 10 01 04 03 05"),
    (AckFrame([(96, 100), (86, 91)], 16, EcnCounts(1, 0, 3)), "03 4064 10 01 04 03 05 010003"),
    (ResetStreamFrame(4, 1, 1000), "04 04 01 43e8"),
    (StopSendingFrame(8, 0x100), "05 08 4100"),
    (CryptoFrame(0, b"hello"), "06 00 05 68656c6c6f"),
    (NewTokenFrame(b"\xab\xcd"), "07 02 abcd"),
    (StreamFrame(4, 0x40, b"abc", fin=True), "0f 04 4040 03 616263"),
    (StreamFrame(0, 0, b"xy", has_length=False), "08 00 7879"),
    (StreamFrame(1, 0, b"", fin=True), "0b 01 00"),
    (MaxDataFrame(1 << 20), "10 80100000"),
    (MaxStreamDataFrame(4, 65536), "11 04 80010000"),
    (MaxStreamsFrame(100, bidi=True), "12 4064"),
    (MaxStreamsFrame(100, bidi=False), "13 4064"),
    (DataBlockedFrame(7), "14 07"),
    (StreamDataBlockedFrame(4, 7), "15 04 07"),
    (StreamsBlockedFrame(3, bidi=True), "16 03"),
    (StreamsBlockedFrame(3, bidi=False), "17 03"),
    (
        NewConnectionIdFrame(1, 0, b"\x01\x02\x03\x04", b"\xaa" * 16),
        "18 01 00 04 01020304" + "aa" * 16,
    ),
    (RetireConnectionIdFrame(2), "19 02"),
    (PathChallengeFrame(b"01234567"), "1a 3031323334353637"),
    (PathResponseFrame(b"01234567"), "1b 3031323334353637"),
    (ConnectionCloseFrame(0x0A, 0x08, b"bad"), "1c 0a 08 03 626164"),
    (ApplicationCloseFrame(0x100), "1d 4100 00"),
    (HandshakeDoneFrame(), "1e"),
    (ImmediateAckFrame(), "1f"),
    (AckFrequencyFrame(1, 2, 25000, 1), "40af 01 02 800061a8 01"),
    (DatagramFrame(b"hi"), "31 02 6869"),  # RFC 9221 §4
    (DatagramFrame(b"hi", has_length=False), "30 6869"),
    (DatagramFrame(b""), "31 00"),
]


@pytest.mark.parametrize(("frame", "hex_"), KNOWN_ANSWERS, ids=lambda v: type(v).__name__)
def test_known_answer(frame: Frame, hex_: str) -> None:
    encoded = bytes.fromhex(hex_)
    assert encode_frame(frame) == encoded
    assert decode_frames(encoded, ACK_FREQUENCY_FRAME_DECODERS) == [frame]


def test_padding_run_is_one_frame() -> None:
    assert decode_frames(bytes(5) + b"\x01" + bytes(2)) == [
        PaddingFrame(5),
        PingFrame(),
        PaddingFrame(2),
    ]
    assert decode_frames(memoryview(bytes(1200))) == [PaddingFrame(1200)]


def test_stream_and_crypto_data_are_views_of_the_input() -> None:
    packet = bytes.fromhex("0f 04 4040 03 616263 06 00 02 6869".replace(" ", ""))
    stream, crypto = decode_frames(packet)
    assert isinstance(stream, StreamFrame)
    assert isinstance(crypto, CryptoFrame)
    for data in (stream.data, crypto.data):
        assert isinstance(data, memoryview)
        assert data.obj is packet
    assert bytes(stream.data) == b"abc"
    assert "b'abc'" in repr(stream)


def test_ack_accessors() -> None:
    ack = AckFrame([(96, 100), (86, 91)], 16)
    assert ack.largest_acknowledged == 100
    assert ack.frame_type == FrameType.ACK


def test_reason_text_never_raises() -> None:
    assert ConnectionCloseFrame(1, 0, b"\xff ok").reason_text == "\ufffd ok"
    assert ApplicationCloseFrame(1, "héllo".encode()).reason_text == "héllo"


# -- validation on decode ------------------------------------------------------------------
def _decode_error(hex_: str, decoders: Any = FRAME_DECODERS) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode_frames(bytes.fromhex(hex_.replace(" ", "")), decoders)
    return info.value


BAD_FRAMES = [
    # §19.3.1: First ACK Range larger than Largest Acknowledged.
    ("ack-first-range-negative", "02 05 00 00 06", 0x02),
    # §19.3.1: a Gap that makes the next range negative: 10..10, gap 9 -> -1.
    ("ack-gap-negative", "02 0a 00 01 00 09 00", 0x02),
    # §19.3.1: an ACK Range Length going below zero: 10..10, gap 0 -> 8, length 9.
    ("ack-range-negative", "03 0a 00 01 00 00 09 000000", 0x03),
    ("ack-range-count-too-large", "02 0a 00 3f 00", 0x02),
    # §19.8: offset + length above 2**62-1.
    ("stream-final-offset", "0e 00 ffffffffffffffff 01 00", 0x0E),
    ("stream-implicit-length", "0c 00 ffffffffffffffff 00", 0x0C),
    ("crypto-final-offset", "06 ffffffffffffffff 01 00", 0x06),
    # §19.11, §19.14: counts above 2**60.
    ("max-streams-bidi", "12 d000000000000001", 0x12),
    ("max-streams-uni", "13 d000000000000001", 0x13),
    ("streams-blocked-bidi", "16 d000000000000001", 0x16),
    ("streams-blocked-uni", "17 ffffffffffffffff", 0x17),
    # §19.15: CID length 0 or 21, Retire Prior To above Sequence Number.
    ("ncid-empty", "18 01 00 00" + "aa" * 16, 0x18),
    ("ncid-21", "18 01 00 15" + "bb" * 21 + "aa" * 16, 0x18),
    ("ncid-retire-prior-to", "18 01 02 04 01020304" + "aa" * 16, 0x18),
    # §19.7: empty token.
    ("new-token-empty", "07 00", 0x07),
    # §12.4: unknown frame types.
    ("unknown-0x21", "21", 0x21),
    ("unknown-0x3f", "3f 00", 0x3F),
    ("unknown-two-byte-type", "5021", 0x1021),
    # Extensions not in the table passed.
    ("ack-frequency-not-negotiated", "40af 01 02 03 04", 0xAF),
    ("immediate-ack-not-negotiated", "1f", 0x1F),
    # Truncations.
    ("truncated-stream", "0a 04 05 6162", 0x0A),
    ("truncated-close-reason", "1c 0a 08 05 626164", 0x1C),
    ("truncated-path", "1a 3031", 0x1A),
    ("truncated-ncid-token", "18 01 00 04 01020304" + "aa" * 15, 0x18),
    ("truncated-reset", "04 04 01", 0x04),
]


@pytest.mark.parametrize(
    ("hex_", "frame_type"), [b[1:] for b in BAD_FRAMES], ids=[b[0] for b in BAD_FRAMES]
)
def test_invalid_frames_are_frame_encoding_errors(hex_: str, frame_type: int) -> None:
    error = _decode_error(hex_)
    assert isinstance(error, DecodeError)
    assert error.error_code == FRAME_ENCODING_ERROR
    assert error.frame_type == frame_type


def test_limits_themselves_are_accepted() -> None:
    assert decode_frames(bytes.fromhex("12 d000000000000000".replace(" ", ""))) == [
        MaxStreamsFrame(MAX_STREAMS_LIMIT)
    ]
    # offset + length == 2**62-1 exactly.
    frame = decode_frames(encode_varint(0x0E) + b"\x00" + encode_varint(VARINT_MAX - 1) + b"\x01x")
    assert frame == [StreamFrame(0, VARINT_MAX - 1, b"x")]
    ncid = NewConnectionIdFrame(5, 5, b"\x01" * 20, b"\x00" * 16)
    assert decode_frames(encode_frame(ncid)) == [ncid]


def test_unknown_frame_error_names_the_type() -> None:
    error = _decode_error("21")
    assert "0x21" in error.reason
    assert "ACK_FREQUENCY" in _decode_error("40af 01 02 03 04").reason


@pytest.mark.parametrize("hex_", ["4001", "80000001", "c000000000000001"])
def test_non_minimal_frame_type_is_protocol_violation(hex_: str) -> None:
    # §12.4: 0x4001 is a two-byte encoding of PING.
    error = _decode_error(hex_)
    assert not isinstance(error, DecodeError)
    assert error.error_code == TransportErrorCode.PROTOCOL_VIOLATION
    assert error.frame_type == FrameType.PING


def test_truncated_frame_type_is_decode_error() -> None:
    error = _decode_error("40")
    assert isinstance(error, DecodeError)


@given(ALL_FRAMES)
@SETTINGS
def test_every_truncation_names_the_frame_type(frame: Frame) -> None:
    if isinstance(frame, PaddingFrame | PingFrame | HandshakeDoneFrame | ImmediateAckFrame):
        return
    if isinstance(frame, StreamFrame) and not frame.has_length:
        return
    encoded = encode_frame(frame)
    type_size = len(encode_varint(frame.frame_type))
    for cut in range(type_size, len(encoded)):
        with pytest.raises(DecodeError) as info:
            decode_frames(encoded[:cut], ACK_FREQUENCY_FRAME_DECODERS)
        assert info.value.frame_type == frame.frame_type


# -- encoder argument checks -----------------------------------------------------------------
@pytest.mark.parametrize(
    "frame",
    [
        AckFrame([]),
        AckFrame([(5, 4)]),
        AckFrame([(5, 10), (3, 4)]),  # adjacent: gap would be -1
        AckFrame([(5, 10), (1, 7)]),  # overlapping
        AckFrame([(5, 10), (3, 2)]),  # inverted second range
        NewTokenFrame(b""),
        NewConnectionIdFrame(1, 0, b"", b"\x00" * 16),
        NewConnectionIdFrame(1, 0, b"\x01" * 21, b"\x00" * 16),
        NewConnectionIdFrame(1, 0, b"\x01", b"\x00" * 15),
        PathChallengeFrame(b"short"),
        PathResponseFrame(b"toolong!!"),
        MaxDataFrame(VARINT_MAX + 1),
    ],
    ids=repr,
)
def test_encoder_rejects_unencodable_frames(frame: Frame) -> None:
    with pytest.raises(ValueError):
        encode_frame(frame)


def test_base_frame_encode_is_abstract() -> None:
    with pytest.raises(NotImplementedError):
        encode_frame(Frame())


# -- Table 3 ---------------------------------------------------------------------------------
def test_initial_and_handshake_frames() -> None:
    expected = {0x00, 0x01, 0x02, 0x03, 0x06, 0x1C}
    assert ALLOWED_FRAME_TYPES[PacketKind.INITIAL] == expected
    assert ALLOWED_FRAME_TYPES[PacketKind.HANDSHAKE] == expected


def test_zero_rtt_frames() -> None:
    excluded = {0x02, 0x03, 0x06, 0x07, 0x1B, 0x1E, 0x1F, 0xAF}
    assert ALLOWED_FRAME_TYPES[PacketKind.ZERO_RTT] == set(FRAME_INFO) - excluded


def test_one_rtt_allows_everything() -> None:
    assert ALLOWED_FRAME_TYPES[PacketKind.ONE_RTT] == set(FRAME_INFO)
    assert set(FRAME_DECODERS) | {0x1F, 0xAF} == set(FRAME_INFO)
    assert set(ACK_FREQUENCY_FRAME_DECODERS) == set(FRAME_INFO)


def test_spec_columns() -> None:
    assert {0x00, 0x02, 0x03, 0x1C, 0x1D} == NOT_ACK_ELICITING
    assert set(FRAME_INFO) - NOT_ACK_ELICITING == ACK_ELICITING
    assert set(FRAME_INFO) - CONGESTION_CONTROLLED == {0x02, 0x03}
    assert {0x00, 0x18, 0x1A, 0x1B} == PROBING
    assert set(range(0x08, 0x10)) == FLOW_CONTROLLED
    assert FRAME_SPACES[0x1D] == PacketKind.ZERO_RTT | PacketKind.ONE_RTT
    assert FRAME_SPACES[0x1C] == PacketKind(0xF)
    assert is_ack_eliciting(FrameType.PING)
    assert not is_ack_eliciting(FrameType.ACK)
    assert is_ack_eliciting(0x21)


def test_frame_type_names() -> None:
    assert frame_type_name(0x0E) == "STREAM(0x0e)"
    assert frame_type_name(0x21) == "unknown frame type 0x21"
    assert frame_type_name(0x348C67529EF8C7BD).startswith("QX_PING_REQUEST")


def test_datagram_rows_and_sizes() -> None:
    """RFC 9221 §4-§5: 0-RTT/1-RTT, ack-eliciting, congestion controlled, not flow controlled."""
    for frame_type in (FrameType.DATAGRAM, FrameType.DATAGRAM_WITH_LENGTH):
        assert FRAME_SPACES[frame_type] == PacketKind.ZERO_RTT | PacketKind.ONE_RTT
        assert frame_type in ACK_ELICITING and frame_type in CONGESTION_CONTROLLED
        assert frame_type not in FLOW_CONTROLLED
    for room in range(2, 20000, 7):
        n = largest_datagram_payload(room)
        assert datagram_frame_size(n) <= room < datagram_frame_size(n + 1)
    assert largest_datagram_payload(1) == 0
