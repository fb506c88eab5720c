"""Tests for mstls.wire.transport_params (RFC 9000 §7.4, §18; QMux §5; ack-frequency §3)."""

from __future__ import annotations

import ipaddress
import random

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mstls.codes import TransportErrorCode
from mstls.exceptions import TransportParameterError
from mstls.wire.buffer import VARINT_MAX, decode_varint, encode_varint
from mstls.wire.transport_params import (
    DEFAULT_ACK_DELAY_EXPONENT,
    DEFAULT_ACTIVE_CONNECTION_ID_LIMIT,
    DEFAULT_MAX_ACK_DELAY,
    DEFAULT_MAX_RECORD_SIZE,
    DEFAULT_MAX_UDP_PAYLOAD_SIZE,
    QMUX_FORBIDDEN_PARAMETERS,
    QMUX_PERMITTED_PARAMETERS,
    SERVER_ONLY_PARAMETERS,
    PreferredAddress,
    TransportParameterId,
    TransportParameters,
    decode_transport_parameters,
    encode_transport_parameters,
    grease_transport_parameter,
    is_reserved_parameter_id,
    validate_peer_parameters,
    validate_qmux_parameters,
)

SETTINGS = settings(max_examples=300, deadline=None)
TPE = TransportErrorCode.TRANSPORT_PARAMETER_ERROR
KNOWN_IDS = {int(i) for i in TransportParameterId}

varints = st.integers(0, VARINT_MAX)
cids = st.binary(max_size=20)
tokens = st.binary(min_size=16, max_size=16)

preferred_addresses = st.builds(
    PreferredAddress,
    connection_id=st.binary(min_size=1, max_size=20),
    stateless_reset_token=tokens,
    ipv4_address=st.ip_addresses(v=4),
    ipv4_port=st.integers(0, 0xFFFF),
    ipv6_address=st.ip_addresses(v=6),
    ipv6_port=st.integers(0, 0xFFFF),
)
unknown_lists = st.lists(
    st.tuples(varints.filter(lambda i: i not in KNOWN_IDS), st.binary(max_size=32)),
    max_size=4,
    unique_by=lambda item: item[0],
)


@st.composite
def transport_parameters(draw: st.DrawFn) -> TransportParameters:
    max_ack_delay = draw(st.integers(0, 2**14 - 1))
    return TransportParameters(
        original_destination_connection_id=draw(st.none() | cids),
        max_idle_timeout=draw(varints),
        stateless_reset_token=draw(st.none() | tokens),
        max_udp_payload_size=draw(st.integers(1200, VARINT_MAX)),
        initial_max_data=draw(varints),
        initial_max_stream_data_bidi_local=draw(varints),
        initial_max_stream_data_bidi_remote=draw(varints),
        initial_max_stream_data_uni=draw(varints),
        initial_max_streams_bidi=draw(st.integers(0, 2**60)),
        initial_max_streams_uni=draw(st.integers(0, 2**60)),
        ack_delay_exponent=draw(st.integers(0, 20)),
        max_ack_delay=max_ack_delay,
        disable_active_migration=draw(st.booleans()),
        preferred_address=draw(st.none() | preferred_addresses),
        active_connection_id_limit=draw(st.integers(2, VARINT_MAX)),
        initial_source_connection_id=draw(st.none() | cids),
        retry_source_connection_id=draw(st.none() | cids),
        min_ack_delay=draw(st.none() | st.integers(0, max_ack_delay * 1000)),
        max_record_size=draw(st.integers(DEFAULT_MAX_RECORD_SIZE, VARINT_MAX)),
        max_datagram_frame_size=draw(varints),
        unknown=draw(unknown_lists),
    )


def param(param_id: int, value: bytes) -> bytes:
    return encode_varint(param_id) + encode_varint(len(value)) + value


def int_param(param_id: int, value: int) -> bytes:
    return param(param_id, encode_varint(value))


# -- round trips and encodings ------------------------------------------------------------
@given(transport_parameters())
@SETTINGS
def test_roundtrip(params: TransportParameters) -> None:
    decoded = decode_transport_parameters(encode_transport_parameters(params))
    assert decoded == params
    assert set(decoded.unknown) == set(params.unknown)


def test_defaults_are_rfc9000_values_and_not_encoded() -> None:
    params = TransportParameters()
    assert params.max_udp_payload_size == DEFAULT_MAX_UDP_PAYLOAD_SIZE == 65527
    assert params.ack_delay_exponent == DEFAULT_ACK_DELAY_EXPONENT == 3
    assert params.max_ack_delay == DEFAULT_MAX_ACK_DELAY == 25
    assert params.active_connection_id_limit == DEFAULT_ACTIVE_CONNECTION_ID_LIMIT == 2
    assert params.max_record_size == DEFAULT_MAX_RECORD_SIZE == 16382
    assert encode_transport_parameters(params) == b""
    assert decode_transport_parameters(b"") == params


