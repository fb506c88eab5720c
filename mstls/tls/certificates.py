"""Certificates: loading, chain verification with clear errors, and pinned keys.

Theory of operation
-------------------
*Loading* (configuration time) reads PEM files and raises
:class:`~mstls.exceptions.ConfigurationError` naming the file and the problem.  The
system trust store is read once per process from ``ssl.get_default_verify_paths()``
(its CA file and CA directory), skipping entries that do not parse.

*Verification* (handshake time) is done by ``cryptography.x509.verification``: path
building to one of the trusted roots, validity at ``now``, the subjectAltName match for
servers (RFC 6125, no common-name fallback), basic constraints, key usage and the
extended key usage (serverAuth or clientAuth; a leaf without the extension is
accepted).  That verifier alone decides accept or reject.  Its error messages are
coarse ("candidates exhausted"), so when it rejects a chain we *diagnose* the chain
ourselves, in a fixed order, to give one exact message and the right alert
(RFC 8446 §6.2):

=======================================  =======================  ============================
finding (first that applies)             alert                    message
=======================================  =======================  ============================
leaf expired / not yet valid             certificate_expired /    certificate expired on …
                                         bad_certificate          certificate not valid before …
name does not match (servers only)       bad_certificate          certificate for '…' does not
                                                                  match '…'
leaf's extended key usage is wrong       unsupported_certificate  … is not valid for TLS server
                                                                  authentication (…)
intermediate or root expired             certificate_expired      CA certificate '…' expired on …
no path to a trusted root                unknown_ca               unknown CA: …
signed with Ed25519/Ed448                unsupported_certificate  certificate '…' is signed with …
anything else                            bad_certificate          … rejected: <verifier's text>
=======================================  =======================  ============================

Peer certificates arrive as DER from the network: :func:`parse_certificate_der` is the
untrusted-input parser and raises only :class:`~mstls.exceptions.CertificateError`.

*Pinned-key mode* (development) skips the chain and compares the SHA-256 of the leaf's
SubjectPublicKeyInfo with configured pins, given as 64 hex digits (any case, colons
allowed, optional ``sha256:`` prefix) or base64 of the 32-byte hash (optional
``sha256/`` prefix, as in HPKP).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import hashlib
import ipaddress
import os
import re
import ssl
import threading
import warnings
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from ..codes import AlertDescription
from ..exceptions import CertificateError, ConfigurationError
from .signatures import schemes_for_key

__all__ = [
    "CLIENT_CERTIFICATE_REQUIRED_MESSAGE",
    "EMPTY_SERVER_CERTIFICATE_MESSAGE",
    "MAX_CERTIFICATE_CHAIN_LENGTH",
    "MAX_CERTIFICATE_SIZE",
    "Password",
    "VerifiedPeer",
    "is_valid_dns_name",
    "load_cert_chain",
    "load_certificate_chain",
    "load_private_key",
    "load_roots",
    "load_system_roots",
    "normalize_pin",
    "parse_certificate_chain",
    "parse_certificate_der",
    "server_name_subject",
    "spki_sha256",
    "unverified_peer",
    "verify_client_chain",
    "verify_pinned",
    "verify_server_chain",
]

#: Most certificates we accept in one Certificate message (leaf + intermediates).
MAX_CERTIFICATE_CHAIN_LENGTH = 10
#: Largest single DER certificate we parse.
MAX_CERTIFICATE_SIZE = 64 * 1024
#: RFC 8446 §4.4.2.4: a server must send a certificate (the client answers decode_error).
EMPTY_SERVER_CERTIFICATE_MESSAGE = "the server sent no certificate"
#: RFC 8446 §4.4.2.4: the alert is certificate_required.
CLIENT_CERTIFICATE_REQUIRED_MESSAGE = "a client certificate is required but none was sent"
#: RFC 1035 §2.3.4 limits.
_MAX_DNS_NAME_LENGTH = 253
_MAX_DNS_LABEL_LENGTH = 63
_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)
_PIN_HEX_LENGTH = 64
_PIN_DIGEST_LENGTH = 32
#: Signature algorithms the WebPKI verifier refuses on certificates.
_UNACCEPTED_CERT_SIGNATURES = {
    SignatureAlgorithmOID.ED25519: "Ed25519",
    SignatureAlgorithmOID.ED448: "Ed448",
}
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"

Password = str | bytes | Callable[[], str | bytes] | None


@attrs.frozen
class VerifiedPeer:
    """The peer's identity after verification (or pin match).

    ``chain`` is the verified path, leaf first and the trusted root last (in pinned
    mode: the chain as presented).  ``ip_addresses`` are in ``ipaddress`` text form.
    """

    chain: tuple[x509.Certificate, ...]
    leaf: x509.Certificate
    public_key: CertificatePublicKeyTypes
    subject: str
    common_name: str | None
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    spki_sha256: str


# --- small helpers on certificates -------------------------------------------------------


def _utc(now: datetime.datetime) -> datetime.datetime:
    return now if now.tzinfo is not None else now.replace(tzinfo=datetime.UTC)


def _alt_names(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return [], []
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return san.get_values_for_type(x509.DNSName), ips


def _common_name(cert: x509.Certificate) -> str | None:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def _label(cert: x509.Certificate) -> str:
    """A short name for messages: first DNS name, first IP, CN, or the subject."""
    dns_names, ips = _alt_names(cert)
    return next(iter(dns_names + ips), None) or _common_name(cert) or _subject(cert)


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def _spki_der(cert: x509.Certificate) -> bytes:
    try:
        return cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise CertificateError(
            AlertDescription.unsupported_certificate,
            f"certificate for '{_label(cert)}' has an unsupported public key: {exc}",
        ) from None


def spki_sha256(cert: x509.Certificate) -> str:
    """Hex SHA-256 of the certificate's DER SubjectPublicKeyInfo (the pin value)."""
    return hashlib.sha256(_spki_der(cert)).hexdigest()


