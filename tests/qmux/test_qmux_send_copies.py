"""Issue 15: the TCP send path copies application data only where it must."""

from __future__ import annotations

from mstls.core.send_stream import SMALL_WRITE, SendStream
from mstls.qmux.config import MAX_SEND_PER_CALL
from mstls.wire.qmux import RecordReader, encode_record
from tests.qmux.pair import client_config

SIZE = 4 * SMALL_WRITE


def test_a_view_of_immutable_bytes_is_kept_without_a_copy() -> None:
    payload = bytes(range(256)) * (SIZE // 256)
    stream = SendStream(0, limit=1 << 20)
    assert stream.write(memoryview(payload)[:SIZE]) == SIZE
    kept = stream._chunks[-1]
    assert isinstance(kept, memoryview) and kept.obj is payload


def test_a_view_of_a_mutable_buffer_is_copied() -> None:
    payload = bytearray(SIZE)
    stream = SendStream(0, limit=1 << 20)
    assert stream.write(memoryview(payload)) == SIZE
    payload[:4] = b"\xff" * 4  # the application reuses its buffer at once
    kept = stream._chunks[-1]
    assert bytes(kept[:4]) == bytes(4)


def test_one_call_produces_at_most_one_default_record() -> None:
    # The buffer handed to the driver stays below glibc's mmap threshold (128 KiB).
    assert client_config().max_send_per_call == MAX_SEND_PER_CALL <= 64 << 10


def test_a_record_completed_from_buffered_bytes_is_handed_over_without_a_copy() -> None:
    record = encode_record(b"\x01" * 300)  # PING frames
    reader = RecordReader()
    assert reader.feed(record[:100]) == []
    (payload,) = reader.feed(record[100:])
    assert isinstance(payload, memoryview) and bytes(payload) == b"\x01" * 300
    assert reader.buffered == 0
    (again,) = reader.feed(record)  # the next record does not disturb the first
    assert bytes(payload) == bytes(again) == b"\x01" * 300