def test_known_answer_encoding() -> None:
    params = TransportParameters(
        max_idle_timeout=30000,
        initial_max_data=1 << 20,
        disable_active_migration=True,
        initial_source_connection_id=b"\x01\x02",
        unknown=[(27, b"\xaa")],
    )
    expected = bytes.fromhex(
        "01 04 80007530"  # max_idle_timeout = 30000
        "04 04 80100000"  # initial_max_data = 2**20
        "0c 00"  # disable_active_migration
        "0f 02 0102"  # initial_source_connection_id
        "1b 01 aa"  # grease id 27
    )
    assert encode_transport_parameters(params) == expected
    decoded = decode_transport_parameters(expected)
    assert decoded == params
    assert decoded.received_ids == {0x01, 0x04, 0x0C, 0x0F, 27}


def test_preferred_address_layout() -> None:
    pa = PreferredAddress(
        connection_id=b"\x09" * 4,
        stateless_reset_token=b"\x0f" * 16,
        ipv4_address=ipaddress.IPv4Address("192.0.2.1"),
        ipv4_port=443,
        ipv6_address=ipaddress.IPv6Address("2001:db8::1"),
        ipv6_port=8443,
    )
    value = (
        bytes([192, 0, 2, 1])
        + (443).to_bytes(2, "big")
        + ipaddress.IPv6Address("2001:db8::1").packed
        + (8443).to_bytes(2, "big")
        + b"\x04"
        + b"\x09" * 4
        + b"\x0f" * 16
    )
    encoded = param(0x0D, value)
    assert encode_transport_parameters(TransportParameters(preferred_address=pa)) == encoded
    assert decode_transport_parameters(encoded).preferred_address == pa


def test_qmux_and_ack_frequency_ids() -> None:
    assert TransportParameterId.MAX_RECORD_SIZE == 0x0571C59429CD0845
    assert TransportParameterId.MIN_ACK_DELAY == 0xFF04DE1B
    encoded = int_param(0x0571C59429CD0845, 65536) + int_param(0xFF04DE1B, 1000)
    decoded = decode_transport_parameters(encoded)
    assert decoded.max_record_size == 65536
    assert decoded.min_ack_delay == 1000


def test_explicit_default_is_recorded_as_received() -> None:
    decoded = decode_transport_parameters(int_param(0x03, DEFAULT_MAX_UDP_PAYLOAD_SIZE))
    assert decoded == TransportParameters()
    assert decoded.received_ids == {0x03}


def test_unknown_order_and_empty_values_are_kept() -> None:
    encoded = param(0x4000 + 27 * 31, b"") + param(1000, b"xyz") + param(31 * 5 + 27, b"\x00")
    decoded = decode_transport_parameters(encoded)
    assert decoded.unknown == [(0x4000 + 27 * 31, b""), (1000, b"xyz"), (31 * 5 + 27, b"\x00")]
    assert encode_transport_parameters(decoded) == encoded


# -- invalid input ----------------------------------------------------------------------
INVALID = [
    ("max_udp_payload_size<1200", int_param(0x03, 1199)),
    ("ack_delay_exponent>20", int_param(0x0A, 21)),
    ("max_ack_delay>=2**14", int_param(0x0B, 1 << 14)),
    ("active_connection_id_limit<2", int_param(0x0E, 1)),
    ("active_connection_id_limit=0", int_param(0x0E, 0)),
    ("initial_max_streams_bidi>2**60", int_param(0x08, (1 << 60) + 1)),
    ("initial_max_streams_uni>2**60", int_param(0x09, (1 << 60) + 1)),
    ("max_record_size<16382", int_param(0x0571C59429CD0845, 16381)),
    ("min_ack_delay>max_ack_delay", int_param(0xFF04DE1B, 25001)),
    ("min_ack_delay>explicit max_ack_delay", int_param(0x0B, 1) + int_param(0xFF04DE1B, 1001)),
    ("reset token 15 bytes", param(0x02, b"\x00" * 15)),
    ("reset token 17 bytes", param(0x02, b"\x00" * 17)),
    ("disable_active_migration with value", param(0x0C, b"\x00")),
    ("cid 21 bytes", param(0x0F, b"\x00" * 21)),
    ("odcid 21 bytes", param(0x00, b"\x00" * 21)),
    ("integer with trailing byte", param(0x01, b"\x05\x00")),
    ("integer truncated", param(0x01, b"\x40")),
    ("integer empty", param(0x04, b"")),
    ("duplicate", int_param(0x01, 5) + int_param(0x01, 5)),
    ("duplicate unknown", param(1000, b"") + param(1000, b"")),
    ("truncated value", encode_varint(0x01) + encode_varint(4) + b"\x80"),
    ("truncated length", encode_varint(0x01)),
    ("truncated id", b"\x40"),
    ("huge length", encode_varint(0x01) + encode_varint(VARINT_MAX)),
    ("preferred_address empty cid", param(0x0D, bytes(24) + b"\x00" + bytes(16))),
    ("preferred_address 21-byte cid", param(0x0D, bytes(24) + b"\x15" + bytes(21 + 16))),
    ("preferred_address trailing", param(0x0D, bytes(24) + b"\x01\x01" + bytes(17))),
    ("preferred_address truncated", param(0x0D, bytes(24) + b"\x01\x01" + bytes(15))),
]


