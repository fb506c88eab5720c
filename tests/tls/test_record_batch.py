"""RecordLayer.next_batch: a run of protected records opened into one buffer (RFC 8446 §5)."""

from __future__ import annotations

import pytest

from mstls.codes import AlertDescription
from mstls.exceptions import TLSError
from mstls.tls.record import MAX_PLAINTEXT, ContentType, RecordLayer, pad_to_multiple

from .record_helpers import SUITES, keyed_pair

KEY_UPDATE = b"\x18\x00\x00\x01\x00"


def batches(layer: RecordLayer) -> list[tuple[ContentType, bytes]]:
    out = []
    while (record := layer.next_batch()) is not None:
        out.append((record[0], bytes(record[1])))
    return out


@pytest.mark.parametrize("suite", SUITES)
def test_run_of_application_records_comes_back_as_one(suite: object) -> None:
    writer, reader = keyed_pair(suite)  # type: ignore[arg-type]
    data = bytes(range(256)) * 300  # 76,800 bytes: five records, the last one short
    wire = writer.encode(ContentType.application_data, data)
    wire += writer.encode(ContentType.application_data, b"", padding=pad_to_multiple(64))
    wire += writer.encode(ContentType.application_data, b"tail", padding=pad_to_multiple(64))
    reader.receive_data(wire)
    assert batches(reader) == [(ContentType.application_data, data + b"tail")]
    assert reader.read_sequence == 7 and reader.bytes_received_plaintext == len(data) + 4


def test_run_stops_after_a_key_update_so_the_new_key_applies_to_the_next_record() -> None:
    writer, reader = keyed_pair()
    wire = writer.encode(ContentType.application_data, bytes(2 * MAX_PLAINTEXT))
    wire += writer.encode(ContentType.handshake, KEY_UPDATE)
    writer.update_write_key()
    wire += writer.encode(ContentType.application_data, b"after" * 5000)
    reader.receive_data(wire)
    assert reader.next_batch() == (ContentType.application_data, bytes(2 * MAX_PLAINTEXT))
    assert reader.next_batch() == (ContentType.handshake, KEY_UPDATE)
    reader.update_read_key()
    assert batches(reader) == [(ContentType.application_data, b"after" * 5000)]


def test_partial_record_waits_and_bytes_fed_later_complete_it() -> None:
    writer, reader = keyed_pair()
    wire = writer.encode(ContentType.application_data, bytes(3 * MAX_PLAINTEXT))
    reader.receive_data(wire[:-10])
    assert batches(reader) == [(ContentType.application_data, bytes(2 * MAX_PLAINTEXT))]
    assert reader.pending_bytes == len(wire) // 3 - 10  # three records of one size
    reader.receive_data(wire[-10:])
    assert batches(reader) == [(ContentType.application_data, bytes(MAX_PLAINTEXT))]
    assert reader.pending_bytes == 0


def test_forged_record_in_a_run_is_bad_record_mac_and_sticky() -> None:
    writer, reader = keyed_pair()
    wire = bytearray(writer.encode(ContentType.application_data, bytes(3 * MAX_PLAINTEXT)))
    wire[len(wire) // 2] ^= 1  # inside the second record
    reader.receive_data(bytes(wire))
    with pytest.raises(TLSError) as caught:
        reader.next_batch()
    assert caught.value.alert == AlertDescription.bad_record_mac
    with pytest.raises(TLSError):
        reader.next_batch()


def test_too_many_empty_records_in_a_run() -> None:
    writer, reader = keyed_pair()
    wire = b"".join(writer.encode(ContentType.application_data, b"") for _ in range(40))
    reader.receive_data(wire)
    with pytest.raises(TLSError) as caught:
        reader.next_batch()
    assert caught.value.alert == AlertDescription.unexpected_message