def _verified_peer(chain: Sequence[x509.Certificate]) -> VerifiedPeer:
    leaf = chain[0]
    dns_names, ips = _alt_names(leaf)
    return VerifiedPeer(
        chain=tuple(chain),
        leaf=leaf,
        public_key=leaf.public_key(),
        subject=_subject(leaf),
        common_name=_common_name(leaf),
        dns_names=tuple(dns_names),
        ip_addresses=tuple(ips),
        spki_sha256=spki_sha256(leaf),
    )


# --- parsing untrusted DER ---------------------------------------------------------------


def _force_parse(cert: x509.Certificate) -> None:
    """Touch the lazily parsed parts so malformed ones fail now, not in the verifier."""
    _ = (cert.subject, cert.issuer, cert.not_valid_before_utc, cert.not_valid_after_utc)
    _ = cert.extensions


def parse_certificate_der(der: bytes) -> x509.Certificate:
    """Parse one DER certificate from the peer (untrusted input).

    Raises only ``CertificateError(bad_certificate, "malformed certificate: …")``.
    """
    if len(der) > MAX_CERTIFICATE_SIZE:
        raise CertificateError(
            AlertDescription.bad_certificate,
            f"certificate is {len(der)} bytes; at most {MAX_CERTIFICATE_SIZE} are accepted",
        )
    try:
        cert = x509.load_der_x509_certificate(bytes(der))
        _force_parse(cert)
    except (
        ValueError,
        TypeError,
        x509.DuplicateExtension,
        x509.InvalidVersion,
        x509.UnsupportedGeneralNameType,
        UnsupportedAlgorithm,
    ) as exc:
        raise CertificateError(
            AlertDescription.bad_certificate, f"malformed certificate: {exc}"
        ) from None
    return cert


def _check_chain_length(count: int) -> None:
    if count > MAX_CERTIFICATE_CHAIN_LENGTH:
        raise CertificateError(
            AlertDescription.bad_certificate,
            f"certificate chain has {count} certificates; "
            f"at most {MAX_CERTIFICATE_CHAIN_LENGTH} are accepted",
        )


