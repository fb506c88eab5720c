"""CertificateVerify signatures (RFC 8446 §4.2.3, §4.4.3)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from hypothesis import given, settings
from hypothesis import strategies as st

from mstls.codes import AlertDescription
from mstls.exceptions import TLSError
from mstls.tls.signatures import (
    SUPPORTED_SIGNATURE_SCHEMES,
    SignatureScheme,
    certificate_verify_content,
    choose_scheme,
    schemes_for_key,
    sign,
    verify,
)
from tests.certs import get_pki

S = SignatureScheme


def key_for(scheme: SignatureScheme) -> PrivateKeyTypes:
    pki = get_pki()
    return {
        S.ed25519: pki.server_ed25519.private_key,
        S.ecdsa_secp256r1_sha256: pki.server.private_key,
        S.rsa_pss_rsae_sha256: pki.server_rsa.private_key,
    }[scheme]


CONTENT = certificate_verify_content(bytes(32), is_server=True)


def test_codepoints_and_our_schemes() -> None:
    expected = {
        "ecdsa_secp256r1_sha256": 0x0403,
        "ecdsa_secp384r1_sha384": 0x0503,
        "ed25519": 0x0807,
        "rsa_pss_rsae_sha256": 0x0804,
        "rsa_pss_rsae_sha384": 0x0805,
        "rsa_pss_pss_sha256": 0x0809,
        "rsa_pkcs1_sha256": 0x0401,
    }
    assert {name: S.__members__[name].value for name in expected} == expected
    ours = (S.ed25519, S.ecdsa_secp256r1_sha256, S.rsa_pss_rsae_sha256)
    assert ours == SUPPORTED_SIGNATURE_SCHEMES


def test_content_matches_rfc8446_example() -> None:
    """RFC 8446 §4.4.3: the example for a transcript hash of 32 bytes of 01."""
    expected = bytes.fromhex(
        "20" * 64
        + "544c5320312e332c207365727665722043657274696669636174655665726966"
        + "79"
        + "00"
        + "01" * 32
    )
    assert certificate_verify_content(b"\x01" * 32, is_server=True) == expected


def test_client_content_uses_client_context() -> None:
    content = certificate_verify_content(b"\x02" * 48, is_server=False)
    assert content == b" " * 64 + b"TLS 1.3, client CertificateVerify\x00" + b"\x02" * 48


@pytest.mark.parametrize("scheme", SUPPORTED_SIGNATURE_SCHEMES)
def test_sign_then_verify(scheme: SignatureScheme) -> None:
    key = key_for(scheme)
    signature = sign(key, scheme, CONTENT)
    verify(key.public_key(), scheme, signature, CONTENT)


@pytest.mark.parametrize("scheme", SUPPORTED_SIGNATURE_SCHEMES)
def test_tampered_signature_is_decrypt_error(scheme: SignatureScheme) -> None:
    key = key_for(scheme)
    signature = bytearray(sign(key, scheme, CONTENT))
    signature[len(signature) // 2] ^= 0x01
    with pytest.raises(TLSError) as excinfo:
        verify(key.public_key(), scheme, bytes(signature), CONTENT)
    assert excinfo.value.alert == AlertDescription.decrypt_error
    assert excinfo.value.reason == "CertificateVerify signature does not verify"


@pytest.mark.parametrize("scheme", SUPPORTED_SIGNATURE_SCHEMES)
def test_signature_over_other_content_is_decrypt_error(scheme: SignatureScheme) -> None:
    key = key_for(scheme)
    client_content = certificate_verify_content(bytes(32), is_server=False)
    signature = sign(key, scheme, client_content)
    with pytest.raises(TLSError) as excinfo:
        verify(key.public_key(), scheme, signature, CONTENT)
    assert excinfo.value.alert == AlertDescription.decrypt_error


@settings(max_examples=200, deadline=None)
@given(scheme=st.sampled_from(SUPPORTED_SIGNATURE_SCHEMES), signature=st.binary(max_size=300))
def test_arbitrary_signature_bytes_are_decrypt_error(
    scheme: SignatureScheme, signature: bytes
) -> None:
    with pytest.raises(TLSError) as excinfo:
        verify(key_for(scheme).public_key(), scheme, signature, CONTENT)
    assert excinfo.value.alert == AlertDescription.decrypt_error


def test_rsa_pss_uses_salt_of_hash_length_and_mgf1_sha256() -> None:
    """RFC 8446 §4.2.3: salt length equals the digest length; MGF1 uses the same hash."""
    key = key_for(S.rsa_pss_rsae_sha256)
    assert isinstance(key, rsa.RSAPrivateKey)
    signature = sign(key, S.rsa_pss_rsae_sha256, CONTENT)
    exact = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    key.public_key().verify(signature, CONTENT, exact, hashes.SHA256())
    other_salt = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)
    foreign = key.sign(CONTENT, other_salt, hashes.SHA256())
    with pytest.raises(TLSError) as excinfo:
        verify(key.public_key(), S.rsa_pss_rsae_sha256, foreign, CONTENT)
    assert excinfo.value.alert == AlertDescription.decrypt_error


@pytest.mark.parametrize(
    ("scheme", "key_scheme"),
    [
        (S.ed25519, S.ecdsa_secp256r1_sha256),
        (S.ecdsa_secp256r1_sha256, S.rsa_pss_rsae_sha256),
        (S.rsa_pss_rsae_sha256, S.ed25519),
    ],
)
def test_scheme_not_fitting_the_key_is_illegal_parameter(
    scheme: SignatureScheme, key_scheme: SignatureScheme
) -> None:
    key = key_for(key_scheme)
    signature = sign(key, key_scheme, CONTENT)
    with pytest.raises(TLSError) as excinfo:
        verify(key.public_key(), scheme, signature, CONTENT)
    assert excinfo.value.alert == AlertDescription.illegal_parameter
    assert "does not fit" in excinfo.value.reason


def test_ecdsa_scheme_is_bound_to_its_curve() -> None:
    """In TLS 1.3 ecdsa_secp256r1_sha256 means a P-256 key (RFC 8446 §4.2.3)."""
    p384 = ec.generate_private_key(ec.SECP384R1())
    signature = p384.sign(CONTENT, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(TLSError) as excinfo:
        verify(p384.public_key(), S.ecdsa_secp256r1_sha256, signature, CONTENT)
    assert excinfo.value.alert == AlertDescription.illegal_parameter
    assert "secp384r1" in excinfo.value.reason


@pytest.mark.parametrize("scheme", [S.rsa_pkcs1_sha256, S.rsa_pss_pss_sha256, 0xFEFE])
def test_scheme_we_do_not_offer_is_illegal_parameter(scheme: int) -> None:
    key = key_for(S.rsa_pss_rsae_sha256)
    assert isinstance(key, rsa.RSAPrivateKey)
    signature = key.sign(CONTENT, padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(TLSError) as excinfo:
        verify(key.public_key(), scheme, signature, CONTENT)
    assert excinfo.value.alert == AlertDescription.illegal_parameter
    assert "which we did not offer" in excinfo.value.reason


def test_offered_list_restricts_accepted_schemes() -> None:
    key = key_for(S.ecdsa_secp256r1_sha256)
    signature = sign(key, S.ecdsa_secp256r1_sha256, CONTENT)
    public = key.public_key()
    verify(public, S.ecdsa_secp256r1_sha256, signature, CONTENT, offered=[0x0403])
    with pytest.raises(TLSError) as excinfo:
        verify(public, S.ecdsa_secp256r1_sha256, signature, CONTENT, offered=[S.ed25519])
    assert excinfo.value.alert == AlertDescription.illegal_parameter


@pytest.mark.parametrize("scheme", SUPPORTED_SIGNATURE_SCHEMES)
def test_choose_scheme_picks_the_one_fitting_the_key(scheme: SignatureScheme) -> None:
    key = key_for(scheme)
    assert schemes_for_key(key) == (scheme,)
    assert choose_scheme(key, list(SignatureScheme)) == scheme
    assert choose_scheme(key, [0x1234, int(scheme)]) == scheme


def test_choose_scheme_without_a_common_scheme_is_handshake_failure() -> None:
    key = key_for(S.ecdsa_secp256r1_sha256)
    with pytest.raises(TLSError) as excinfo:
        choose_scheme(key, [S.ed25519, S.rsa_pss_rsae_sha256, 0x0101])
    assert excinfo.value.alert == AlertDescription.handshake_failure
    assert excinfo.value.reason == (
        "no common signature scheme for our ECDSA secp256r1 key: we can sign with "
        "ecdsa_secp256r1_sha256; the peer accepts 0x0101, rsa_pss_rsae_sha256, ed25519"
    )


def test_key_we_cannot_sign_with() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    assert schemes_for_key(p384) == ()
    with pytest.raises(TLSError) as excinfo:
        choose_scheme(p384, list(SignatureScheme))
    assert excinfo.value.alert == AlertDescription.handshake_failure
    assert "we can sign with none" in excinfo.value.reason


def test_sign_with_a_mismatched_scheme_is_internal_error() -> None:
    with pytest.raises(TLSError) as excinfo:
        sign(ed25519.Ed25519PrivateKey.generate(), S.ecdsa_secp256r1_sha256, CONTENT)
    assert excinfo.value.alert == AlertDescription.internal_error
    with pytest.raises(TLSError) as excinfo:
        sign(key_for(S.rsa_pss_rsae_sha256), S.rsa_pkcs1_sha256, CONTENT)
    assert excinfo.value.alert == AlertDescription.internal_error
