"""Tests for mstls.wire.buffer: RFC 9000 §16 varints, push/pull round-trips, truncation."""

from __future__ import annotations

import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mstls.exceptions import DecodeError, Error
from mstls.wire.buffer import (
    VARINT_MAX,
    Reader,
    Writer,
    decode_varint,
    encode_varint,
    varint_size,
)

SETTINGS = settings(max_examples=300, deadline=None)

# RFC 9000 Appendix A.1 (and §16): sample variable-length integer decodings.
RFC9000_VARINTS = [
    (bytes.fromhex("c2197c5eff14e88c"), 151288809941952652),
    (bytes.fromhex("9d7f3e7d"), 494878333),
    (bytes.fromhex("7bbd"), 15293),
    (bytes.fromhex("25"), 37),
]


@pytest.mark.parametrize(("encoded", "value"), RFC9000_VARINTS)
def test_rfc9000_varint_examples(encoded: bytes, value: int) -> None:
    assert decode_varint(encoded) == (value, len(encoded))
    assert Reader(encoded).pull_varint() == value
    # These examples use the shortest encoding, so encoding gives them back.
    assert encode_varint(value) == encoded
    assert varint_size(value) == len(encoded)
    w = Writer()
    w.push_varint(value)
    assert w.data == encoded


def test_rfc9000_non_minimal_varint_decodes() -> None:
    # RFC 9000 Appendix A.1: 0x4025 also decodes to 37.
    assert decode_varint(bytes.fromhex("4025")) == (37, 2)
    r = Reader(bytes.fromhex("4025"))
    assert r.pull_varint() == 37
    assert r.eof()


@pytest.mark.parametrize(
    ("value", "size"),
    [(0, 1), (63, 1), (64, 2), (16383, 2), (16384, 4), (2**30 - 1, 4), (2**30, 8), (VARINT_MAX, 8)],
)
def test_varint_size_boundaries(value: int, size: int) -> None:
    assert varint_size(value) == size
    assert len(encode_varint(value)) == size


@pytest.mark.parametrize("value", [VARINT_MAX + 1, 2**64, -1])
def test_encode_rejects_out_of_range(value: int) -> None:
    with pytest.raises(ValueError):
        encode_varint(value)
    with pytest.raises(ValueError):
        varint_size(value)
    with pytest.raises(ValueError):
        Writer().push_varint(value)


def test_decode_varint_at_offset() -> None:
    data = b"\xff" + bytes.fromhex("7bbd") + b"\x25"
    assert decode_varint(data, 1) == (15293, 3)
    assert decode_varint(data, 3) == (37, 4)


@given(st.integers(0, VARINT_MAX))
@SETTINGS
def test_varint_roundtrip(value: int) -> None:
    encoded = encode_varint(value)
    assert len(encoded) == varint_size(value)
    assert decode_varint(encoded) == (value, len(encoded))
    w = Writer()
    w.push_varint(value)
    assert w.data == encoded
    for cut in range(len(encoded)):
        with pytest.raises(DecodeError):
            decode_varint(encoded[:cut])
        with pytest.raises(DecodeError):
            Reader(encoded[:cut]).pull_varint()


FIXED = [
    ("uint8", 1, 8),
    ("uint16", 2, 16),
    ("uint24", 3, 24),
    ("uint32", 4, 32),
    ("uint64", 8, 64),
]


@pytest.mark.parametrize(("name", "size", "bits"), FIXED)
@given(data=st.data())
@SETTINGS
def test_fixed_roundtrip_and_truncation(
    name: str, size: int, bits: int, data: st.DataObject
) -> None:
    value = data.draw(st.integers(0, 2**bits - 1))
    w = Writer()
    getattr(w, f"push_{name}")(value)
    assert w.data == value.to_bytes(size, "big")
    r = Reader(w.data)
    assert getattr(r, f"pull_{name}")() == value
    assert r.eof()
    for cut in range(size):
        with pytest.raises(DecodeError):
            getattr(Reader(w.data[:cut]), f"pull_{name}")()


@given(st.binary(max_size=300), st.sampled_from([1, 2, 3, 4]))
@SETTINGS
def test_block_roundtrip(payload: bytes, length_size: int) -> None:
    w = Writer()
    w.push_block(length_size, payload)
    with w.block(length_size):
        w.push_bytes(payload)
    w.push_varint_block(payload)
    encoded = w.data
    r = Reader(encoded)
    assert r.pull_block(length_size) == payload
    sub = r.sub_reader(length_size)
    assert sub.pull_rest() == payload
    assert sub.eof()
    assert r.pull_varint_block() == payload
    r.expect_eof()
    # Any truncation of the last block is a DecodeError, never IndexError.
    for cut in range(len(encoded)):
        r = Reader(encoded[:cut])
        with pytest.raises(DecodeError):
            r.pull_block(length_size)
            r.sub_reader(length_size)
            r.pull_varint_block()


@given(st.binary(max_size=100), st.integers(0, 120))
@SETTINGS
def test_view_and_bytes(payload: bytes, n: int) -> None:
    for source in (payload, bytearray(payload), memoryview(payload)):
        r = Reader(source)
        if n <= len(payload):
            view = r.pull_view(n)
            assert isinstance(view, memoryview)
            assert view == payload[:n]
            assert r.tell() == n
            assert r.remaining == len(payload) - n
            assert r.pull_rest() == payload[n:]
            assert r.eof()
        else:
            with pytest.raises(DecodeError):
                r.pull_view(n)
            with pytest.raises(DecodeError):
                r.pull_bytes(n)
            assert r.tell() == 0  # a failed pull does not move


def test_pull_view_does_not_copy() -> None:
    source = bytearray(b"abcdef")
    view = Reader(source).pull_view(3)
    assert view.obj is source
    assert bytes(view) == b"abc"


def test_reader_over_non_byte_memoryview_counts_bytes() -> None:
    # A memoryview of 16-bit items is read as its 4 underlying bytes.
    items = array.array("H", [0x0102, 0x0304])
    raw = items.tobytes()
    r = Reader(memoryview(items))
    assert r.remaining == 4
    assert r.pull_bytes(4) == raw
    assert r.eof()


def test_seek_tell_expect_eof() -> None:
    r = Reader(b"\x01\x02\x03")
    r.seek(2)
    assert r.tell() == 2
    assert r.pull_uint8() == 3
    r.expect_eof()
    r.seek(0)
    with pytest.raises(DecodeError, match="trailing"):
        r.expect_eof("test")
    with pytest.raises(DecodeError):
        r.seek(4)
    with pytest.raises(DecodeError):
        r.seek(-1)


def test_negative_length_is_decode_error() -> None:
    with pytest.raises(DecodeError):
        Reader(b"abc").pull_bytes(-1)


def test_huge_declared_length_does_not_allocate() -> None:
    # A block claiming 2**62-1 bytes fails on bounds before any allocation.
    data = encode_varint(VARINT_MAX) + b"x"
    with pytest.raises(DecodeError):
        Reader(data).pull_varint_block()


def test_decode_error_is_project_error() -> None:
    with pytest.raises(Error) as info:
        Reader(b"").pull_uint16()
    assert info.value.error_code == 0x07  # FRAME_ENCODING_ERROR


def test_writer_block_overflow_and_buffer() -> None:
    w = Writer(b"ab")
    assert len(w) == 2
    w.buffer.extend(b"c")
    assert w.data == b"abc"
    with pytest.raises(ValueError):
        w.push_block(1, bytes(256))
    with pytest.raises(ValueError), w.block(1):
        w.push_bytes(bytes(256))
