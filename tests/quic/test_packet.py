"""Packet header codecs and packet numbers (RFC 9000 §17, Appendix A.2/A.3)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mstls.exceptions import DecodeError
from mstls.wire.packet import (
    FIXED_BIT,
    MAX_CID_LENGTH,
    QUIC_VERSION_1,
    QUIC_VERSION_NEGOTIATION,
    PacketHeader,
    PacketType,
    decode_packet_number,
    encode_long_header,
    encode_packet_number,
    encode_retry,
    encode_short_header,
    encode_version_negotiation,
    is_long_header,
    parse_header,
    peek_destination_cid,
)

SETTINGS = settings(max_examples=300, deadline=None)

cids = st.binary(max_size=MAX_CID_LENGTH)
pn_lengths = st.integers(1, 4)
packet_numbers = st.integers(0, (1 << 62) - 1)
long_types = st.sampled_from([PacketType.INITIAL, PacketType.ZERO_RTT, PacketType.HANDSHAKE])


# -- packet numbers (RFC 9000 §17.1, Appendix A) ---------------------------------------


def test_rfc9000_a2_encoding_examples() -> None:
    """§17.1: 0xac5c02 after 0xabe8b3 needs 16 bits; 0xace8fe needs 24 bits."""
    assert encode_packet_number(0xAC5C02, 0xABE8B3) == 2
    assert encode_packet_number(0xACE8FE, 0xABE8B3) == 3


def test_rfc9000_a3_decoding_example() -> None:
    assert decode_packet_number(0xA82F30EA, 0x9B32, 16) == 0xA82F9B32


def test_encode_packet_number_edges() -> None:
    assert encode_packet_number(0, None) == 1
    assert encode_packet_number(127, None) == 1  # 128 unacked: 2**7, 1 byte suffices
    assert encode_packet_number(128, None) == 2
    assert encode_packet_number(10, 9) == 1
    with pytest.raises(ValueError):
        encode_packet_number(5, 5)
    with pytest.raises(ValueError):
        encode_packet_number(1 << 40, 0)


def test_decode_packet_number_wraps_both_ways() -> None:
    assert decode_packet_number(-1, 0, 8) == 0
    assert decode_packet_number(0xFF, 0x00, 8) == 0x100
    assert decode_packet_number(0x100, 0xFF, 8) == 0xFF
    assert decode_packet_number((1 << 62) - 2, 0xFF, 8) == (1 << 62) - 1


@SETTINGS
@given(
    largest_acked=st.one_of(st.none(), st.integers(0, 1 << 40)),
    gap=st.integers(1, (1 << 31) - 1),
    seen=st.floats(0, 1),
)
def test_packet_number_round_trip(largest_acked: int | None, gap: int, seen: float) -> None:
    """Whatever the receiver has seen between largest_acked and full_pn, decoding works."""
    base = -1 if largest_acked is None else largest_acked
    full_pn = base + gap
    length = encode_packet_number(full_pn, largest_acked)
    truncated = full_pn & ((1 << (8 * length)) - 1)
    receiver_largest = base + int((full_pn - 1 - base) * seen)
    assert decode_packet_number(receiver_largest, truncated, 8 * length) == full_pn


# -- long headers ---------------------------------------------------------------------


@SETTINGS
@given(
    packet_type=long_types,
    dcid=cids,
    scid=cids,
    token=st.binary(max_size=100),
    pn=packet_numbers,
    pn_length=pn_lengths,
    payload_length=st.integers(0, 3000),
    length_size=st.sampled_from([0, 2, 4, 8]),
    trailing=st.binary(max_size=30),
)
def test_long_header_round_trip(
    *,
    packet_type: PacketType,
    dcid: bytes,
    scid: bytes,
    token: bytes,
    pn: int,
    pn_length: int,
    payload_length: int,
    length_size: int,
    trailing: bytes,
) -> None:
    if packet_type is not PacketType.INITIAL:
        token = b""
    length = pn_length + payload_length
    header = encode_long_header(
        packet_type,
        dcid,
        scid,
        pn,
        pn_length,
        length=length,
        token=token,
        length_size=length_size,
    )
    datagram = header + bytes(payload_length) + trailing
    parsed = parse_header(datagram, 0, 8)
    assert parsed.is_long
    assert is_long_header(parsed.first_byte)
    assert parsed.fixed_bit
    assert parsed.packet_type is packet_type
    assert parsed.version == QUIC_VERSION_1
    assert (parsed.dcid, parsed.scid, parsed.token) == (dcid, scid, token)
    assert parsed.length == length
    assert parsed.pn_offset == len(header) - pn_length
    assert parsed.packet_end == len(header) + payload_length
    assert parsed.first_byte & 0x03 == pn_length - 1
    truncated = int.from_bytes(header[parsed.pn_offset :], "big")
    assert truncated == pn & ((1 << (8 * pn_length)) - 1)
    assert peek_destination_cid(datagram, 8) == dcid


def test_long_header_length_size_forced() -> None:
    header = encode_long_header(PacketType.HANDSHAKE, b"", b"", 0, 1, length=5, length_size=2)
    assert header[-3:] == b"\x40\x05\x00"
    with pytest.raises(ValueError):
        encode_long_header(PacketType.HANDSHAKE, b"", b"", 0, 1, length=100, length_size=1)
    with pytest.raises(ValueError):
        encode_long_header(PacketType.HANDSHAKE, b"", b"", 0, 1, length=5, length_size=3)


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"packet_type": PacketType.RETRY}, "no packet number"),
        ({"packet_type": PacketType.ONE_RTT}, "no packet number"),
        ({"packet_type": PacketType.HANDSHAKE, "token": b"x"}, "token"),
        ({"dcid": bytes(21)}, "exceeds"),
        ({"scid": bytes(21)}, "exceeds"),
        ({"pn_length": 0}, "not 1 to 4"),
        ({"pn_length": 5}, "not 1 to 4"),
        ({"length": 1, "pn_length": 2}, "cover"),
    ],
)
def test_long_header_encoder_rejects(kwargs: dict[str, object], what: str) -> None:
    args: dict[str, object] = {
        "packet_type": PacketType.INITIAL,
        "dcid": b"",
        "scid": b"",
        "packet_number": 0,
        "pn_length": 1,
        "length": 20,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=what):
        encode_long_header(**args)  # type: ignore[arg-type]


def test_v1_connection_id_over_20_bytes_is_rejected() -> None:
    header = bytearray(encode_long_header(PacketType.HANDSHAKE, bytes(20), b"", 0, 1, length=1))
    header[5] = 21
    header[6:6] = b"\x00"
    with pytest.raises(DecodeError, match="exceeds 20"):
        parse_header(bytes(header) + bytes(30), 0, 0)


def test_initial_token_and_length_truncations() -> None:
    good = encode_long_header(PacketType.INITIAL, b"abc", b"de", 7, 2, length=22, token=b"tok")
    datagram = good + bytes(20)
    assert parse_header(datagram, 0, 0).packet_end == len(datagram)
    for cut in range(len(datagram)):
        with pytest.raises(DecodeError):
            parse_header(datagram[:cut], 0, 0)


def test_fixed_bit_zero_is_exposed_not_rejected() -> None:
    packet = bytearray(encode_long_header(PacketType.HANDSHAKE, b"a", b"b", 0, 1, length=1))
    packet[0] &= ~FIXED_BIT
    parsed = parse_header(bytes(packet), 0, 0)
    assert parsed.packet_type is PacketType.HANDSHAKE
    assert not parsed.fixed_bit


def test_unsupported_version_parses_invariants_only() -> None:
    dcid = bytes(range(40))  # longer than v1 allows: fine for other versions (RFC 8999)
    datagram = b"\xc0" + (0x1A2A3A4A).to_bytes(4, "big") + bytes((40,)) + dcid + b"\x01s" + b"xyz"
    parsed = parse_header(datagram, 0, 0)
    assert parsed.packet_type is PacketType.UNSUPPORTED_VERSION
    assert parsed.version == 0x1A2A3A4A
    assert (parsed.dcid, parsed.scid) == (dcid, b"s")
    assert parsed.packet_end == len(datagram)
    assert peek_destination_cid(datagram, 0) == dcid


# -- short headers --------------------------------------------------------------------


@SETTINGS
@given(
    dcid=cids,
    pn=packet_numbers,
    pn_length=pn_lengths,
    key_phase=st.integers(0, 1),
    spin=st.booleans(),
    payload=st.binary(max_size=50),
)
def test_short_header_round_trip(
    *, dcid: bytes, pn: int, pn_length: int, key_phase: int, spin: bool, payload: bytes
) -> None:
    header = encode_short_header(dcid, pn, pn_length, key_phase=key_phase, spin_bit=spin)
    datagram = header + payload
    parsed = parse_header(datagram, 0, len(dcid))
    assert not parsed.is_long
    assert parsed.packet_type is PacketType.ONE_RTT
    assert parsed.version is None
    assert parsed.dcid == dcid
    assert parsed.fixed_bit
    assert parsed.pn_offset == 1 + len(dcid)
    assert parsed.packet_end == len(datagram)
    assert parsed.length == len(datagram) - parsed.pn_offset
    assert bool(parsed.first_byte & 0x04) == bool(key_phase)
    assert bool(parsed.first_byte & 0x20) == spin
    assert parsed.first_byte & 0x18 == 0
    assert peek_destination_cid(datagram, len(dcid)) == dcid


def test_short_header_truncated() -> None:
    with pytest.raises(DecodeError):
        parse_header(b"\x40abc", 0, 8)
    with pytest.raises(DecodeError):
        peek_destination_cid(b"\x40abc", 8)
    with pytest.raises(DecodeError):
        peek_destination_cid(b"", 8)
    with pytest.raises(DecodeError):
        parse_header(b"", 0, 0)


# -- Version Negotiation and Retry ------------------------------------------------------


@SETTINGS
@given(
    dcid=st.binary(max_size=255),
    scid=st.binary(max_size=255),
    versions=st.lists(st.integers(0, 0xFFFFFFFF), max_size=10),
    unused=st.integers(0, 0x7F),
)
def test_version_negotiation_round_trip(
    dcid: bytes, scid: bytes, versions: list[int], unused: int
) -> None:
    packet = encode_version_negotiation(dcid, scid, versions, unused_bits=unused)
    parsed = parse_header(packet, 0, 0)
    assert parsed.packet_type is PacketType.VERSION_NEGOTIATION
    assert parsed.version == QUIC_VERSION_NEGOTIATION
    assert (parsed.dcid, parsed.scid) == (dcid, scid)
    assert parsed.supported_versions == tuple(versions)
    assert parsed.first_byte & 0x7F == unused
    assert parsed.packet_end == len(packet)


def test_version_negotiation_default_sets_fixed_bit_and_rejects_ragged_list() -> None:
    packet = encode_version_negotiation(b"a", b"b", [QUIC_VERSION_1])
    assert packet[0] == 0xC0
    with pytest.raises(DecodeError):
        parse_header(packet + b"\x00", 0, 0)


@SETTINGS
@given(dcid=cids, scid=cids, token=st.binary(max_size=200), tag=st.binary(min_size=16, max_size=16))
def test_retry_round_trip(dcid: bytes, scid: bytes, token: bytes, tag: bytes) -> None:
    packet = encode_retry(dcid, scid, token) + tag
    parsed = parse_header(packet, 0, 0)
    assert parsed.packet_type is PacketType.RETRY
    assert (parsed.dcid, parsed.scid, parsed.token, parsed.integrity_tag) == (
        dcid,
        scid,
        token,
        tag,
    )
    assert parsed.packet_end == len(packet)


def test_retry_too_short_for_tag() -> None:
    with pytest.raises(DecodeError, match="integrity tag"):
        parse_header(encode_retry(b"a", b"b", b"") + bytes(15), 0, 0)


# -- coalescing and fuzzing -----------------------------------------------------------


def _long_packet(packet_type: PacketType, payload: bytes, pn: int) -> bytes:
    header = encode_long_header(
        packet_type,
        b"\x01\x02\x03\x04",
        b"\x05",
        pn,
        2,
        length=2 + len(payload),
        token=b"t" if packet_type is PacketType.INITIAL else b"",
    )
    return header + payload


def test_coalesced_packets_parse_in_sequence() -> None:
    packets = [
        _long_packet(PacketType.INITIAL, bytes(30), 0),
        _long_packet(PacketType.ZERO_RTT, bytes(5), 1),
        _long_packet(PacketType.HANDSHAKE, bytes(100), 2),
        encode_short_header(b"\x01\x02\x03\x04", 3, 1) + bytes(40),
    ]
    datagram = memoryview(b"".join(packets))
    pos = 0
    seen = []
    while pos < len(datagram):
        header = parse_header(datagram, pos, 4)
        seen.append(header.packet_type)
        assert header.dcid == b"\x01\x02\x03\x04"
        pos = header.packet_end
    assert seen == [
        PacketType.INITIAL,
        PacketType.ZERO_RTT,
        PacketType.HANDSHAKE,
        PacketType.ONE_RTT,
    ]
    assert pos == len(datagram)


def test_length_running_past_datagram() -> None:
    packet = _long_packet(PacketType.HANDSHAKE, bytes(10), 0)
    with pytest.raises(DecodeError, match="runs past"):
        parse_header(packet[:-1], 0, 0)


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=80), short_len=st.integers(0, 20))
def test_random_bytes_raise_only_decode_error(data: bytes, short_len: int) -> None:
    try:
        header = parse_header(data, 0, short_len)
    except DecodeError:
        return
    assert isinstance(header, PacketHeader)
    assert header.pn_offset <= header.packet_end <= len(data)


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=80).map(lambda b: bytes((b[0] | 0x80,)) + b[1:]),
    version=st.sampled_from([QUIC_VERSION_1, QUIC_VERSION_NEGOTIATION, 0x0A0A0A0A]),
)
def test_random_long_headers_raise_only_decode_error(data: bytes, version: int) -> None:
    datagram = data[:1] + version.to_bytes(4, "big") + data[1:]
    try:
        header = parse_header(datagram, 0, 0)
    except DecodeError:
        return
    assert header.is_long
    assert header.packet_end <= len(datagram)
    if header.version == QUIC_VERSION_1:
        assert len(header.dcid) <= MAX_CID_LENGTH
