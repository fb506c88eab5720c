"""Tests for mstls.tls.record: the TLS 1.3 record layer over TCP (RFC 8446 §5)."""

from __future__ import annotations

import contextlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mstls.codes import AlertDescription
from mstls.exceptions import Error, PeerAlert, TLSError
from mstls.tls.cipher_suites import IV_LENGTH, CipherSuite, make_aead
from mstls.tls.key_schedule import next_traffic_secret, traffic_key_iv
from mstls.tls.record import (
    AEAD_RECORD_LIMIT,
    KEY_UPDATE_MARGIN,
    MAX_CIPHERTEXT,
    MAX_EMPTY_RECORDS,
    MAX_INPUT_BUFFER,
    MAX_PLAINTEXT,
    RECORD_HEADER,
    SEQUENCE_LIMIT,
    AlertLevel,
    ContentType,
    RecordLayer,
    decode_alert,
    pad_to_multiple,
)

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


# -- round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_round_trip_each_suite(suite: CipherSuite) -> None:
    writer, reader = keyed_pair(suite)
    messages = [
        (ContentType.handshake, b"\x14\x00\x00\x20" + bytes(32)),
        (ContentType.application_data, b"hello"),
        (ContentType.application_data, bytes(range(256)) * 100),
        (ContentType.alert, b"\x01\x00"),
    ]
    wire = b"".join(writer.encode(t, d) for t, d in messages)
    for outer_type, version, _ in split_records(wire):
        assert (outer_type, version) == (ContentType.application_data, b"\x03\x03")
    got = feed(reader, wire)
    expected_app = messages[2][1]
    assert got[0] == messages[0]
    assert got[1] == messages[1]
    assert b"".join(d for t, d in got[2:-1]) == expected_app
    assert got[-1] == messages[-1]
    assert reader.bytes_received_plaintext == 5 + len(expected_app)
    assert reader.read_sequence == writer.write_sequence


@pytest.mark.parametrize("suite", SUITES)
def test_each_record_uses_a_fresh_nonce(suite: CipherSuite) -> None:
    writer, reader = keyed_pair(suite)
    records = [writer.encode(ContentType.application_data, b"same plaintext") for _ in range(4)]
    assert len({bytes(r) for r in records}) == 4
    assert writer.write_sequence == 4
    # Record i opens only with nonce iv XOR i (RFC 8446 §5.3).
    key, iv = traffic_key_iv(suite, secret_for(suite))
    aead = make_aead(suite, key)
    for seq, record in enumerate(records):
        nonce = (int.from_bytes(iv, "big") ^ seq).to_bytes(IV_LENGTH, "big")
        assert aead.decrypt(nonce, record[5:], record[:5]) == b"same plaintext\x17"
    assert (
        feed(reader, b"".join(records)) == [(ContentType.application_data, b"same plaintext")] * 4
    )


@pytest.mark.parametrize("suite", SUITES)
def test_sealing_without_encrypt_into_gives_the_same_bytes(suite: CipherSuite) -> None:
    # cryptography < 47 has no AEAD.encrypt_into; the fallback must be byte-identical.
    data = bytes(range(256)) * 200
    fast, slow = keyed_pair(suite)[0], keyed_pair(suite)[0]
    assert slow._write is not None
    slow._write.encrypt_into = None
    for padding in (None, pad_to_multiple(512)):
        assert fast.encode(ContentType.application_data, data, padding=padding) == slow.encode(
            ContentType.application_data, data, padding=padding
        )


@pytest.mark.parametrize("keyed", [False, True])
def test_fragmentation_at_2_14(keyed: bool) -> None:
    writer = RecordLayer()
    reader = RecordLayer()
    if keyed:
        writer, reader = keyed_pair()
    content = ContentType.application_data if keyed else ContentType.handshake
    data = bytes(range(251)) * ((2 * MAX_PLAINTEXT + 10) // 251 + 1)
    data = data[: 2 * MAX_PLAINTEXT + 10]
    wire = writer.encode(content, data)
    records = split_records(wire)
    assert len(records) == 3
    overhead = 17 if keyed else 0
    assert [len(body) - overhead for _, _, body in records] == [MAX_PLAINTEXT, MAX_PLAINTEXT, 10]
    got = feed(reader, wire)
    assert [len(d) for _, d in got] == [MAX_PLAINTEXT, MAX_PLAINTEXT, 10]
    assert b"".join(d for _, d in got) == data
    # Exactly 2^14 bytes is one record.
    assert len(split_records(writer.encode(content, bytes(MAX_PLAINTEXT)))) == 1


@SETTINGS
@given(
    payloads=st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=20000), max_size=12),
    suite=st.sampled_from(SUITES),
)
def test_any_chunking_gives_the_same_records(
    payloads: list[bytes], cuts: list[int], suite: CipherSuite
) -> None:
    writer, reader = keyed_pair(suite)
    wire = b"".join(writer.encode(ContentType.application_data, p) for p in payloads)
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    got = []
    for a, b in itertools.pairwise(points):
        reader.receive_data(memoryview(wire)[a:b])
        got.extend(drain(reader))
    assert got == [(ContentType.application_data, p) for p in payloads]
    assert not reader.has_partial_record