def parse_certificate_chain(ders: Sequence[bytes]) -> list[x509.Certificate]:
    """Parse the ``cert_data`` entries of a Certificate message (untrusted input)."""
    _check_chain_length(len(ders))
    return [parse_certificate_der(der) for der in ders]


# --- server names ------------------------------------------------------------------------


def is_valid_dns_name(name: str) -> bool:
    """Whether ``name`` is an ASCII host name (RFC 1035 §2.3.1 letters, digits, hyphens)."""
    name = name.lower()
    return 0 < len(name) <= _MAX_DNS_NAME_LENGTH and all(
        _DNS_LABEL.fullmatch(label) for label in name.split(".")
    )


def server_name_subject(server_name: str) -> x509.DNSName | x509.IPAddress:
    """The verifier's subject for ``server_name``: an IP literal or an A-label DNS name.

    A trailing dot is dropped and internationalized names are IDNA-encoded.  Call it
    when configuring a client so a bad name is a ``ConfigurationError`` up front.
    """
    try:
        return x509.IPAddress(ipaddress.ip_address(server_name))
    except ValueError:
        pass
    name = server_name.removesuffix(".")
    try:
        name = name.encode("idna").decode("ascii").lower()
    except UnicodeError:
        name = ""
    if not is_valid_dns_name(name):
        raise ConfigurationError(f"invalid server name {server_name!r}")
    return x509.DNSName(name)


def _name_matches(cert: x509.Certificate, subject: x509.DNSName | x509.IPAddress) -> bool:
    """RFC 6125 §6.4 matching, used only to explain a rejection."""
    dns_names, ips = _alt_names(cert)
    if isinstance(subject, x509.IPAddress):
        return str(subject.value) in ips
    wanted = subject.value.lower()
    _, _, parent = wanted.partition(".")
    return any(
        pattern.lower() == wanted or (pattern.startswith("*.") and pattern[2:].lower() == parent)
        for pattern in dns_names
    )


# --- diagnosis of a rejected chain -------------------------------------------------------


def _validity_problem(
    cert: x509.Certificate, now: datetime.datetime, role: str | None
) -> CertificateError | None:
    """Expired or not yet valid; ``role`` names a non-leaf certificate."""
    who = "certificate" if role is None else f"{role} '{_common_name(cert) or _subject(cert)}'"
    if now > cert.not_valid_after_utc:
        when = cert.not_valid_after_utc.strftime(_TIME_FORMAT)
        what = "certificate expired" if role is None else f"{who} expired"
        return CertificateError(AlertDescription.certificate_expired, f"{what} on {when}")
    if now < cert.not_valid_before_utc:
        when = cert.not_valid_before_utc.strftime(_TIME_FORMAT)
        return CertificateError(AlertDescription.bad_certificate, f"{who} not valid before {when}")
    return None


def _name_problem(
    cert: x509.Certificate, subject: x509.DNSName | x509.IPAddress | None
) -> CertificateError | None:
    if subject is None or _name_matches(cert, subject):
        return None
    dns_names, ips = _alt_names(cert)
    wanted = str(subject.value)
    if not dns_names and not ips:
        reason = f"certificate '{_subject(cert)}' has no subjectAltName to match '{wanted}'"
    else:
        names = ", ".join(dns_names + ips)
        reason = f"certificate for '{names}' does not match '{wanted}'"
    return CertificateError(AlertDescription.bad_certificate, reason)


_EKU_PURPOSE = {
    ExtendedKeyUsageOID.SERVER_AUTH: "TLS server authentication",
    ExtendedKeyUsageOID.CLIENT_AUTH: "TLS client authentication",
}


