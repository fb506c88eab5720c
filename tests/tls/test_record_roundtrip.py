"""The TLS 1.3 record layer over TCP (RFC 8446 §5), working as it should: round trips
in every suite, fragmentation, padding (§5.4), what it writes, buffering and EOF.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mstls.codes import AlertDescription
from mstls.exceptions import TLSError
from mstls.tls.cipher_suites import IV_LENGTH, CipherSuite, make_aead
from mstls.tls.key_schedule import traffic_key_iv
from mstls.tls.record import (
    MAX_INPUT_BUFFER,
    MAX_PLAINTEXT,
    AlertLevel,
    ContentType,
    RecordLayer,
    decode_alert,
    pad_to_multiple,
)
from tests.tls.record_helpers import (
    AES128,
    SETTINGS,
    SUITES,
    drain,
    expect_alert,
    feed,
    keyed_pair,
    secret_for,
    split_records,
)

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