def test_partial_record_waits_for_more_bytes() -> None:
    writer, reader = keyed_pair()
    wire = writer.encode(ContentType.application_data, b"abc")
    reader.receive_data(wire[:3])
    assert reader.next_record() is None
    reader.receive_data(wire[3:-1])
    assert reader.next_record() is None
    assert reader.has_partial_record
    reader.receive_data(wire[-1:])
    assert reader.next_record() == (ContentType.application_data, b"abc")
    assert reader.next_record() is None


# -- padding (§5.4) ---------------------------------------------------------------------


def test_padding_hides_type_and_length_and_is_stripped() -> None:
    writer = RecordLayer(padding=pad_to_multiple(256))
    writer.set_write_key(AES128, secret_for(AES128))
    reader = RecordLayer()
    reader.set_read_key(AES128, secret_for(AES128))
    a = writer.encode(ContentType.handshake, b"\x04\x00\x00\x05hello")
    b = writer.encode(ContentType.application_data, b"x" * 200)
    c = writer.encode(ContentType.alert, b"\x01\x00")
    for record in (a, b, c):
        ((outer, _, body),) = split_records(record)
        assert outer == ContentType.application_data
        assert len(body) == 256 + 1 + 16
    assert feed(reader, a + b + c) == [
        (ContentType.handshake, b"\x04\x00\x00\x05hello"),
        (ContentType.application_data, b"x" * 200),
        (ContentType.alert, b"\x01\x00"),
    ]


def test_padding_per_call_and_clamped_to_the_record_limit() -> None:
    writer, reader = keyed_pair()
    big = writer.encode(
        ContentType.application_data, bytes(MAX_PLAINTEXT - 3), padding=lambda t, n: 10**6
    )
    ((_, _, body),) = split_records(big)
    assert len(body) == MAX_PLAINTEXT + 1 + 16
    plain = writer.encode(ContentType.application_data, b"abc")
    assert len(split_records(plain)[0][2]) == 3 + 1 + 16
    assert [len(d) for _, d in feed(reader, big + plain)] == [MAX_PLAINTEXT - 3, 3]


def test_padding_only_application_data_is_consumed_silently() -> None:
    writer = RecordLayer(padding=lambda t, n: 100)
    writer.set_write_key(AES128, secret_for(AES128))
    reader = RecordLayer()
    reader.set_read_key(AES128, secret_for(AES128))
    wire = writer.encode(ContentType.application_data, b"") + writer.encode(
        ContentType.application_data, b"after"
    )
    assert feed(reader, wire) == [(ContentType.application_data, b"after")]
    assert reader.bytes_received_plaintext == 5


def test_pad_to_multiple_rejects_nonpositive_block() -> None:
    with pytest.raises(ValueError):
        pad_to_multiple(0)


# -- protected record errors -------------------------------------------------------------


@pytest.mark.parametrize("position", [5, 6, 20, -17, -1])
def test_tampered_ciphertext_is_bad_record_mac(position: int) -> None:
    writer, reader = keyed_pair()
    wire = bytearray(writer.encode(ContentType.application_data, b"some application data"))
    wire[position] ^= 0x01
    expect_alert(AlertDescription.bad_record_mac, reader, bytes(wire))


def test_wrong_key_or_sequence_is_bad_record_mac() -> None:
    writer, _ = keyed_pair()
    writer.encode(ContentType.application_data, b"skipped")  # reader never sees seq 0
    wire = writer.encode(ContentType.application_data, b"at seq 1")
    _, reader = keyed_pair()
    expect_alert(AlertDescription.bad_record_mac, reader, wire)