def _eku_problem(
    cert: x509.Certificate, required: x509.ObjectIdentifier
) -> CertificateError | None:
    try:
        usages = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except (x509.ExtensionNotFound, ValueError):
        return None
    if required in usages:
        return None
    allowed = ", ".join(getattr(oid, "_name", oid.dotted_string) for oid in usages) or "none"
    return CertificateError(
        AlertDescription.unsupported_certificate,
        f"certificate for '{_label(cert)}' is not valid for {_EKU_PURPOSE[required]} "
        f"(extended key usage: {allowed})",
    )


def _find_issuer(
    cert: x509.Certificate, candidates: Iterable[x509.Certificate]
) -> x509.Certificate | None:
    for candidate in candidates:
        if candidate.subject != cert.issuer or candidate == cert:
            continue
        try:
            cert.verify_directly_issued_by(candidate)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue
        return candidate
    return None


def _path_problem(
    chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate], now: datetime.datetime
) -> CertificateError | None:
    """Walk issuer links from the leaf; report an expired link or a missing root."""
    current = chain[0]
    pool = list(chain[1:])
    for _ in range(len(chain)):
        if current in roots:
            return None
        root = _find_issuer(current, roots)
        if root is not None:
            return _validity_problem(root, now, "trusted root")
        issuer = _find_issuer(current, pool)
        if issuer is None:
            return CertificateError(AlertDescription.unknown_ca, _unknown_ca(chain[0], current))
        problem = _validity_problem(issuer, now, "CA certificate")
        if problem is not None:
            return problem
        pool.remove(issuer)
        current = issuer
    return None


def _unknown_ca(leaf: x509.Certificate, top: x509.Certificate) -> str:
    issuer = top.issuer.rfc4514_string()
    if top is leaf:
        return (
            f"unknown CA: certificate for '{_label(leaf)}' was issued by '{issuer}', "
            "which is not a trusted root"
        )
    return (
        f"unknown CA: the chain for '{_label(leaf)}' ends at '{_subject(top)}', "
        f"issued by '{issuer}', which is not a trusted root"
    )


def _signature_problem(chain: Sequence[x509.Certificate]) -> CertificateError | None:
    for cert in chain:
        name = _UNACCEPTED_CERT_SIGNATURES.get(cert.signature_algorithm_oid)
        if name is not None:
            return CertificateError(
                AlertDescription.unsupported_certificate,
                f"certificate '{_subject(cert)}' is signed with {name}, which "
                "certificate verification does not accept (CA/Browser Forum profile)",
            )
    return None


def _diagnose(
    chain: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: datetime.datetime,
    error: VerificationError,
    *,
    subject: x509.DNSName | x509.IPAddress | None,
    required_eku: x509.ObjectIdentifier,
) -> CertificateError:
    """Explain why the verifier rejected ``chain``: the first finding in table order."""
    leaf = chain[0]
    findings: tuple[Callable[[], CertificateError | None], ...] = (
        lambda: _validity_problem(leaf, now, None),
        lambda: _name_problem(leaf, subject),
        lambda: _eku_problem(leaf, required_eku),
        lambda: _path_problem(chain, roots, now),
        lambda: _signature_problem(chain),
    )
    for finding in findings:
        problem = finding()
        if problem is not None:
            return problem
    detail = str(error).removeprefix("validation failed: ")
    return CertificateError(
        AlertDescription.bad_certificate,
        f"certificate for '{_label(leaf)}' rejected: {detail}",
    )


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
    _check_chain_length(len(chain))


