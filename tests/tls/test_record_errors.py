"""The TLS 1.3 record layer (RFC 8446 §5) against bad input: protected and plaintext
record errors and their alerts, empty records, ChangeCipherSpec (Appendix D.4),
and fuzzing that may raise only the project's errors.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mstls.codes import AlertDescription
from mstls.exceptions import Error, PeerAlert
from mstls.tls.cipher_suites import CipherSuite
from mstls.tls.record import (
    MAX_CIPHERTEXT,
    MAX_EMPTY_RECORDS,
    MAX_PLAINTEXT,
    RECORD_HEADER,
    AlertLevel,
    ContentType,
    RecordLayer,
    decode_alert,
)
from tests.tls.record_helpers import (
    AES128,
    SETTINGS,
    SUITES,
    drain,
    expect_alert,
    feed,
    keyed_pair,
    seal,
    secret_for,
    split_records,
)

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