def test_ciphertext_shorter_than_tag_is_bad_record_mac() -> None:
    _, reader = keyed_pair()
    expect_alert(AlertDescription.bad_record_mac, reader, b"\x17\x03\x03\x00\x05abcde")


def test_protected_record_version_must_be_0303() -> None:
    suite = AES128
    _, reader = keyed_pair(suite)
    wire = seal(suite, secret_for(suite), 0, b"data\x17", version=b"\x03\x01")
    expect_alert(AlertDescription.decode_error, reader, wire)


def test_oversize_protected_length_is_record_overflow() -> None:
    _, reader = keyed_pair()
    header = b"\x17\x03\x03" + (MAX_CIPHERTEXT + 1).to_bytes(2, "big")
    # Rejected from the header alone: the layer does not wait for the body.
    expect_alert(AlertDescription.record_overflow, reader, header)


def test_maximal_protected_length_is_accepted_by_the_header_check() -> None:
    _, reader = keyed_pair()
    wire = b"\x17\x03\x03" + MAX_CIPHERTEXT.to_bytes(2, "big") + bytes(MAX_CIPHERTEXT)
    reader.receive_data(wire[:RECORD_HEADER])
    assert reader.next_record() is None
    # ...and then fails authentication, not the size check.
    expect_alert(AlertDescription.bad_record_mac, reader, wire[RECORD_HEADER:])


@pytest.mark.parametrize("suite", SUITES)
def test_inner_plaintext_over_2_14_plus_1_is_record_overflow(suite: CipherSuite) -> None:
    _, reader = keyed_pair(suite)
    inner = bytes(MAX_PLAINTEXT + 1) + b"\x17"  # 2^14 + 2 bytes
    wire = seal(suite, secret_for(suite), 0, inner)
    expect_alert(AlertDescription.record_overflow, reader, wire)


def test_inner_plaintext_of_exactly_2_14_plus_1_is_accepted() -> None:
    _, reader = keyed_pair()
    wire = seal(AES128, secret_for(AES128), 0, b"\xaa" * MAX_PLAINTEXT + b"\x17")
    assert feed(reader, wire) == [(ContentType.application_data, b"\xaa" * MAX_PLAINTEXT)]


@pytest.mark.parametrize("inner", [b"", b"\x00", bytes(300)])
def test_all_zero_inner_plaintext_is_unexpected_message(inner: bytes) -> None:
    _, reader = keyed_pair()
    wire = seal(AES128, secret_for(AES128), 0, inner)
    expect_alert(AlertDescription.unexpected_message, reader, wire)


@pytest.mark.parametrize("inner_type", [0x18, 0x01, 0xFF, ContentType.change_cipher_spec])
def test_unknown_or_ccs_inner_type_is_unexpected_message(inner_type: int) -> None:
    _, reader = keyed_pair()
    reader.allow_ccs = True  # a protected CCS is never acceptable
    wire = seal(AES128, secret_for(AES128), 0, b"\x01" + bytes([inner_type]))
    expect_alert(AlertDescription.unexpected_message, reader, wire)


@pytest.mark.parametrize("inner", [b"\x16", b"\x15", b"\x16\x00\x00"])
def test_empty_protected_handshake_or_alert_is_unexpected_message(inner: bytes) -> None:
    _, reader = keyed_pair()
    wire = seal(AES128, secret_for(AES128), 0, inner)
    expect_alert(AlertDescription.unexpected_message, reader, wire)


def test_protected_alert_must_be_two_bytes() -> None:
    _, reader = keyed_pair()
    wire = seal(AES128, secret_for(AES128), 0, b"\x02\x28\x02\x28\x15")
    expect_alert(AlertDescription.decode_error, reader, wire)


def test_unprotected_records_after_keys_are_unexpected() -> None:
    for record in (
        b"\x16\x03\x03\x00\x04\x14\x00\x00\x00",  # handshake
        b"\x15\x03\x03\x00\x02\x02\x28",  # a plaintext alert
    ):
        _, reader = keyed_pair()
        error = expect_alert(AlertDescription.unexpected_message, reader, record)
        assert "unprotected" in error.reason


def test_unprotected_alert_during_the_handshake_is_the_peers_alert() -> None:
    _, reader = keyed_pair()
    reader.allow_ccs = True  # still in the handshake
    error = expect_alert(
        AlertDescription.illegal_parameter, reader, b"\x15\x03\x03\x00\x02\x02\x2f"
    )
    assert isinstance(error, PeerAlert)
    assert "illegal_parameter" in error.reason


