"""Reading X.509 certificates: parsing the peer's DER and the fields we report.

Peer certificates arrive as DER from the network: :func:`parse_certificate_der` is the
untrusted-input parser and raises only :class:`~mstls.exceptions.CertificateError`.
It parses every lazily decoded part up front, so a malformed certificate fails here
with ``bad_certificate`` rather than later inside the verifier.  The other helpers
read names and keys for identities and error messages.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from ..codes import AlertDescription
from ..exceptions import CertificateError

__all__ = [
    "MAX_CERTIFICATE_CHAIN_LENGTH",
    "MAX_CERTIFICATE_SIZE",
    "alt_names",
    "as_utc",
    "cert_label",
    "check_chain_length",
    "common_name",
    "parse_certificate_chain",
    "parse_certificate_der",
    "spki_sha256",
    "subject_text",
]

#: Most certificates we accept in one Certificate message (leaf + intermediates).
MAX_CERTIFICATE_CHAIN_LENGTH = 10
#: Largest single DER certificate we parse.
MAX_CERTIFICATE_SIZE = 64 * 1024


# --- fields ---------------------------------------------------------------------------


def as_utc(now: datetime.datetime) -> datetime.datetime:
    """``now`` as an aware datetime; a naive one is taken to be UTC."""
    return now if now.tzinfo is not None else now.replace(tzinfo=datetime.UTC)


def alt_names(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """The subjectAltName DNS names and IP addresses (text); empty without the extension."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return [], []
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return san.get_values_for_type(x509.DNSName), ips


def common_name(cert: x509.Certificate) -> str | None:
    """The subject's first common name, if any (reported only, never matched)."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def cert_label(cert: x509.Certificate) -> str:
    """A short name for messages: first DNS name, first IP, CN, or the subject."""
    dns_names, ips = alt_names(cert)
    return next(iter(dns_names + ips), None) or common_name(cert) or subject_text(cert)


def subject_text(cert: x509.Certificate) -> str:
    """The subject as an RFC 4514 string, for messages and peer identities."""
    return cert.subject.rfc4514_string() or "(empty subject)"


def _spki_der(cert: x509.Certificate) -> bytes:
    try:
        return cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise CertificateError(
            AlertDescription.unsupported_certificate,
            f"certificate for '{cert_label(cert)}' has an unsupported public key: {exc}",
        ) from None


def spki_sha256(cert: x509.Certificate) -> str:
    """Hex SHA-256 of the certificate's DER SubjectPublicKeyInfo (the pin value)."""
    return hashlib.sha256(_spki_der(cert)).hexdigest()


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


def check_chain_length(count: int) -> None:
    """Refuse a chain of more than :data:`MAX_CERTIFICATE_CHAIN_LENGTH` certificates."""
    if count > MAX_CERTIFICATE_CHAIN_LENGTH:
        raise CertificateError(
            AlertDescription.bad_certificate,
            f"certificate chain has {count} certificates; "
            f"at most {MAX_CERTIFICATE_CHAIN_LENGTH} are accepted",
        )


def parse_certificate_chain(ders: Sequence[bytes]) -> list[x509.Certificate]:
    """Parse the ``cert_data`` entries of a Certificate message (untrusted input)."""
    check_chain_length(len(ders))
    return [parse_certificate_der(der) for der in ders]