def verify_server_chain(
    chain: Sequence[x509.Certificate],
    server_name: str,
    roots: Sequence[x509.Certificate],
    now: datetime.datetime,
) -> VerifiedPeer:
    """Verify a server's chain (leaf first) for ``server_name`` (RFC 8446 §4.4.2.4).

    Raises :class:`CertificateError` with the alert and message of the module table;
    an empty chain is ``decode_error``.  ``server_name`` should have been checked with
    :func:`server_name_subject` at configuration time (here it is ``internal_error``).
    """
    _check_presented(chain, AlertDescription.decode_error, EMPTY_SERVER_CERTIFICATE_MESSAGE)
    try:
        subject = server_name_subject(server_name)
    except ConfigurationError as exc:
        raise CertificateError(AlertDescription.internal_error, str(exc)) from None
    now = _utc(now)
    verifier = _policy(roots, now).build_server_verifier(subject)
    try:
        path = verifier.verify(chain[0], list(chain[1:]))
    except VerificationError as exc:
        raise _diagnose(
            chain, roots, now, exc, subject=subject, required_eku=ExtendedKeyUsageOID.SERVER_AUTH
        ) from None
    return _verified_peer(path)


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
    now = _utc(now)
    verifier = _policy(roots, now).build_client_verifier()
    try:
        verified = verifier.verify(chain[0], list(chain[1:]))
    except VerificationError as exc:
        raise _diagnose(
            chain, roots, now, exc, subject=None, required_eku=ExtendedKeyUsageOID.CLIENT_AUTH
        ) from None
    return _verified_peer(verified.chain)


def unverified_peer(chain: Sequence[x509.Certificate]) -> VerifiedPeer:
    """The identity of a chain accepted *without* verification (``verify_peer=False``).

    Only the presence and length of the chain are checked.
    """
    _check_presented(chain, AlertDescription.bad_certificate, "the peer sent no certificate")
    return _verified_peer(chain)


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
        problem = _validity_problem(chain[0], _utc(now), None)
        if problem is not None:
            raise problem
    return _verified_peer(chain)


# --- loading files -----------------------------------------------------------------------


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None


def _split_der(data: bytes) -> list[bytes]:
    """Split concatenated DER certificates (SEQUENCEs with definite lengths)."""
    items: list[bytes] = []
    pos = 0
    while pos < len(data):
        if data[pos] != 0x30 or pos + 2 > len(data):
            raise ValueError("neither PEM nor DER (expected a SEQUENCE)")
        first = data[pos + 1]
        header = 2
        length = first
        if first & 0x80:
            count = first & 0x7F
            if not 1 <= count <= 4:
                raise ValueError("not DER: bad length")
            length = int.from_bytes(data[pos + 2 : pos + 2 + count], "big")
            header += count
        end = pos + header + length
        if end > len(data):
            raise ValueError("not DER: truncated")
        items.append(data[pos:end])
        pos = end
    return items


def _certificates_from(data: bytes, source: str) -> list[x509.Certificate]:
    """Every certificate in PEM (or concatenated DER) ``data``; strict."""
    blocks = _PEM_CERTIFICATE.findall(data)
    try:
        if blocks:
            return [x509.load_pem_x509_certificate(block) for block in blocks]
        if b"-----BEGIN" in data:
            raise ConfigurationError(f"{source}: no PEM CERTIFICATE block found")
        return [x509.load_der_x509_certificate(der) for der in _split_der(data)]
    except ValueError as exc:
        raise ConfigurationError(f"{source}: malformed certificate: {exc}") from None


def load_certificate_chain(certfile: str | os.PathLike[str]) -> list[x509.Certificate]:
    """Certificates from a PEM file, leaf first (DER is accepted too)."""
    chain = _certificates_from(_read(certfile, "certificate file"), str(certfile))
    if not chain:
        raise ConfigurationError(f"{certfile}: no certificate found")
    return chain


def _password_bytes(password: Password) -> bytes | None:
    if callable(password):
        password = password()
    return password.encode() if isinstance(password, str) else password


def load_private_key(keyfile: str | os.PathLike[str], password: Password = None) -> PrivateKeyTypes:
    """A private key from a PEM (or DER) file, decrypted with ``password`` if given."""
    data = _read(keyfile, "private key file")
    secret = _password_bytes(password)
    if b"-----BEGIN" in data and b"PRIVATE KEY-----" not in data:
        raise ConfigurationError(f"{keyfile}: no PEM PRIVATE KEY block found")
    try:
        if b"-----BEGIN" in data:
            return serialization.load_pem_private_key(data, secret)
        return serialization.load_der_private_key(data, secret)
    except TypeError:
        if secret is None:
            problem = "the private key is encrypted and no password was given"
        else:
            problem = "a password was given but the private key is not encrypted"
    except ValueError as exc:
        problem = f"cannot load the private key (wrong password or malformed key): {exc}"
    except UnsupportedAlgorithm as exc:
        problem = f"unsupported private key type: {exc}"
    raise ConfigurationError(f"{keyfile}: {problem}")


