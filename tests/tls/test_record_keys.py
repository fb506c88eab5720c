"""The TLS 1.3 record layer's keys over time: KeyUpdate (RFC 8446 §4.6.3, §7.2) and the
AEAD and sequence-number limits (§5.3, §5.5).
"""

from __future__ import annotations

import pytest

from mstls.codes import AlertDescription
from mstls.exceptions import TLSError
from mstls.tls.cipher_suites import CipherSuite
from mstls.tls.key_schedule import next_traffic_secret
from mstls.tls.record import (
    AEAD_RECORD_LIMIT,
    KEY_UPDATE_MARGIN,
    SEQUENCE_LIMIT,
    ContentType,
    RecordLayer,
)
from tests.tls.record_helpers import (
    AES128,
    SUITES,
    expect_alert,
    feed,
    force_sequence,
    keyed_pair,
    seal,
    secret_for,
)

# -- KeyUpdate (§4.6.3, §7.2) -----------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_key_update_interoperates(suite: CipherSuite) -> None:
    writer, reader = keyed_pair(suite)
    first = writer.encode(ContentType.application_data, b"before")
    key_update = writer.encode(ContentType.handshake, b"\x18\x00\x00\x01\x00")
    new_write = writer.update_write_key()
    assert new_write == next_traffic_secret(suite, secret_for(suite))
    assert writer.write_sequence == 0
    after = writer.encode(ContentType.application_data, b"after")
    # All three arrive in one segment: the reader switches keys between records.
    reader.receive_data(first + key_update + after)
    assert reader.next_record() == (ContentType.application_data, b"before")
    assert reader.next_record() == (ContentType.handshake, b"\x18\x00\x00\x01\x00")
    assert reader.update_read_key() == new_write
    assert reader.read_sequence == 0
    assert reader.next_record() == (ContentType.application_data, b"after")
    # A second update chains from the first.
    assert writer.update_write_key() == next_traffic_secret(suite, new_write)


def test_reader_without_key_update_fails() -> None:
    writer, reader = keyed_pair()
    writer.update_write_key()
    expect_alert(
        AlertDescription.bad_record_mac, reader, writer.encode(ContentType.application_data, b"x")
    )


def test_key_update_needs_a_key() -> None:
    layer = RecordLayer()
    for update in (layer.update_read_key, layer.update_write_key):
        with pytest.raises(TLSError) as info:
            update()
        assert info.value.alert == AlertDescription.internal_error


# -- limits (§5.3, §5.5) ----------------------------------------------------------------------


def test_needs_key_update_before_the_aead_limit() -> None:
    writer, _ = keyed_pair(AES128)
    limit = AEAD_RECORD_LIMIT[AES128]
    assert not writer.needs_key_update
    force_sequence(writer, write=limit - KEY_UPDATE_MARGIN - 1)
    writer.encode(ContentType.application_data, b"x")
    assert writer.needs_key_update
    force_sequence(writer, write=limit - 1)
    writer.encode(ContentType.handshake, b"\x18\x00\x00\x01\x00")  # the KeyUpdate still fits
    with pytest.raises(TLSError) as info:
        writer.encode(ContentType.application_data, b"x")
    assert info.value.alert == AlertDescription.internal_error
    writer.update_write_key()
    assert not writer.needs_key_update
    writer.encode(ContentType.application_data, b"x")


def test_chacha_is_bounded_only_by_the_sequence_number() -> None:
    suite = CipherSuite.CHACHA20_POLY1305_SHA256
    writer, _reader = keyed_pair(suite)
    force_sequence(writer, write=AEAD_RECORD_LIMIT[AES128] + 10)
    assert not writer.needs_key_update
    writer.encode(ContentType.application_data, b"x")
    force_sequence(writer, write=SEQUENCE_LIMIT)
    with pytest.raises(TLSError) as info:
        writer.encode(ContentType.application_data, b"x")
    assert info.value.alert == AlertDescription.internal_error


def test_receiver_does_not_enforce_the_senders_aead_limit() -> None:
    _, reader = keyed_pair(AES128)
    seq = AEAD_RECORD_LIMIT[AES128] + 5
    force_sequence(reader, read=seq)
    wire = seal(AES128, secret_for(AES128), seq, b"late\x17")
    assert feed(reader, wire) == [(ContentType.application_data, b"late")]


def test_read_sequence_never_wraps() -> None:
    _, reader = keyed_pair(AES128)
    force_sequence(reader, read=SEQUENCE_LIMIT)
    wire = seal(AES128, secret_for(AES128), SEQUENCE_LIMIT, b"x\x17")
    expect_alert(AlertDescription.internal_error, reader, wire)