# -- empty records (§5.1, DoS bound) ------------------------------------------------------


def test_empty_application_data_bounded() -> None:
    writer, reader = keyed_pair()

    def empties() -> bytes:
        return b"".join(
            writer.encode(ContentType.application_data, b"") for _ in range(MAX_EMPTY_RECORDS)
        )

    wire = empties() + writer.encode(ContentType.application_data, b"x") + empties()
    assert feed(reader, wire) == [(ContentType.application_data, b"x")]
    assert reader.read_sequence == 2 * MAX_EMPTY_RECORDS + 1
    expect_alert(
        AlertDescription.unexpected_message,
        reader,
        writer.encode(ContentType.application_data, b""),
    )


@pytest.mark.parametrize(
    ("record", "alert"),
    [
        (b"\x16\x03\x03\x00\x00", AlertDescription.unexpected_message),
        (b"\x15\x03\x03\x00\x00", AlertDescription.unexpected_message),
        (b"\x15\x03\x03\x00\x01\x02", AlertDescription.decode_error),
        (b"\x15\x03\x03\x00\x03\x02\x28\x00", AlertDescription.decode_error),
    ],
)
def test_plaintext_empty_or_malformed_records(record: bytes, alert: AlertDescription) -> None:
    expect_alert(alert, RecordLayer(), record)


# -- plaintext records ----------------------------------------------------------------


def test_plaintext_oversize_length_is_record_overflow() -> None:
    header = b"\x16\x03\x03" + (MAX_PLAINTEXT + 1).to_bytes(2, "big")
    expect_alert(AlertDescription.record_overflow, RecordLayer(), header)


def test_plaintext_application_data_before_keys_is_unexpected() -> None:
    expect_alert(AlertDescription.unexpected_message, RecordLayer(), b"\x17\x03\x03\x00\x01x")


@pytest.mark.parametrize("content_type", [0, 19, 24, 0x47, 255])
@pytest.mark.parametrize("keyed", [False, True])
def test_unknown_content_type_is_unexpected_message(content_type: int, keyed: bool) -> None:
    layer = keyed_pair()[1] if keyed else RecordLayer()
    # Rejected from the header alone (e.g. "GET /" sent to a TLS port).
    header = bytes([content_type]) + b"\x03\x03\x00\x01"
    expect_alert(AlertDescription.unexpected_message, layer, header)


@pytest.mark.parametrize("version", [b"\x03\x01", b"\x03\x03", b"\x03\x00", b"\xfe\xfd"])
def test_plaintext_legacy_record_version_is_ignored(version: bytes) -> None:
    # RFC 8446 §5.1 and Appendix D: TLSPlaintext.legacy_record_version MUST be ignored.
    layer = RecordLayer()
    record = b"\x16" + version + b"\x00\x04\x02\x00\x00\x00"
    assert feed(layer, record) == [(ContentType.handshake, b"\x02\x00\x00\x00")]


def test_plaintext_versions_written() -> None:
    client = RecordLayer()
    hello = b"\x01\x00\x00\x02\x03\x03"
    assert client.encode(ContentType.handshake, hello)[:5] == b"\x16\x03\x01\x00\x06"
    # A second ClientHello (after HelloRetryRequest) says 0x0303.
    assert client.encode(ContentType.handshake, hello)[:3] == b"\x16\x03\x03"
    server = RecordLayer()
    assert server.encode(ContentType.handshake, b"\x02\x00\x00\x00")[:3] == b"\x16\x03\x03"
    big = RecordLayer().encode(ContentType.handshake, b"\x01" + bytes(MAX_PLAINTEXT + 5))
    assert [version for _, version, _ in split_records(big)] == [b"\x03\x01"] * 2


def test_plaintext_alert_round_trip() -> None:
    sender, receiver = RecordLayer(), RecordLayer()
    wire = sender.encode_alert(AlertDescription.handshake_failure)
    assert wire == b"\x15\x03\x03\x00\x02\x02\x28"
    ((content_type, body),) = feed(receiver, wire)
    assert content_type == ContentType.alert
    assert decode_alert(body) == (AlertLevel.fatal, AlertDescription.handshake_failure)


# -- ChangeCipherSpec (§5, Appendix D.4) ----------------------------------------------------


CCS = b"\x14\x03\x03\x00\x01\x01"