def load_cert_chain(
    certfile: str | os.PathLike[str],
    keyfile: str | os.PathLike[str] | None = None,
    password: Password = None,
) -> tuple[list[x509.Certificate], PrivateKeyTypes]:
    """Our certificate chain and its key, checked to match and to fit a TLS 1.3 scheme.

    As ``ssl.SSLContext.load_cert_chain``: without ``keyfile`` the key is read from
    ``certfile``.
    """
    chain = load_certificate_chain(certfile)
    key_path = certfile if keyfile is None else keyfile
    key = load_private_key(key_path, password)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    key_spki = key.public_key().public_bytes(serialization.Encoding.DER, spki)
    try:
        cert_spki = chain[0].public_key().public_bytes(serialization.Encoding.DER, spki)
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise ConfigurationError(f"{certfile}: unsupported public key: {exc}") from None
    if key_spki != cert_spki:
        raise ConfigurationError(
            f"{key_path}: the private key does not match the certificate in {certfile}"
        )
    if not schemes_for_key(key):
        raise ConfigurationError(
            f"{key_path}: this key type cannot sign TLS 1.3 handshakes here; "
            "use an Ed25519, ECDSA P-256 or RSA key"
        )
    return chain, key


def _tolerant_certificates(data: bytes) -> list[x509.Certificate]:
    """Every parsable PEM certificate in ``data``; bad entries are skipped."""
    certs = []
    with warnings.catch_warnings():
        # Some system roots have negative serial numbers: cryptography warns, we keep them.
        warnings.simplefilter("ignore")
        for block in _PEM_CERTIFICATE.findall(data):
            try:
                certs.append(x509.load_pem_x509_certificate(block))
            except ValueError:
                continue
    return certs


def _read_quietly(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


@functools.cache
def load_system_roots() -> tuple[x509.Certificate, ...]:
    """The operating system's trusted roots (read once per process).

    From ``ssl.get_default_verify_paths()``: its CA file and every file in its CA
    directory (this honours ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``).  Unreadable or
    unparsable entries are skipped; duplicates are removed.
    """
    paths = ssl.get_default_verify_paths()
    data: list[bytes] = []
    if paths.cafile:
        data.append(_read_quietly(Path(paths.cafile)))
    if paths.capath and os.path.isdir(paths.capath):
        data.extend(_read_quietly(entry) for entry in sorted(Path(paths.capath).iterdir()))
    unique: dict[bytes, x509.Certificate] = {}
    for chunk in data:
        for cert in _tolerant_certificates(chunk):
            unique.setdefault(cert.fingerprint(hashes.SHA256()), cert)
    return tuple(unique.values())


def load_roots(
    cafile: str | os.PathLike[str] | None = None,
    cadata: str | bytes | None = None,
    use_system: bool = True,
) -> list[x509.Certificate]:
    """Trusted roots: ``cafile`` (PEM), ``cadata`` (PEM text, or PEM/DER bytes as in
    ``ssl.SSLContext.load_verify_locations``) and, if ``use_system``, the system store.
    """
    roots: list[x509.Certificate] = []
    if cafile is not None:
        roots += load_certificate_chain(cafile)
    if cadata is not None:
        raw = cadata.encode("ascii", "replace") if isinstance(cadata, str) else bytes(cadata)
        loaded = _certificates_from(raw, "cadata")
        if not loaded:
            raise ConfigurationError("cadata: no certificate found")
        roots += loaded
    if use_system:
        roots += load_system_roots()
    return roots
