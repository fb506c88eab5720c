"""Fuzzing every wire decoder: only mstls ProtocolError subclasses may escape.

Random bytes, truncations and mutations of valid encodings are fed to the frame
decoders (QUIC, ACK frequency and QMux tables), the transport parameter decoder
and the QMux record reader.  Any exception other than
:class:`mstls.exceptions.ProtocolError` (IndexError, struct.error, ValueError,
TypeError, UnicodeError, ...) fails the test.  Huge declared lengths must fail
without allocating (checked with tracemalloc).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mstls.exceptions import ProtocolError
from mstls.wire.buffer import VARINT_MAX, encode_varint
from mstls.wire.frame_types import FrameType, QMuxFrameType
from mstls.wire.frames import (
    ACK_FREQUENCY_FRAME_DECODERS,
    FRAME_DECODERS,
    Frame,
    FrameDecoder,
    PaddingFrame,
    decode_frames,
    encode_frames,
)
from mstls.wire.qmux import QMUX_FRAME_DECODERS, RecordReader, decode_record
from mstls.wire.transport_params import (
    TransportParameterId,
    decode_transport_parameters,
    encode_transport_parameters,
)

from .test_frames import ALL_FRAMES
from .test_qmux import QX_FRAMES
from .test_transport_params import transport_parameters

SETTINGS = settings(max_examples=400, deadline=None)
TABLES: dict[str, Mapping[int, FrameDecoder]] = {
    "quic": FRAME_DECODERS,
    "ack-frequency": ACK_FREQUENCY_FRAME_DECODERS,
    "qmux": QMUX_FRAME_DECODERS,
}
ALL_TYPES = sorted(set().union(*TABLES.values()))


def only_protocol_errors(decode: Callable[[bytes], Any], data: bytes) -> None:
    """Run ``decode``; a ProtocolError is fine, anything else propagates."""
    try:
        decode(data)
    except ProtocolError as exc:
        assert isinstance(exc.error_code, int)
        assert isinstance(exc.reason, str)


def decode_with_all_tables(data: bytes) -> None:
    for table in TABLES.values():
        only_protocol_errors(lambda d, t=table: decode_frames(d, t), data)


def feed_records(data: bytes) -> None:
    reader = RecordReader()
    for i in range(0, len(data), 7):
        for payload in reader.feed(data[i : i + 7]):
            decode_record(payload)


DECODERS: dict[str, Callable[[bytes], Any]] = {
    "frames-quic": lambda d: decode_frames(d, FRAME_DECODERS),
    "frames-ack-frequency": lambda d: decode_frames(d, ACK_FREQUENCY_FRAME_DECODERS),
    "frames-qmux": decode_record,
    "transport-parameters": decode_transport_parameters,
    "qmux-records": feed_records,
}


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """A truncation, byte flip, insertion or deletion of ``valid``."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["cut", "flip", "insert", "delete"]))
        pos = draw(st.integers(0, len(data)))
        if kind == "cut":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=9))
        elif data and pos < len(data):
            if kind == "flip":
                data[pos] ^= draw(st.integers(1, 255))
            else:
                del data[pos]
    return bytes(data)


# -- random bytes ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(DECODERS))
@given(data=st.binary(max_size=200))
@SETTINGS
def test_random_bytes(name: str, data: bytes) -> None:
    only_protocol_errors(DECODERS[name], data)


@given(st.sampled_from(ALL_TYPES), st.binary(max_size=64))
@SETTINGS
def test_each_frame_type_with_random_body(frame_type: int, body: bytes) -> None:
    decode_with_all_tables(encode_varint(frame_type) + body)


@given(st.sampled_from(ALL_TYPES), st.lists(st.integers(0, VARINT_MAX), max_size=6))
@SETTINGS
def test_each_frame_type_with_random_varints(frame_type: int, fields: list[int]) -> None:
    # Bodies made of (possibly huge) varints reach the range checks.
    decode_with_all_tables(b"".join(encode_varint(v) for v in [frame_type, *fields]))