@pytest.mark.parametrize("keyed", [False, True])
def test_ccs_dropped_when_allowed(keyed: bool) -> None:
    writer = RecordLayer()
    reader = RecordLayer()
    if keyed:
        writer, reader = keyed_pair()
    reader.allow_ccs = True
    msg = writer.encode(ContentType.handshake, b"\x08\x00\x00\x00")
    assert feed(reader, CCS + msg) == [(ContentType.handshake, b"\x08\x00\x00\x00")]


@pytest.mark.parametrize("keyed", [False, True])
def test_ccs_not_allowed_is_unexpected(keyed: bool) -> None:
    reader = keyed_pair()[1] if keyed else RecordLayer()
    expect_alert(AlertDescription.unexpected_message, reader, CCS)


@pytest.mark.parametrize(
    "record",
    [b"\x14\x03\x03\x00\x01\x02", b"\x14\x03\x03\x00\x00", b"\x14\x03\x03\x00\x02\x01\x01"],
)
def test_ccs_with_other_content_is_unexpected(record: bytes) -> None:
    reader = RecordLayer()
    reader.allow_ccs = True
    expect_alert(AlertDescription.unexpected_message, reader, record)


def test_ccs_after_handshake_is_unexpected() -> None:
    reader = RecordLayer()
    reader.allow_ccs = True
    assert feed(reader, CCS) == []
    reader.allow_ccs = False  # the caller saw the peer's Finished
    expect_alert(AlertDescription.unexpected_message, reader, CCS)


def test_ccs_flood_is_bounded() -> None:
    reader = RecordLayer()
    reader.allow_ccs = True
    expect_alert(AlertDescription.unexpected_message, reader, CCS * (MAX_EMPTY_RECORDS + 1))


def test_ccs_is_always_sent_in_the_clear() -> None:
    writer, _ = keyed_pair()
    assert writer.encode(ContentType.change_cipher_spec, b"\x01") == CCS
    assert writer.write_sequence == 0


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


# -- sending rules ---------------------------------------------------------------------------


def test_encode_edge_cases() -> None:
    layer = RecordLayer()
    assert layer.encode(ContentType.handshake, b"") == b""  # never a zero-length handshake record
    for content_type, data in (
        (ContentType.application_data, b"secret"),  # never in the clear
        (ContentType.alert, b"\x02"),  # alerts are exactly two bytes
        (ContentType.alert, b"\x02\x28\x02\x28"),  # and never coalesced
    ):
        with pytest.raises(TLSError) as info:
            layer.encode(content_type, data)
        assert info.value.alert == AlertDescription.internal_error


def test_encode_alert_levels() -> None:
    writer, reader = keyed_pair()
    wire = b"".join(
        (
            writer.encode_alert(AlertDescription.close_notify),
            writer.encode_alert(AlertDescription.user_canceled),
            writer.encode_alert(AlertDescription.bad_record_mac),
            writer.encode_alert(AlertDescription.close_notify, AlertLevel.fatal),
        )
    )
    alerts = [decode_alert(body) for _, body in feed(reader, wire)]
    assert alerts == [
        (AlertLevel.warning, AlertDescription.close_notify),
        (AlertLevel.warning, AlertDescription.user_canceled),
        (AlertLevel.fatal, AlertDescription.bad_record_mac),
        (AlertLevel.fatal, AlertDescription.close_notify),
    ]


def test_decode_alert() -> None:
    assert decode_alert(b"\x02\xfe") == (2, 0xFE)
    with pytest.raises(TLSError) as info:
        decode_alert(b"\x02")
    assert info.value.alert == AlertDescription.decode_error


# -- buffering and EOF -------------------------------------------------------------------------


def test_errors_are_sticky() -> None:
    layer = RecordLayer()
    error = expect_alert(AlertDescription.unexpected_message, layer, b"\x00\x03\x03\x00\x00")
    with pytest.raises(TLSError) as again:
        layer.next_record()
    assert type(again.value) is type(error) and again.value.alert == error.alert
    # A fresh copy each time: the stored error never pins a traceback (exceptions.kept).
    assert again.value is not error and again.value.reason == error.reason


def test_input_buffer_is_bounded() -> None:
    sender, layer = RecordLayer(), RecordLayer()
    wire = sender.encode(ContentType.handshake, b"\x0b" + bytes(3 * MAX_PLAINTEXT - 1))
    assert len(wire) > MAX_INPUT_BUFFER
    layer.receive_data(wire)  # one big read is fine...
    assert not layer.wants_data
    with pytest.raises(TLSError) as info:  # ...but not another one before draining
        layer.receive_data(b"more")
    assert info.value.alert == AlertDescription.internal_error
    assert [len(body) for _, body in drain(layer)] == [MAX_PLAINTEXT] * 3
    assert layer.wants_data
    assert layer.pending_bytes == 0


