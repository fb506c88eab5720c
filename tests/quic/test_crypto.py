"""Packet protection behaviour: round trips, tampering, short packets, key update (RFC 9001)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mstls.codes import TransportErrorCode
from mstls.exceptions import DecryptionFailed, ProtocolError
from mstls.quic.crypto import (
    AES_GCM_CONFIDENTIALITY_LIMIT,
    AES_GCM_INTEGRITY_LIMIT,
    CHACHA20_CONFIDENTIALITY_LIMIT,
    CHACHA20_INTEGRITY_LIMIT,
    CONFIDENTIALITY_LIMIT,
    INTEGRITY_LIMIT,
    HeaderProtection,
    OneRttKeys,
    PacketProtection,
    next_generation_secret,
)
from mstls.tls.cipher_suites import CipherSuite
from mstls.wire.packet import (
    KEY_PHASE_BIT,
    PacketType,
    encode_long_header,
    encode_short_header,
    parse_header,
)

SUITES = list(CipherSuite)
DCID = bytes(range(8))
SECRET_A = bytes(range(32))
SECRET_B = bytes(range(100, 132))
SECRET_48 = bytes(range(48))


def secret_for(suite: CipherSuite, base: bytes = SECRET_A) -> bytes:
    return (base * 2)[:48] if suite == CipherSuite.AES_256_GCM_SHA384 else base


def short_packet(
    protection: PacketProtection | OneRttKeys, pn: int, payload: bytes, key_phase: int = 0
) -> bytes:
    header = encode_short_header(DCID, pn, 2, key_phase=key_phase)
    return bytes(protection.encrypt_packet(header, payload, pn))


# -- basic round trips ----------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    suite=st.sampled_from(SUITES),
    pn=st.integers(0, 1 << 40),
    pn_length=st.integers(1, 4),
    payload=st.binary(min_size=3, max_size=1500),
    long=st.booleans(),
)
def test_round_trip(
    suite: CipherSuite, pn: int, pn_length: int, payload: bytes, long: bool
) -> None:
    protection = PacketProtection(suite, secret_for(suite))
    if long:
        header = encode_long_header(
            PacketType.HANDSHAKE, DCID, b"s", pn, pn_length, length=pn_length + len(payload) + 16
        )
    else:
        header = encode_short_header(DCID, pn, pn_length)
    packet = protection.encrypt_packet(header, payload, pn)
    parsed = parse_header(packet, 0, len(DCID))
    assert parsed.packet_end == len(packet)
    plain_header, plain, decoded_pn = protection.decrypt_packet(packet, parsed.pn_offset, pn - 1)
    assert (bytes(plain_header), plain, decoded_pn) == (header, payload, pn)
    assert protection.packets_encrypted == 1


@pytest.mark.parametrize("suite", SUITES)
def test_header_protection_context_is_reused(suite: CipherSuite) -> None:
    """Repeated masks from one context equal masks from fresh contexts (ECB/ChaCha20)."""
    key = os.urandom(16 if suite == CipherSuite.AES_128_GCM_SHA256 else 32)
    reused = HeaderProtection(suite, key)
    samples = [os.urandom(16) for _ in range(20)]
    masks = [reused.mask(sample)[:5] for sample in samples + samples]
    fresh = [HeaderProtection(suite, key).mask(sample)[:5] for sample in samples]
    assert masks == fresh + fresh
    assert len(set(fresh)) == len(fresh)


@pytest.mark.parametrize("suite", SUITES)
def test_header_protection_hides_packet_number_and_bits(suite: CipherSuite) -> None:
    protection = PacketProtection(suite, secret_for(suite))
    header = encode_short_header(DCID, 0x1234, 2)
    packet = bytes(protection.encrypt_packet(header, bytes(30), 0x1234))
    assert packet[1:9] == DCID  # the connection ID is not protected
    assert packet[0] & 0xE0 == header[0] & 0xE0  # nor are header form, fixed and spin bits
    assert (packet[0] & 0x1F, packet[9:11]) != (header[0] & 0x1F, header[9:11])


# -- failures ----------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("where", ["header", "packet_number", "payload", "tag"])
def test_tampering_fails_authentication(suite: CipherSuite, where: str) -> None:
    protection = PacketProtection(suite, secret_for(suite))
    packet = bytearray(short_packet(protection, 77, b"hello world, this is a packet"))
    index = {"header": 3, "packet_number": 9, "payload": 20, "tag": len(packet) - 1}[where]
    packet[index] ^= 0x01
    with pytest.raises(DecryptionFailed):
        protection.decrypt_packet(bytes(packet), 9, 76)
    assert protection.decryption_failures == 1


def test_wrong_key_fails_authentication() -> None:
    sender = PacketProtection(CipherSuite.AES_128_GCM_SHA256, SECRET_A)
    receiver = PacketProtection(CipherSuite.AES_128_GCM_SHA256, SECRET_B)
    with pytest.raises(DecryptionFailed):
        receiver.decrypt_packet(short_packet(sender, 1, b"abcdef"), 9, 0)


@pytest.mark.parametrize("suite", SUITES)
def test_too_short_packet_is_dropped(suite: CipherSuite) -> None:
    protection = PacketProtection(suite, secret_for(suite))
    # pn_length 1 + 3 bytes payload + 16 tag: exactly enough for the sample.
    header = encode_short_header(DCID, 5, 1)
    packet = protection.encrypt_packet(header, b"\x01\x00\x00", 5)
    assert len(packet) == 9 + 4 + 16
    assert protection.decrypt_packet(packet, 9, 4)[1] == b"\x01\x00\x00"
    for cut in range(len(packet)):
        with pytest.raises(DecryptionFailed):
            protection.decrypt_packet(packet[:cut], 9, 4)
    with pytest.raises(DecryptionFailed):
        protection.decrypt_packet(packet, 0, 4)


def test_encrypt_rejects_unsampleable_payload() -> None:
    protection = PacketProtection(CipherSuite.AES_128_GCM_SHA256, SECRET_A)
    with pytest.raises(ValueError, match="too short"):
        protection.encrypt_packet(encode_short_header(DCID, 5, 1), b"\x01\x00", 5)


_SHORT = encode_short_header(DCID, 3, 1)
_LONG = encode_long_header(PacketType.HANDSHAKE, DCID, b"", 3, 1, length=30)


@pytest.mark.parametrize(
    "header",
    [
        bytes((_SHORT[0] | 0x08,)) + _SHORT[1:],
        bytes((_SHORT[0] | 0x10,)) + _SHORT[1:],
        bytes((_LONG[0] | 0x04,)) + _LONG[1:],
        bytes((_LONG[0] | 0x08,)) + _LONG[1:],
    ],
)
def test_reserved_bits_after_decryption_are_protocol_violation(header: bytes) -> None:
    pn_offset = len(header) - 1
    protection = PacketProtection(CipherSuite.AES_128_GCM_SHA256, SECRET_A)
    packet = protection.encrypt_packet(header, bytes(13), 3)
    with pytest.raises(ProtocolError) as info:
        protection.decrypt_packet(packet, pn_offset, 2)
    assert not isinstance(info.value, DecryptionFailed)
    assert info.value.error_code == TransportErrorCode.PROTOCOL_VIOLATION
    # Tampered as well: the AEAD failure wins, the packet is just dropped.
    tampered = bytearray(packet)
    tampered[-1] ^= 1
    with pytest.raises(DecryptionFailed):
        protection.decrypt_packet(bytes(tampered), pn_offset, 2)


def test_aead_limit_constants() -> None:
    assert AES_GCM_CONFIDENTIALITY_LIMIT == 2**23
    assert AES_GCM_INTEGRITY_LIMIT == 2**52
    assert CHACHA20_CONFIDENTIALITY_LIMIT == 2**62
    assert CHACHA20_INTEGRITY_LIMIT == 2**36
    assert CONFIDENTIALITY_LIMIT[CipherSuite.AES_256_GCM_SHA384] == 2**23
    assert INTEGRITY_LIMIT[CipherSuite.CHACHA20_POLY1305_SHA256] == 2**36
    assert set(CONFIDENTIALITY_LIMIT) == set(INTEGRITY_LIMIT) == set(CipherSuite)


# -- key update (RFC 9001 §6) -------------------------------------------------------------


def make_pair(suite: CipherSuite = CipherSuite.AES_128_GCM_SHA256) -> tuple[OneRttKeys, OneRttKeys]:
    client_secret, server_secret = secret_for(suite, SECRET_A), secret_for(suite, SECRET_B)
    client = OneRttKeys(suite, client_secret, server_secret)
    server = OneRttKeys(suite, server_secret, client_secret)
    return client, server


def send(keys: OneRttKeys, pn: int, payload: bytes = b"ping payload") -> bytes:
    return short_packet(keys, pn, payload, key_phase=keys.key_phase)


def receive(keys: OneRttKeys, packet: bytes, largest: int) -> tuple[bytes, int]:
    _, payload, pn = keys.decrypt_packet(packet, 9, largest)
    return payload, pn


@pytest.mark.parametrize("suite", SUITES)
def test_key_update_initiated_and_answered(suite: CipherSuite) -> None:
    client, server = make_pair(suite)
    assert receive(server, send(client, 0), -1) == (b"ping payload", 0)
    assert receive(client, send(server, 0), -1)[1] == 0
    old_from_client = send(client, 1, b"sent before the update")
    hp_before = client.send.header_protection

    client.initiate_update()
    assert client.key_phase == 1
    assert client.send_generation == client.receive_generation == 1
    assert client.update_pending
    assert client.send.header_protection is hp_before  # the HP key does not change (§6.1)
    assert client.send.secret == next_generation_secret(suite, secret_for(suite, SECRET_A))
    with pytest.raises(RuntimeError):
        client.initiate_update()

    assert receive(server, send(client, 2), 0) == (b"ping payload", 2)
    assert server.receive_generation == server.send_generation == 1  # the server answered
    assert server.key_phase == 1
    assert server.has_previous

    # Reordered packet from before the update: the previous keys still open it.
    assert receive(server, old_from_client, 2) == (b"sent before the update", 1)

    # The server's answer in the new phase reaches the client and ends the pending state.
    assert receive(client, send(server, 1), 0)[1] == 1
    assert not client.update_pending
    assert client.has_previous

    server.discard_previous()
    assert not server.has_previous
    with pytest.raises(DecryptionFailed):
        receive(server, old_from_client, 2)


def test_two_key_updates_in_a_row() -> None:
    client, server = make_pair(CipherSuite.CHACHA20_POLY1305_SHA256)
    for pn, generation in enumerate((1, 2)):
        client.initiate_update()
        assert receive(server, send(client, pn), pn - 1)[1] == pn
        assert receive(client, send(server, pn), pn - 1)[1] == pn
        assert client.send_generation == server.send_generation == generation
        assert client.receive_generation == server.receive_generation == generation
        assert server.key_phase == client.key_phase == generation & 1
    client.discard_previous()
    server.discard_previous()


def test_peer_initiated_update_by_server() -> None:
    client, server = make_pair()
    receive(server, send(client, 0), -1)
    server.initiate_update()
    assert receive(client, send(server, 0), -1)[1] == 0
    assert client.key_phase == 1  # answered
    assert receive(server, send(client, 1), 0)[1] == 1


def test_encrypt_sets_key_phase_bit() -> None:
    client, server = make_pair()
    client.initiate_update()
    # Header claims phase 0; the keys fix it to phase 1 and the peer accepts it.
    packet = short_packet(client, 0, b"fixed", key_phase=0)
    header, payload, _ = server.decrypt_packet(packet, 9, -1)
    assert header[0] & KEY_PHASE_BIT
    assert payload == b"fixed"


def test_garbage_in_next_phase_does_not_rotate() -> None:
    client, server = make_pair()
    receive(server, send(client, 0), -1)
    client.initiate_update()
    forged = bytearray(send(client, 1))
    forged[-1] ^= 1
    with pytest.raises(DecryptionFailed):
        receive(server, bytes(forged), 0)
    assert server.receive_generation == 0
    assert server.key_phase == 0


def test_newer_keys_on_older_packet_is_key_update_error() -> None:
    client, server = make_pair()
    receive(server, send(client, 10), -1)
    client.initiate_update()
    with pytest.raises(ProtocolError) as info:
        receive(server, send(client, 5), 10)
    assert info.value.error_code == TransportErrorCode.KEY_UPDATE_ERROR