# -- mutations of valid encodings --------------------------------------------------------------
@given(
    st.lists(ALL_FRAMES | QX_FRAMES, min_size=1, max_size=5).flatmap(
        lambda frames: mutated(encode_frames(frames))
    )
)
@SETTINGS
def test_mutated_frames(data: bytes) -> None:
    decode_with_all_tables(data)
    only_protocol_errors(feed_records, encode_varint(len(data)) + data)


PARAMETER_IDS = st.sampled_from(sorted(TransportParameterId)) | st.integers(0, VARINT_MAX)


@given(st.lists(st.tuples(PARAMETER_IDS, st.binary(max_size=48)), max_size=6))
@SETTINGS
def test_transport_parameters_with_random_values(items: list[tuple[int, bytes]]) -> None:
    # Well-formed (id, length, value) triples put arbitrary bytes into every value decoder.
    data = b"".join(encode_varint(i) + encode_varint(len(v)) + v for i, v in items)
    only_protocol_errors(decode_transport_parameters, data)


@given(transport_parameters().flatmap(lambda p: mutated(encode_transport_parameters(p))))
@SETTINGS
def test_mutated_transport_parameters(data: bytes) -> None:
    only_protocol_errors(decode_transport_parameters, data)


@given(ALL_FRAMES | QX_FRAMES)
@settings(max_examples=200, deadline=None)
def test_every_truncation(frame: Frame) -> None:
    encoded = encode_frames([frame])
    for cut in range(len(encoded)):
        decode_with_all_tables(encoded[:cut])


# -- no pathological memory ---------------------------------------------------------------------
HUGE = encode_varint(VARINT_MAX)
HUGE_INPUTS: dict[str, tuple[Callable[[bytes], Any], bytes]] = {
    "crypto": (decode_frames, bytes([FrameType.CRYPTO, 0]) + HUGE + b"x"),
    "stream": (decode_frames, bytes([0x0A, 0]) + HUGE + b"x"),
    "new-token": (decode_frames, bytes([FrameType.NEW_TOKEN]) + HUGE),
    "close-reason": (decode_frames, bytes([FrameType.CONNECTION_CLOSE, 0, 0]) + HUGE),
    "app-close-reason": (decode_frames, bytes([FrameType.CONNECTION_CLOSE_APPLICATION, 0]) + HUGE),
    "datagram": (decode_frames, bytes([FrameType.DATAGRAM_WITH_LENGTH]) + HUGE + b"x"),
    "ack-range-count": (decode_frames, bytes([FrameType.ACK]) + HUGE + b"\x00" + HUGE + b"\x00"),
    "tp-length": (decode_transport_parameters, b"\x01" + HUGE),
    "qx-tp-length": (
        decode_record,
        encode_varint(QMuxFrameType.QX_TRANSPORT_PARAMETERS) + HUGE + b"\x00",
    ),
    "record-size": (lambda d: RecordReader().feed(d), HUGE + b"abc"),
}


def _peak_memory(run: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", sorted(HUGE_INPUTS))
def test_huge_declared_lengths_do_not_allocate(name: str) -> None:
    decode, data = HUGE_INPUTS[name]

    def run() -> None:
        with pytest.raises(ProtocolError):
            decode(data)

    assert _peak_memory(run) < 256 * 1024


def test_unlimited_record_reader_buffers_only_what_arrived() -> None:
    # Even with the largest configurable limit, memory follows the bytes received.
    reader = RecordReader(max_record_size=VARINT_MAX)
    assert _peak_memory(lambda: reader.feed(HUGE + b"abc")) < 256 * 1024
    assert reader.buffered == len(HUGE) + 3


def test_many_tiny_frames_stay_linear() -> None:
    assert len(decode_frames(b"\x01" * 100_000)) == 100_000
    assert decode_frames(bytes(100_000)) == [PaddingFrame(100_000)]