def test_eof_state_reports_truncation() -> None:
    writer, reader = keyed_pair()
    wire = writer.encode(ContentType.application_data, b"12345") + writer.encode(
        ContentType.application_data, b"678"
    )
    reader.receive_data(wire[:-4])
    assert drain(reader) == [(ContentType.application_data, b"12345")]
    reader.receive_eof()
    state = reader.eof_state()
    assert state.eof_received and reader.eof_received
    assert state.has_partial_record and reader.has_partial_record
    assert state.pending_bytes == len(wire) - 4 - 27
    assert state.bytes_received_plaintext == 5
    assert "middle of a record" in state.message and "5 application bytes" in state.message
    assert not reader.wants_data
    with pytest.raises(TLSError):
        reader.receive_data(b"late")


def test_eof_at_record_boundary() -> None:
    layer = RecordLayer()
    layer.receive_eof()
    state = layer.eof_state()
    assert not state.has_partial_record
    assert "record boundary" in state.message


# -- fuzz ------------------------------------------------------------------------------------


@SETTINGS
@given(
    data=st.binary(max_size=400),
    keyed=st.booleans(),
    allow_ccs=st.booleans(),
    chunk=st.integers(min_value=1, max_value=64),
)
def test_random_bytes_raise_only_project_errors(
    data: bytes, keyed: bool, allow_ccs: bool, chunk: int
) -> None:
    layer = keyed_pair()[1] if keyed else RecordLayer()
    layer.allow_ccs = allow_ccs
    try:
        for start in range(0, len(data), chunk):
            layer.receive_data(data[start : start + chunk])
            drain(layer)
    except Error:
        pass


@SETTINGS
@given(
    header_type=st.sampled_from([20, 21, 22, 23]),
    length=st.integers(min_value=0, max_value=40),
    body=st.binary(max_size=40),
    keyed=st.booleans(),
)
def test_structured_fuzz_raises_only_project_errors(
    header_type: int, length: int, body: bytes, keyed: bool
) -> None:
    layer = keyed_pair()[1] if keyed else RecordLayer()
    layer.allow_ccs = True
    with contextlib.suppress(Error):
        feed(layer, bytes([header_type, 3, 3]) + length.to_bytes(2, "big") + body)


# -- RFC 8448 §3 (Simple 1-RTT Handshake) known answers ------------------------------------------


def unhex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


