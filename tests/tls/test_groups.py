"""Key exchange groups (RFC 8446 §4.2.8, draft-ietf-tls-ecdhe-mlkem)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from mstls.codes import AlertDescription
from mstls.exceptions import TLSError
from mstls.tls.groups import (
    MLKEM768_CIPHERTEXT_LENGTH,
    MLKEM768_ENCAPSULATION_KEY_LENGTH,
    SECP256R1_SHARE_LENGTH,
    SUPPORTED_GROUPS,
    X25519_SHARE_LENGTH,
    X25519MLKEM768_CLIENT_SHARE_LENGTH,
    X25519MLKEM768_SERVER_SHARE_LENGTH,
    KeyShareClient,
    NamedGroup,
    server_key_share,
)

#: (client share, server share, shared secret) lengths per group.
LENGTHS = {
    NamedGroup.X25519MLKEM768: (1216, 1120, 64),
    NamedGroup.x25519: (32, 32, 32),
    NamedGroup.secp256r1: (65, 65, 32),
}

#: Encodings of small-order X25519 points (RFC 7748 §6.1: the output is all zeros):
#: 0, 1, a point of order 8, and p and p + 1 (non-canonical encodings of 0 and 1).
P25519 = 2**255 - 19
SMALL_ORDER_X25519 = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    P25519.to_bytes(32, "little"),
    (P25519 + 1).to_bytes(32, "little"),
]


def expect_illegal(excinfo: pytest.ExceptionInfo[TLSError]) -> str:
    assert excinfo.value.alert == AlertDescription.illegal_parameter
    return excinfo.value.reason


def test_codepoints_and_preference() -> None:
    assert NamedGroup.secp256r1.value == 0x0017
    assert NamedGroup.x25519.value == 0x001D
    assert NamedGroup.X25519MLKEM768.value == 0x11EC
    assert NamedGroup.secp384r1.value == 0x0018
    assert NamedGroup.x448.value == 0x001E
    preference = (NamedGroup.X25519MLKEM768, NamedGroup.x25519, NamedGroup.secp256r1)
    assert preference == SUPPORTED_GROUPS
    assert X25519MLKEM768_CLIENT_SHARE_LENGTH == 1216
    assert X25519MLKEM768_SERVER_SHARE_LENGTH == 1120


@pytest.mark.parametrize("group", SUPPORTED_GROUPS)
def test_client_and_server_agree(group: NamedGroup) -> None:
    client = KeyShareClient.generate(group)
    assert client.group == group
    client_share = client.public_bytes()
    server_share, server_secret = server_key_share(group, client_share)
    client_secret = client.finish(server_share)
    assert client_secret == server_secret
    assert (len(client_share), len(server_share), len(client_secret)) == LENGTHS[group]


@pytest.mark.parametrize("group", SUPPORTED_GROUPS)
def test_each_exchange_is_fresh(group: NamedGroup) -> None:
    first, second = KeyShareClient.generate(group), KeyShareClient.generate(group)
    assert first.public_bytes() != second.public_bytes()
    share = first.public_bytes()
    assert server_key_share(group, share)[1] != server_key_share(group, share)[1]


def test_generate_accepts_a_plain_int() -> None:
    assert KeyShareClient.generate(0x001D).group == NamedGroup.x25519


def test_secp256r1_share_is_an_uncompressed_point() -> None:
    share = KeyShareClient.generate(NamedGroup.secp256r1).public_bytes()
    assert share[0] == 0x04
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), share)  # on the curve


def test_hybrid_layout_puts_mlkem_first() -> None:
    """draft-ietf-tls-ecdhe-mlkem §3: every field is ML-KEM part || X25519 part."""
    client = KeyShareClient.generate(NamedGroup.X25519MLKEM768)
    client_share = client.public_bytes()
    encapsulation_key = mlkem.MLKEM768PublicKey.from_public_bytes(
        client_share[:MLKEM768_ENCAPSULATION_KEY_LENGTH]
    )
    client_x25519 = x25519.X25519PublicKey.from_public_bytes(
        client_share[MLKEM768_ENCAPSULATION_KEY_LENGTH:]
    )

    # Play the server by hand, following the draft, and check the client agrees.
    kem_secret, ciphertext = encapsulation_key.encapsulate()
    server_ecdh = x25519.X25519PrivateKey.generate()
    ecdh_secret = server_ecdh.exchange(client_x25519)
    server_share = ciphertext + server_ecdh.public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw
    )
    assert client.finish(server_share) == kem_secret + ecdh_secret


def test_hybrid_server_layout_puts_mlkem_first() -> None:
    kem = mlkem.MLKEM768PrivateKey.generate()
    ecdh = x25519.X25519PrivateKey.generate()
    client_share = kem.public_key().public_bytes_raw() + ecdh.public_key().public_bytes_raw()
    server_share, secret = server_key_share(NamedGroup.X25519MLKEM768, client_share)
    ciphertext = server_share[:MLKEM768_CIPHERTEXT_LENGTH]
    server_x25519 = x25519.X25519PublicKey.from_public_bytes(
        server_share[MLKEM768_CIPHERTEXT_LENGTH:]
    )
    assert secret == kem.decapsulate(ciphertext) + ecdh.exchange(server_x25519)


def test_hybrid_wrong_ciphertext_is_implicitly_rejected() -> None:
    """FIPS 203 implicit rejection: a bad ciphertext gives a different secret, no error."""
    client = KeyShareClient.generate(NamedGroup.X25519MLKEM768)
    server_share, secret = server_key_share(NamedGroup.X25519MLKEM768, client.public_bytes())
    tampered = bytes([server_share[0] ^ 1]) + server_share[1:]
    assert client.finish(tampered) != secret


# --- malformed shares ---------------------------------------------------------------------

CLIENT_LENGTHS = {
    NamedGroup.X25519MLKEM768: X25519MLKEM768_CLIENT_SHARE_LENGTH,
    NamedGroup.x25519: X25519_SHARE_LENGTH,
    NamedGroup.secp256r1: SECP256R1_SHARE_LENGTH,
}
SERVER_LENGTHS = {
    NamedGroup.X25519MLKEM768: X25519MLKEM768_SERVER_SHARE_LENGTH,
    NamedGroup.x25519: X25519_SHARE_LENGTH,
    NamedGroup.secp256r1: SECP256R1_SHARE_LENGTH,
}


@pytest.mark.parametrize("group", SUPPORTED_GROUPS)
@pytest.mark.parametrize("delta", [-1, +1])
def test_wrong_length_client_share(group: NamedGroup, delta: int) -> None:
    good = KeyShareClient.generate(group).public_bytes()
    bad = good[:delta] if delta < 0 else good + b"\x00"
    with pytest.raises(TLSError) as excinfo:
        server_key_share(group, bad)
    reason = expect_illegal(excinfo)
    assert f"is {len(bad)} bytes, expected {CLIENT_LENGTHS[group]}" in reason


@pytest.mark.parametrize("group", SUPPORTED_GROUPS)
@pytest.mark.parametrize("length_of", [0, -1, +1])
def test_wrong_length_server_share(group: NamedGroup, length_of: int) -> None:
    client = KeyShareClient.generate(group)
    good, _ = server_key_share(group, client.public_bytes())
    bad = {0: b"", -1: good[:-1], 1: good + b"\x00"}[length_of]
    with pytest.raises(TLSError) as excinfo:
        client.finish(bad)
    assert f"expected {SERVER_LENGTHS[group]}" in expect_illegal(excinfo)


def test_secp256r1_point_not_on_curve() -> None:
    share = KeyShareClient.generate(NamedGroup.secp256r1).public_bytes()
    off_curve = share[:-1] + bytes([share[-1] ^ 1])
    with pytest.raises(TLSError) as excinfo:
        server_key_share(NamedGroup.secp256r1, off_curve)
    assert "not a valid point" in expect_illegal(excinfo)
    client = KeyShareClient.generate(NamedGroup.secp256r1)
    with pytest.raises(TLSError) as excinfo:
        client.finish(off_curve)
    assert "not a valid point" in expect_illegal(excinfo)


@pytest.mark.parametrize("prefix", [0x00, 0x02, 0x03, 0x05, 0x06, 0x07])
def test_secp256r1_requires_uncompressed_form(prefix: int) -> None:
    share = KeyShareClient.generate(NamedGroup.secp256r1).public_bytes()
    with pytest.raises(TLSError) as excinfo:
        server_key_share(NamedGroup.secp256r1, bytes([prefix]) + share[1:])
    assert "uncompressed" in expect_illegal(excinfo)


@pytest.mark.parametrize("point", SMALL_ORDER_X25519, ids=lambda p: p.hex()[:8])
def test_x25519_all_zero_secret_rejected_by_server(point: bytes) -> None:
    with pytest.raises(TLSError) as excinfo:
        server_key_share(NamedGroup.x25519, point)
    assert "all zeros" in expect_illegal(excinfo)


@pytest.mark.parametrize("point", SMALL_ORDER_X25519, ids=lambda p: p.hex()[:8])
def test_x25519_all_zero_secret_rejected_by_client(point: bytes) -> None:
    client = KeyShareClient.generate(NamedGroup.x25519)
    with pytest.raises(TLSError) as excinfo:
        client.finish(point)
    assert "all zeros" in expect_illegal(excinfo)


def test_hybrid_small_order_x25519_part_rejected() -> None:
    client = KeyShareClient.generate(NamedGroup.X25519MLKEM768)
    with pytest.raises(TLSError) as excinfo:
        server_key_share(NamedGroup.X25519MLKEM768, client.public_bytes()[:-32] + bytes(32))
    assert "all zeros" in expect_illegal(excinfo)
    server_share, _ = server_key_share(NamedGroup.X25519MLKEM768, client.public_bytes())
    with pytest.raises(TLSError) as excinfo:
        client.finish(server_share[:-32] + bytes(32))
    assert "all zeros" in expect_illegal(excinfo)


def test_mlkem_encapsulation_key_modulus_check() -> None:
    """FIPS 203 §7.2: coefficients must be below q = 3329; 0xFFFF... are not."""
    share = b"\xff" * MLKEM768_ENCAPSULATION_KEY_LENGTH + bytes(range(1, 33))
    with pytest.raises(TLSError) as excinfo:
        server_key_share(NamedGroup.X25519MLKEM768, share)
    assert "modulus check" in expect_illegal(excinfo)


@pytest.mark.parametrize("group", [NamedGroup.secp384r1, NamedGroup.x448, 0x9999])
def test_unsupported_group(group: int) -> None:
    with pytest.raises(TLSError) as excinfo:
        KeyShareClient.generate(group)
    assert "unsupported key exchange group" in expect_illegal(excinfo)
    with pytest.raises(TLSError) as excinfo:
        server_key_share(group, b"\x00" * 32)
    assert "unsupported key exchange group" in expect_illegal(excinfo)


@settings(max_examples=300, deadline=None)
@given(group=st.sampled_from(SUPPORTED_GROUPS), data=st.binary(max_size=1300))
def test_arbitrary_client_share_gives_secret_or_illegal_parameter(
    group: NamedGroup, data: bytes
) -> None:
    try:
        server_share, secret = server_key_share(group, data)
    except TLSError as exc:
        assert exc.alert == AlertDescription.illegal_parameter
    else:
        assert len(data) == CLIENT_LENGTHS[group]
        assert len(server_share) == SERVER_LENGTHS[group]
        assert secret


@settings(max_examples=300, deadline=None)
@given(group=st.sampled_from(SUPPORTED_GROUPS), data=st.binary(max_size=1200))
def test_arbitrary_server_share_gives_secret_or_illegal_parameter(
    group: NamedGroup, data: bytes
) -> None:
    client = KeyShareClient.generate(group)
    try:
        secret = client.finish(data)
    except TLSError as exc:
        assert exc.alert == AlertDescription.illegal_parameter
    else:
        assert len(data) == SERVER_LENGTHS[group]
        assert secret


def test_memoryview_input_is_accepted() -> None:
    client = KeyShareClient.generate(NamedGroup.x25519)
    server_share, secret = server_key_share(
        NamedGroup.x25519, memoryview(bytearray(client.public_bytes()))
    )
    assert client.finish(memoryview(server_share)) == secret
