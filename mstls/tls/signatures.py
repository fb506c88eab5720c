"""Signature schemes and the CertificateVerify signature (RFC 8446 §4.2.3, §4.4.3).

Theory of operation
-------------------
Each scheme we implement is one row of :data:`_SCHEMES`: the key type it needs, the
curve (ECDSA binds the curve in TLS 1.3), and how to sign and verify with it.  We sign
and accept three schemes (:data:`SUPPORTED_SIGNATURE_SCHEMES`); the others in
:class:`SignatureScheme` only name what peers send in ``signature_algorithms`` and
``signature_algorithms_cert``.

RSA signatures are RSASSA-PSS with MGF1 over the same hash and a salt as long as the
hash (RFC 8446 §4.2.3); PKCS #1 v1.5 is never used in CertificateVerify.

:func:`verify` handles untrusted input (the peer's signature and its choice of scheme):
a scheme we did not offer or that does not fit the key raises
``TLSError(illegal_parameter)``, a signature that does not verify raises
``TLSError(decrypt_error)`` (RFC 8446 §4.4.3); nothing else escapes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from enum import IntEnum

import attrs
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from ..codes import AlertDescription
from ..exceptions import TLSError

__all__ = [
    "CERTIFICATE_VERIFY_PAD",
    "CLIENT_CONTEXT",
    "MAX_CACHED_KEY_SCHEMES",
    "SERVER_CONTEXT",
    "SUPPORTED_SIGNATURE_SCHEMES",
    "SignatureScheme",
    "certificate_verify_content",
    "choose_scheme",
    "schemes_for_key",
    "sign",
    "verify",
]


class SignatureScheme(IntEnum):
    """TLS SignatureScheme registry (RFC 8446 §4.2.3)."""

    rsa_pkcs1_sha256 = 0x0401
    rsa_pkcs1_sha384 = 0x0501
    rsa_pkcs1_sha512 = 0x0601
    ecdsa_secp256r1_sha256 = 0x0403
    ecdsa_secp384r1_sha384 = 0x0503
    ecdsa_secp521r1_sha512 = 0x0603
    rsa_pss_rsae_sha256 = 0x0804
    rsa_pss_rsae_sha384 = 0x0805
    rsa_pss_rsae_sha512 = 0x0806
    ed25519 = 0x0807
    ed448 = 0x0808
    rsa_pss_pss_sha256 = 0x0809
    rsa_pss_pss_sha384 = 0x080A
    rsa_pss_pss_sha512 = 0x080B


#: The schemes we sign with and accept in CertificateVerify, in our preference order.
SUPPORTED_SIGNATURE_SCHEMES: tuple[SignatureScheme, ...] = (
    SignatureScheme.ed25519,
    SignatureScheme.ecdsa_secp256r1_sha256,
    SignatureScheme.rsa_pss_rsae_sha256,
)

#: RFC 8446 §4.4.3: 64 octets of 0x20 open the signed content.
CERTIFICATE_VERIFY_PAD = b" " * 64
SERVER_CONTEXT = b"TLS 1.3, server CertificateVerify"
CLIENT_CONTEXT = b"TLS 1.3, client CertificateVerify"


def certificate_verify_content(transcript_hash: bytes, is_server: bool) -> bytes:
    """The bytes covered by a CertificateVerify signature (RFC 8446 §4.4.3).

    ``is_server`` tells whose CertificateVerify it is (the signer's role).
    """
    context = SERVER_CONTEXT if is_server else CLIENT_CONTEXT
    return CERTIFICATE_VERIFY_PAD + context + b"\x00" + bytes(transcript_hash)


# --- the scheme table --------------------------------------------------------------------

_Signer = Callable[[PrivateKeyTypes, bytes], bytes]
_Verifier = Callable[[PublicKeyTypes, bytes, bytes], None]


def _pss(algorithm: hashes.HashAlgorithm) -> padding.PSS:
    """RSASSA-PSS with MGF1 over the same hash and salt = hash length (RFC 8446 §4.2.3)."""
    return padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size)


def _sign_ed25519(key: PrivateKeyTypes, data: bytes) -> bytes:
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    return key.sign(data)


def _verify_ed25519(key: PublicKeyTypes, signature: bytes, data: bytes) -> None:
    assert isinstance(key, ed25519.Ed25519PublicKey)
    key.verify(signature, data)


#: The signature algorithm object holds no state: one serves every signature.
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def _sign_ecdsa_sha256(key: PrivateKeyTypes, data: bytes) -> bytes:
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key.sign(data, _ECDSA_SHA256)


def _verify_ecdsa_sha256(key: PublicKeyTypes, signature: bytes, data: bytes) -> None:
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(signature, data, _ECDSA_SHA256)


def _sign_pss_sha256(key: PrivateKeyTypes, data: bytes) -> bytes:
    assert isinstance(key, rsa.RSAPrivateKey)
    return key.sign(data, _pss(hashes.SHA256()), hashes.SHA256())


def _verify_pss_sha256(key: PublicKeyTypes, signature: bytes, data: bytes) -> None:
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(signature, data, _pss(hashes.SHA256()), hashes.SHA256())


@attrs.frozen
class _SchemeRow:
    """How one scheme signs and verifies, and which keys it fits."""

    private_type: type
    public_type: type
    curve: type[ec.EllipticCurve] | None
    key_name: str
    sign: _Signer
    verify: _Verifier


_SCHEMES: dict[int, _SchemeRow] = {
    SignatureScheme.ed25519: _SchemeRow(
        ed25519.Ed25519PrivateKey,
        ed25519.Ed25519PublicKey,
        None,
        "Ed25519",
        _sign_ed25519,
        _verify_ed25519,
    ),
    SignatureScheme.ecdsa_secp256r1_sha256: _SchemeRow(
        ec.EllipticCurvePrivateKey,
        ec.EllipticCurvePublicKey,
        ec.SECP256R1,
        "ECDSA P-256",
        _sign_ecdsa_sha256,
        _verify_ecdsa_sha256,
    ),
    SignatureScheme.rsa_pss_rsae_sha256: _SchemeRow(
        rsa.RSAPrivateKey,
        rsa.RSAPublicKey,
        None,
        "RSA",
        _sign_pss_sha256,
        _verify_pss_sha256,
    ),
}
assert set(_SCHEMES) == set(SUPPORTED_SIGNATURE_SCHEMES)


def _fits(row: _SchemeRow, key: PrivateKeyTypes | PublicKeyTypes, key_type: type) -> bool:
    if not isinstance(key, key_type):
        return False
    if row.curve is None:
        return True
    assert isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey)
    return isinstance(key.curve, row.curve)


def _scheme_name(scheme: int) -> str:
    try:
        return SignatureScheme(scheme).name
    except ValueError:
        return f"{scheme:#06x}"


def _describe_key(key: PrivateKeyTypes | PublicKeyTypes) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name} key"
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA-{key.key_size} key"
    return f"{type(key).__name__.removeprefix('_')}"


# --- public functions --------------------------------------------------------------------


#: Keys whose usable schemes are remembered, at most (a server has one or a few; the
#: table is emptied when full).  Keyed by identity, the key object kept alive with it.
MAX_CACHED_KEY_SCHEMES = 32
_key_schemes: dict[int, tuple[PrivateKeyTypes, tuple[SignatureScheme, ...]]] = {}


def schemes_for_key(private_key: PrivateKeyTypes) -> tuple[SignatureScheme, ...]:
    """Our schemes that can sign with ``private_key``, in preference order.

    Empty means the key cannot be used for TLS 1.3 at all; check it when loading
    configuration so the user gets the error before any handshake.  Computed once
    per key object (keys are immutable): a server asks on every handshake.
    """
    cached = _key_schemes.get(id(private_key))
    if cached is not None and cached[0] is private_key:
        return cached[1]
    schemes = tuple(
        scheme
        for scheme in SUPPORTED_SIGNATURE_SCHEMES
        if _fits(_SCHEMES[scheme], private_key, _SCHEMES[scheme].private_type)
    )
    if len(_key_schemes) >= MAX_CACHED_KEY_SCHEMES:
        _key_schemes.clear()
    _key_schemes[id(private_key)] = (private_key, schemes)
    return schemes


def choose_scheme(private_key: PrivateKeyTypes, peer_schemes: Iterable[int]) -> SignatureScheme:
    """Pick the scheme for our CertificateVerify (RFC 8446 §4.4.2.2, §4.4.3).

    The first of our schemes that fits ``private_key`` and is in the peer's
    ``signature_algorithms``.  Raises ``TLSError(handshake_failure)`` if none.
    """
    peer = set(peer_schemes)
    usable = schemes_for_key(private_key)
    for scheme in usable:
        if scheme in peer:
            return scheme
    ours = ", ".join(s.name for s in usable) or "none"
    theirs = ", ".join(_scheme_name(s) for s in sorted(peer)) or "none"
    raise TLSError(
        AlertDescription.handshake_failure,
        f"no common signature scheme for our {_describe_key(private_key)}: "
        f"we can sign with {ours}; the peer accepts {theirs}",
    )


def sign(private_key: PrivateKeyTypes, scheme: SignatureScheme | int, data: bytes) -> bytes:
    """Sign ``data`` (the output of :func:`certificate_verify_content`) with ``scheme``.

    A scheme we do not implement, or one that does not fit the key, is a local bug:
    ``TLSError(internal_error)``.
    """
    row = _SCHEMES.get(scheme)
    if row is None or scheme not in schemes_for_key(private_key):  # _fits, cached per key
        raise TLSError(
            AlertDescription.internal_error,
            f"cannot sign with {_scheme_name(scheme)} using a {_describe_key(private_key)}",
        )
    return row.sign(private_key, bytes(data))


def verify(
    public_key: PublicKeyTypes,
    scheme: SignatureScheme | int,
    signature: bytes,
    data: bytes,
    *,
    offered: Collection[int] = SUPPORTED_SIGNATURE_SCHEMES,
) -> None:
    """Check the peer's CertificateVerify signature (RFC 8446 §4.4.3); untrusted input.

    ``offered`` is what we sent in ``signature_algorithms``.  Raises
    ``TLSError(illegal_parameter)`` if ``scheme`` is not one we offered and implement or
    does not fit the certificate's key, ``TLSError(decrypt_error)`` if the signature
    does not verify.
    """
    row = _SCHEMES.get(scheme)
    if row is None or scheme not in offered:
        raise TLSError(
            AlertDescription.illegal_parameter,
            f"peer signed CertificateVerify with {_scheme_name(scheme)}, which we did not offer",
        )
    if not _fits(row, public_key, row.public_type):
        raise TLSError(
            AlertDescription.illegal_parameter,
            f"peer signed CertificateVerify with {_scheme_name(scheme)}, "
            f"which does not fit its certificate's {_describe_key(public_key)}",
        )
    try:
        row.verify(public_key, bytes(signature), bytes(data))
    except (InvalidSignature, ValueError, UnsupportedAlgorithm):
        raise TLSError(
            AlertDescription.decrypt_error, "CertificateVerify signature does not verify"
        ) from None