RFC8448_SERVER_HS_SECRET = unhex(
    "b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4"
    " e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38"
)
RFC8448_CLIENT_HS_SECRET = unhex(
    "b3 ed db 12 6e 06 7f 35 a7 80 b3 ab f4 5e 2d 8f"
    " 3b 1a 95 07 38 f5 2e 96 00 74 6a 0e 27 a5 5a 21"
)
RFC8448_CLIENT_AP_SECRET = unhex(
    "9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52"
    " 87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 75 04 a5"
)
RFC8448_SERVER_AP_SECRET = unhex(
    "a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32"
    " 82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 16 43"
)
RFC8448_SERVER_HELLO_RECORD = unhex(
    """16 03 03 00 5a 02 00 00 56 03 03 a6 af 06 a4 12 18 60 dc 5e 6e 60 24 9c
    d3 4c 95 93 0c 8a c5 cb 14 34 da c1 55 77 2e d3 e2 69 28 00 13 01 00 00
    2e 00 33 00 24 00 1d 00 20 c9 82 88 76 11 20 95 fe 66 76 2b db f7 c6 72
    e1 56 d6 cc 25 3b 83 3d f1 dd 69 b1 b0 4e 75 1f 0f 00 2b 00 02 03 04"""
)
RFC8448_ENCRYPTED_EXTENSIONS = unhex(
    """08 00 00 24 00 22 00 0a 00 14 00 12 00 1d 00 17 00 18 00 19 01 00 01 01
    01 02 01 03 01 04 00 1c 00 02 40 01 00 00 00 00"""
)
RFC8448_SERVER_FINISHED = unhex(
    """14 00 00 20 9b 9b 14 1d 90 63 37 fb d2 cb dc e7 1d f4 de da 4a b4 2c 30
    95 72 cb 7f ff ee 54 54 b7 8f 07 18"""
)
# {server} send handshake record: complete record (679 octets).
RFC8448_SERVER_FLIGHT_RECORD = unhex(
    """17 03 03 02 a2 d1 ff 33 4a 56 f5 bf f6 59 4a 07 cc 87 b5 80 23 3f 50 0f
    45 e4 89 e7 f3 3a f3 5e df 78 69 fc f4 0a a4 0a a2 b8 ea 73 f8 48 a7 ca
    07 61 2e f9 f9 45 cb 96 0b 40 68 90 51 23 ea 78 b1 11 b4 29 ba 91 91 cd
    05 d2 a3 89 28 0f 52 61 34 aa dc 7f c7 8c 4b 72 9d f8 28 b5 ec f7 b1 3b
    d9 ae fb 0e 57 f2 71 58 5b 8e a9 bb 35 5c 7c 79 02 07 16 cf b9 b1 18 3e
    f3 ab 20 e3 7d 57 a6 b9 d7 47 76 09 ae e6 e1 22 a4 cf 51 42 73 25 25 0c
    7d 0e 50 92 89 44 4c 9b 3a 64 8f 1d 71 03 5d 2e d6 5b 0e 3c dd 0c ba e8
    bf 2d 0b 22 78 12 cb b3 60 98 72 55 cc 74 41 10 c4 53 ba a4 fc d6 10 92
    8d 80 98 10 e4 b7 ed 1a 8f d9 91 f0 6a a6 24 82 04 79 7e 36 a6 a7 3b 70
    a2 55 9c 09 ea d6 86 94 5b a2 46 ab 66 e5 ed d8 04 4b 4c 6d e3 fc f2 a8
    94 41 ac 66 27 2f d8 fb 33 0e f8 19 05 79 b3 68 45 96 c9 60 bd 59 6e ea
    52 0a 56 a8 d6 50 f5 63 aa d2 74 09 96 0d ca 63 d3 e6 88 61 1e a5 e2 2f
    44 15 cf 95 38 d5 1a 20 0c 27 03 42 72 96 8a 26 4e d6 54 0c 84 83 8d 89
    f7 2c 24 46 1a ad 6d 26 f5 9e ca ba 9a cb bb 31 7b 66 d9 02 f4 f2 92 a3
    6a c1 b6 39 c6 37 ce 34 31 17 b6 59 62 22 45 31 7b 49 ee da 0c 62 58 f1
    00 d7 d9 61 ff b1 38 64 7e 92 ea 33 0f ae ea 6d fa 31 c7 a8 4d c3 bd 7e
    1b 7a 6c 71 78 af 36 87 90 18 e3 f2 52 10 7f 24 3d 24 3d c7 33 9d 56 84
    c8 b0 37 8b f3 02 44 da 8c 87 c8 43 f5 e5 6e b4 c5 e8 28 0a 2b 48 05 2c
    f9 3b 16 49 9a 66 db 7c ca 71 e4 59 94 26 f7 d4 61 e6 6f 99 88 2b d8 9f
    c5 08 00 be cc a6 2d 6c 74 11 6d bd 29 72 fd a1 fa 80 f8 5d f8 81 ed be
    5a 37 66 89 36 b3 35 58 3b 59 91 86 dc 5c 69 18 a3 96 fa 48 a1 81 d6 b6
    fa 4f 9d 62 d5 13 af bb 99 2f 2b 99 2f 67 f8 af e6 7f 76 91 3f a3 88 cb
    56 30 c8 ca 01 e0 c6 5d 11 c6 6a 1e 2a c4 c8 59 77 b7 c7 a6 99 9b bf 10
    dc 35 ae 69 f5 51 56 14 63 6c 0b 9b 68 c1 9e d2 e3 1c 0b 3b 66 76 30 38
    eb ba 42 f3 b3 8e dc 03 99 f3 a9 f2 3f aa 63 97 8c 31 7f c9 fa 66 a7 3f
    60 f0 50 4d e9 3b 5b 84 5e 27 55 92 c1 23 35 ee 34 0b bc 4f dd d5 02 78
    40 16 e4 b3 be 7e f0 4d da 49 f4 b4 40 a3 0c b5 d2 af 93 98 28 fd 4a e3
    79 4e 44 f9 4d f5 a6 31 ed e4 2c 17 19 bf da bf 02 53 fe 51 75 be 89 8e
    75 0e dc 53 37 0d 2b"""
)
# {client} send handshake record: complete record (58 octets), the client Finished.
RFC8448_CLIENT_FINISHED_RECORD = unhex(
    """17 03 03 00 35 75 ec 4d c2 38 cc e6 0b 29 80 44 a7 1e 21 9c 56 cc 77 b0
    51 7f e9 b9 3c 7a 4b fc 44 d8 7f 38 f8 03 38 ac 98 fc 46 de b3 84 bd 1c
    ae ac ab 68 67 d7 26 c4 05 46"""
)
# {client} / {server} send application_data record: the 50-byte payload 00..31.
RFC8448_CLIENT_APP_RECORD = unhex(
    """17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55 cb ef ac ea
    42 f9 14 aa 66 bc ab 3f 2b 98 19 a8 a5 b4 6b 39 5b d5 4a 9a 20 44 1e 2b
    62 97 4e 1f 5a 62 92 a2 97 70 14 bd 1e 3d ea e6 3a ee bb 21 69 49 15 e4"""
)
RFC8448_SERVER_APP_RECORD = unhex(
    """17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4 a4 69 32 fc
    32 25 d0 5f 82 aa 1b 36 e3 0e fa f9 7d 90 e6 df fc 60 2d cb 50 1a 59 a8
    fc c4 9c 4b f2 e5 f0 a2 1c 00 47 c2 ab f3 32 54 0d d0 32 e1 67 c2 95 5d"""
)
RFC8448_PAYLOAD = bytes(range(0x32))