@pytest.mark.parametrize("encoded", [c[1] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_parameters(encoded: bytes) -> None:
    with pytest.raises(TransportParameterError) as info:
        decode_transport_parameters(encoded)
    assert info.value.error_code == TPE


def test_limits_themselves_are_valid() -> None:
    encoded = (
        int_param(0x03, 1200)
        + int_param(0x0A, 20)
        + int_param(0x0B, (1 << 14) - 1)
        + int_param(0x0E, 2)
        + int_param(0x08, 1 << 60)
        + int_param(0x0571C59429CD0845, 16382)
        + int_param(0xFF04DE1B, ((1 << 14) - 1) * 1000)
        + param(0x0F, bytes(20))
    )
    decoded = decode_transport_parameters(encoded)
    assert decoded.max_udp_payload_size == 1200
    assert decoded.initial_max_streams_bidi == 1 << 60


def _boundaries(encoded: bytes) -> set[int]:
    """Offsets where one (id, length, value) triple ends and the next starts."""
    pos, ends = 0, {0}
    while pos < len(encoded):
        _, pos = decode_varint(encoded, pos)
        length, pos = decode_varint(encoded, pos)
        pos += length
        ends.add(pos)
    return ends


@given(transport_parameters())
@settings(max_examples=100, deadline=None)
def test_every_cut_inside_a_parameter_fails(params: TransportParameters) -> None:
    encoded = encode_transport_parameters(params)
    boundaries = _boundaries(encoded)
    for cut in range(len(encoded)):
        if cut in boundaries:
            continue
        with pytest.raises(TransportParameterError) as info:
            decode_transport_parameters(encoded[:cut])
        assert info.value.error_code == TPE


@pytest.mark.parametrize(
    "params",
    [
        TransportParameters(max_udp_payload_size=1000),
        TransportParameters(ack_delay_exponent=21),
        TransportParameters(max_record_size=100),
        TransportParameters(min_ack_delay=26000),
        TransportParameters(unknown=[(0x01, b"\x00")]),
    ],
    ids=repr,
)
def test_encode_rejects_invalid(params: TransportParameters) -> None:
    with pytest.raises(ValueError):
        encode_transport_parameters(params)


# -- grease ----------------------------------------------------------------------------------
def test_grease_parameters() -> None:
    rng = random.Random(1)
    seen = set()
    for _ in range(50):
        param_id, value = grease_transport_parameter(rng)
        assert is_reserved_parameter_id(param_id)
        assert (param_id - 27) % 31 == 0
        assert param_id <= VARINT_MAX
        assert len(value) <= 16
        decoded = decode_transport_parameters(param(param_id, value))
        assert decoded.unknown == [(param_id, value)]
        seen.add(param_id)
    assert len(seen) > 40
    assert grease_transport_parameter(random.Random(7)) == grease_transport_parameter(
        random.Random(7)
    )
    assert is_reserved_parameter_id(27)
    assert is_reserved_parameter_id(58)
    assert not is_reserved_parameter_id(28)
    assert grease_transport_parameter()[0] % 31 == 27


# -- role checks (RFC 9000 §18.2, §7.3) -----------------------------------------------------
A_PREFERRED_ADDRESS = PreferredAddress(connection_id=b"\x01", stateless_reset_token=bytes(16))
SERVER_ONLY_VALUES: dict[str, object] = {
    "original_destination_connection_id": b"\x01",
    "stateless_reset_token": bytes(16),
    "preferred_address": A_PREFERRED_ADDRESS,
    "retry_source_connection_id": b"\x02",
}


@pytest.mark.parametrize("name", sorted(SERVER_ONLY_VALUES))
def test_client_must_not_send_server_only_parameters(name: str) -> None:
    params = TransportParameters(
        initial_source_connection_id=b"", **{name: SERVER_ONLY_VALUES[name]}
    )
    decoded = decode_transport_parameters(encode_transport_parameters(params))
    with pytest.raises(TransportParameterError, match=name) as info:
        validate_peer_parameters(decoded, peer_is_server=False)
    assert info.value.error_code == TPE
    server = attrs.evolve(decoded, original_destination_connection_id=b"\x09")
    validate_peer_parameters(attrs.evolve(server, initial_source_connection_id=b"\x03"), True)


def test_server_only_set_matches_rfc() -> None:
    assert {0x00, 0x02, 0x0D, 0x10} == SERVER_ONLY_PARAMETERS


def test_required_connection_ids() -> None:
    with pytest.raises(TransportParameterError, match="initial_source_connection_id"):
        validate_peer_parameters(TransportParameters(), peer_is_server=False)
    with pytest.raises(TransportParameterError, match="original_destination_connection_id"):
        validate_peer_parameters(
            TransportParameters(initial_source_connection_id=b"\x01"), peer_is_server=True
        )
    validate_peer_parameters(
        TransportParameters(initial_source_connection_id=b""), peer_is_server=False
    )
    validate_peer_parameters(
        TransportParameters(
            initial_source_connection_id=b"\x01", original_destination_connection_id=b"\x02"
        ),
        peer_is_server=True,
    )


def test_preferred_address_needs_a_non_empty_server_cid() -> None:
    params = TransportParameters(
        initial_source_connection_id=b"",
        original_destination_connection_id=b"\x02",
        preferred_address=A_PREFERRED_ADDRESS,
    )
    with pytest.raises(TransportParameterError, match="zero-length"):
        validate_peer_parameters(params, peer_is_server=True)


# -- QMux (draft-ietf-quic-qmux-02 §5.1) ---------------------------------------------------
def test_qmux_sets() -> None:
    assert {0x01, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09} == QMUX_PERMITTED_PARAMETERS
    assert {0x00, 0x02, 0x03, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10} == (
        QMUX_FORBIDDEN_PARAMETERS
    )


@pytest.mark.parametrize("param_id", sorted(QMUX_FORBIDDEN_PARAMETERS))
def test_qmux_rejects_forbidden_parameters_even_with_default_values(param_id: int) -> None:
    values = {
        0x00: b"",
        0x02: bytes(16),
        0x03: encode_varint(DEFAULT_MAX_UDP_PAYLOAD_SIZE),
        0x0A: encode_varint(DEFAULT_ACK_DELAY_EXPONENT),
        0x0B: encode_varint(DEFAULT_MAX_ACK_DELAY),
        0x0C: b"",
        0x0D: bytes(24) + b"\x01\x01" + bytes(16),
        0x0E: encode_varint(DEFAULT_ACTIVE_CONNECTION_ID_LIMIT),
        0x0F: b"",
        0x10: b"\x01",
    }
    decoded = decode_transport_parameters(param(param_id, values[param_id]))
    with pytest.raises(TransportParameterError, match="prohibited in QMux") as info:
        validate_qmux_parameters(decoded)
    assert info.value.error_code == TPE


def test_qmux_rejects_locally_built_forbidden_parameters() -> None:
    with pytest.raises(TransportParameterError, match="max_ack_delay"):
        validate_qmux_parameters(TransportParameters(max_ack_delay=10))


def test_qmux_accepts_permitted_grease_and_extension_parameters() -> None:
    params = TransportParameters(
        max_idle_timeout=30000,
        initial_max_data=1 << 20,
        initial_max_stream_data_bidi_local=1 << 18,
        initial_max_stream_data_bidi_remote=1 << 18,
        initial_max_stream_data_uni=1 << 18,
        initial_max_streams_bidi=100,
        initial_max_streams_uni=3,
        max_record_size=1 << 16,
        min_ack_delay=1000,  # defined outside RFC 9000: ignored, not rejected
        unknown=[grease_transport_parameter(random.Random(3))],
    )
    validate_qmux_parameters(decode_transport_parameters(encode_transport_parameters(params)))
    validate_qmux_parameters(params)


def test_max_datagram_frame_size_is_parameter_0x20() -> None:
    """RFC 9221 §3: id 0x20, an integer; absent means 0 (no datagrams)."""
    raw = int_param(0x20, 65535)
    assert decode_transport_parameters(raw).max_datagram_frame_size == 65535
    assert decode_transport_parameters(b"").max_datagram_frame_size == 0
    assert encode_transport_parameters(TransportParameters(max_datagram_frame_size=1200)) == (
        int_param(0x20, 1200)
    )
