"""Verifying the peer's certificate chain, or its pinned key (RFC 8446 §4.4.2.4).

Theory of operation
-------------------
*WebPKI mode* is done by ``cryptography.x509.verification``: path building to one of
the trusted roots, validity at ``now``, the subjectAltName match for servers (RFC 6125,
no common-name fallback), basic constraints, key usage and the extended key usage
(serverAuth or clientAuth; a leaf without the extension is accepted).  That verifier
alone decides accept or reject; a rejection is explained by
:func:`~mstls.tls.chain_diagnosis.diagnose`.  The verifier's trust store is built once
per set of roots and cached (:func:`_store`).

*Pinned-key mode* (development) skips the chain and compares the SHA-256 of the
leaf's SubjectPublicKeyInfo with configured pins, given as 64 hex digits (any case,
colons allowed, optional ``sha256:`` prefix) or base64 of the 32-byte hash (optional
``sha256/`` prefix, as in HPKP).

*Unverified mode* (``verify_peer=False``) checks only that a chain was presented.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import threading
from collections.abc import Collection, Sequence

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from ..codes import AlertDescription
from ..exceptions import CertificateError, ConfigurationError
from .chain_diagnosis import diagnose, validity_problem
from .peer_identity import VerifiedPeer, server_name_subject, verified_peer
from .x509_fields import as_utc, check_chain_length, spki_sha256

__all__ = [
    "CLIENT_CERTIFICATE_REQUIRED_MESSAGE",
    "EMPTY_SERVER_CERTIFICATE_MESSAGE",
    "normalize_pin",
    "unverified_peer",
    "verify_client_chain",
    "verify_pinned",
    "verify_server_chain",
]

#: RFC 8446 §4.4.2.4: a server must send a certificate (the client answers decode_error).
EMPTY_SERVER_CERTIFICATE_MESSAGE = "the server sent no certificate"
#: RFC 8446 §4.4.2.4: the alert is certificate_required.
CLIENT_CERTIFICATE_REQUIRED_MESSAGE = "a client certificate is required but none was sent"
_PIN_HEX_LENGTH = 64
_PIN_DIGEST_LENGTH = 32


# --- verification ------------------------------------------------------------------------


#: Prepared stores kept, keyed by the identities of their certificates.
_STORE_CACHE_SIZE = 16
_store_cache: dict[tuple[int, ...], tuple[tuple[x509.Certificate, ...], Store]] = {}
_store_cache_lock = threading.Lock()


def _store(roots: Sequence[x509.Certificate]) -> Store:
    """A Store for ``roots``, reused across handshakes.

    Building one for the ~150 system roots costs ~0.4 ms and hashing the certificates
    costs more, so the key is the tuple of their ``id()``s; the entry holds the
    certificates themselves, so those ids cannot be reused while it exists.
    """
    key = tuple(map(id, roots))
    entry = _store_cache.get(key)
    if entry is None:
        entry = (tuple(roots), Store(list(roots)))
        with _store_cache_lock:
            if len(_store_cache) >= _STORE_CACHE_SIZE:
                del _store_cache[next(iter(_store_cache))]
            _store_cache[key] = entry
    return entry[1]


def _policy(roots: Sequence[x509.Certificate], now: datetime.datetime) -> PolicyBuilder:
    return PolicyBuilder().store(_store(roots)).time(now)


def _check_presented(chain: Sequence[x509.Certificate], empty_alert: int, empty: str) -> None:
    if not chain:
        raise CertificateError(empty_alert, empty)
    check_chain_length(len(chain))


def verify_server_chain(
    chain: Sequence[x509.Certificate],
    server_name: str,
    roots: Sequence[x509.Certificate],
    now: datetime.datetime,
) -> VerifiedPeer:
    """Verify a server's chain (leaf first) for ``server_name`` (RFC 8446 §4.4.2.4).

    Raises :class:`CertificateError` with the alert and message of the table in
    :mod:`mstls.tls.chain_diagnosis`;
    an empty chain is ``decode_error``.  ``server_name`` should have been checked with
    :func:`server_name_subject` at configuration time (here it is ``internal_error``).
    """
    _check_presented(chain, AlertDescription.decode_error, EMPTY_SERVER_CERTIFICATE_MESSAGE)
    try:
        subject = server_name_subject(server_name)
    except ConfigurationError as exc:
        raise CertificateError(AlertDescription.internal_error, str(exc)) from None
    now = as_utc(now)
    verifier = _policy(roots, now).build_server_verifier(subject)
    try:
        path = verifier.verify(chain[0], list(chain[1:]))
    except VerificationError as exc:
        raise diagnose(
            chain, roots, now, exc, subject=subject, required_eku=ExtendedKeyUsageOID.SERVER_AUTH
        ) from None
    return verified_peer(path)


def verify_client_chain(
    chain: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: datetime.datetime,
) -> VerifiedPeer:
    """Verify a client's chain (leaf first) for mutual TLS (RFC 8446 §4.4.2.4).

    Same errors as :func:`verify_server_chain` without the name check; an empty chain
    is ``certificate_required``.
    """
    _check_presented(
        chain, AlertDescription.certificate_required, CLIENT_CERTIFICATE_REQUIRED_MESSAGE
    )
    now = as_utc(now)
    verifier = _policy(roots, now).build_client_verifier()
    try:
        verified = verifier.verify(chain[0], list(chain[1:]))
    except VerificationError as exc:
        raise diagnose(
            chain, roots, now, exc, subject=None, required_eku=ExtendedKeyUsageOID.CLIENT_AUTH
        ) from None
    return verified_peer(verified.chain)


def unverified_peer(chain: Sequence[x509.Certificate]) -> VerifiedPeer:
    """The identity of a chain accepted *without* verification (``verify_peer=False``).

    Only the presence and length of the chain are checked.
    """
    _check_presented(chain, AlertDescription.bad_certificate, "the peer sent no certificate")
    return verified_peer(chain)


# --- pinned keys -------------------------------------------------------------------------


def normalize_pin(pin: str) -> str:
    """A pin as lowercase hex; accepts hex (colons, any case) or base64 (module doc)."""
    text = pin.strip()
    lowered = text.lower()
    if lowered.startswith("sha256:") or lowered.startswith("sha256/"):
        text = text[len("sha256:") :]
    hex_text = text.replace(":", "").lower()
    if len(hex_text) == _PIN_HEX_LENGTH and all(c in "0123456789abcdef" for c in hex_text):
        return hex_text
    padded = text + "=" * (-len(text) % 4)
    for altchars in (None, b"-_"):
        try:
            digest = base64.b64decode(padded.encode("ascii"), altchars=altchars, validate=True)
        except (binascii.Error, UnicodeError):
            continue
        if len(digest) == _PIN_DIGEST_LENGTH:
            return digest.hex()
    raise ConfigurationError(
        f"invalid public key pin {pin!r}: expected the SHA-256 of a SubjectPublicKeyInfo "
        "as 64 hex digits or base64"
    )


def verify_pinned(
    chain: Sequence[x509.Certificate],
    pins: Collection[str],
    now: datetime.datetime | None = None,
) -> VerifiedPeer:
    """Accept ``chain`` if its leaf's public key is pinned (development mode).

    No path or name check; with ``now`` the leaf's validity window is checked too.
    Pins may be in any form :func:`normalize_pin` accepts; check them with it at
    configuration time (here an invalid pin is ``internal_error``).
    """
    _check_presented(chain, AlertDescription.bad_certificate, "the peer sent no certificate")
    digest = spki_sha256(chain[0])
    try:
        pinned = {normalize_pin(pin) for pin in pins}
    except ConfigurationError as exc:
        raise CertificateError(AlertDescription.internal_error, str(exc)) from None
    if digest not in pinned:
        raise CertificateError(
            AlertDescription.bad_certificate, f"public key sha256 {digest} is not pinned"
        )
    if now is not None:
        problem = validity_problem(chain[0], as_utc(now), None)
        if problem is not None:
            raise problem
    return verified_peer(chain)