def test_rfc8448_server_handshake_key_and_iv() -> None:
    key, iv = traffic_key_iv(AES128, RFC8448_SERVER_HS_SECRET)
    assert key == unhex("3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc")
    assert iv == unhex("5d 31 3e b2 67 12 76 ee 13 00 0b 30")


def test_rfc8448_client_reads_server_hello_then_encrypted_flight() -> None:
    client = RecordLayer()
    client.allow_ccs = True
    # ServerHello and the protected flight arrive in one TCP segment.
    client.receive_data(RFC8448_SERVER_HELLO_RECORD + RFC8448_SERVER_FLIGHT_RECORD)
    assert client.next_record() == (ContentType.handshake, RFC8448_SERVER_HELLO_RECORD[5:])
    client.set_read_key(AES128, RFC8448_SERVER_HS_SECRET)
    content_type, flight = client.next_record() or (None, b"")
    assert content_type == ContentType.handshake
    assert len(flight) == 657
    assert flight.startswith(RFC8448_ENCRYPTED_EXTENSIONS)
    assert flight.endswith(RFC8448_SERVER_FINISHED)
    assert client.next_record() is None
    # The server side seals the same flight into the RFC's exact bytes.
    server = RecordLayer()
    server.set_write_key(AES128, RFC8448_SERVER_HS_SECRET)
    assert server.encode(ContentType.handshake, flight) == RFC8448_SERVER_FLIGHT_RECORD


def test_rfc8448_client_finished_record() -> None:
    server = RecordLayer()
    server.set_read_key(AES128, RFC8448_CLIENT_HS_SECRET)
    ((content_type, finished),) = feed(server, RFC8448_CLIENT_FINISHED_RECORD)
    assert content_type == ContentType.handshake
    assert finished[:4] == b"\x14\x00\x00\x20" and len(finished) == 36
    client = RecordLayer()
    client.set_write_key(AES128, RFC8448_CLIENT_HS_SECRET)
    assert client.encode(ContentType.handshake, finished) == RFC8448_CLIENT_FINISHED_RECORD


def test_rfc8448_application_data_records() -> None:
    client = RecordLayer()
    client.set_write_key(AES128, RFC8448_CLIENT_AP_SECRET)
    assert client.encode(ContentType.application_data, RFC8448_PAYLOAD) == (
        RFC8448_CLIENT_APP_RECORD
    )
    # The server's first application-traffic record is its NewSessionTicket,
    # so its payload is sealed at sequence number 1.
    server = RecordLayer()
    server.set_write_key(AES128, RFC8448_SERVER_AP_SECRET)
    server.encode(ContentType.handshake, b"\x04\x00\x00\x00")
    assert server.encode(ContentType.application_data, RFC8448_PAYLOAD) == (
        RFC8448_SERVER_APP_RECORD
    )
    reader = RecordLayer()
    reader.set_read_key(AES128, RFC8448_CLIENT_AP_SECRET)
    assert feed(reader, RFC8448_CLIENT_APP_RECORD) == [
        (ContentType.application_data, RFC8448_PAYLOAD)
    ]
