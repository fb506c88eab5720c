"""Helpers shared by the record-layer tests (tests/tls/test_record_*.py)."""

from __future__ import annotations

import pytest
from hypothesis import settings

from mstls.codes import AlertDescription
from mstls.exceptions import TLSError
from mstls.tls.cipher_suites import IV_LENGTH, CipherSuite, make_aead
from mstls.tls.key_schedule import traffic_key_iv
from mstls.tls.record import RECORD_HEADER, ContentType, RecordLayer

SETTINGS = settings(max_examples=200, deadline=None)

SUITES = list(CipherSuite)
AES128 = CipherSuite.AES_128_GCM_SHA256
SECRET_LENGTH = {
    CipherSuite.AES_128_GCM_SHA256: 32,
    CipherSuite.AES_256_GCM_SHA384: 48,
    CipherSuite.CHACHA20_POLY1305_SHA256: 32,
}


def secret_for(suite: CipherSuite, fill: int = 0x42) -> bytes:
    return bytes([fill]) * SECRET_LENGTH[suite]


def keyed_pair(suite: CipherSuite = AES128) -> tuple[RecordLayer, RecordLayer]:
    """A writer and a reader sharing one traffic secret."""
    writer, reader = RecordLayer(), RecordLayer()
    writer.set_write_key(suite, secret_for(suite))
    reader.set_read_key(suite, secret_for(suite))
    return writer, reader


def force_sequence(
    layer: RecordLayer, *, read: int | None = None, write: int | None = None
) -> None:
    """Jump a direction's sequence number (reaching 2^24 records for real takes minutes)."""
    if read is not None:
        assert layer._read is not None
        layer._read.seq = read
    if write is not None:
        assert layer._write is not None
        layer._write.seq = write


def drain(layer: RecordLayer) -> list[tuple[ContentType, bytes]]:
    records = []
    while (record := layer.next_record()) is not None:
        records.append(record)
    return records


def feed(layer: RecordLayer, wire: bytes) -> list[tuple[ContentType, bytes]]:
    layer.receive_data(wire)
    return drain(layer)


def split_records(wire: bytes) -> list[tuple[int, bytes, bytes]]:
    """(type, version, body) of each record in ``wire``."""
    out = []
    pos = 0
    while pos < len(wire):
        length = int.from_bytes(wire[pos + 3 : pos + 5], "big")
        out.append((wire[pos], wire[pos + 1 : pos + 3], wire[pos + 5 : pos + 5 + length]))
        pos += RECORD_HEADER + length
    assert pos == len(wire)
    return out


def seal(
    suite: CipherSuite, secret: bytes, seq: int, inner: bytes, version: bytes = b"\3\3"
) -> bytes:
    """Build a protected record by hand (RFC 8446 §5.2, §5.3), bypassing the layer's checks."""
    key, iv = traffic_key_iv(suite, secret)
    nonce = (int.from_bytes(iv, "big") ^ seq).to_bytes(IV_LENGTH, "big")
    header = b"\x17" + version + (len(inner) + 16).to_bytes(2, "big")
    return header + make_aead(suite, key).encrypt(nonce, inner, header)


def expect_alert(alert: AlertDescription, layer: RecordLayer, wire: bytes) -> TLSError:
    layer.receive_data(wire)
    with pytest.raises(TLSError) as info:
        drain(layer)
    assert info.value.alert == alert, info.value
    return info.value
