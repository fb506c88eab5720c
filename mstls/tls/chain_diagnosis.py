"""Diagnosis of a certificate chain the verifier rejected (RFC 8446 §6.2).

Theory of operation
-------------------
``cryptography.x509.verification`` alone decides whether a chain is accepted
(:mod:`mstls.tls.chain_verification`).  Its error messages are coarse ("candidates
exhausted"), so when it rejects a chain :func:`diagnose` examines the chain itself,
in a fixed order, to give one exact message and the right alert:

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

The checks here never accept anything: at worst they fall through to the last row.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID
from cryptography.x509.verification import VerificationError

from ..codes import AlertDescription
from ..exceptions import CertificateError
from .peer_identity import name_matches
from .x509_fields import alt_names, cert_label, common_name, subject_text

__all__ = ["diagnose", "validity_problem"]

#: Signature algorithms the WebPKI verifier refuses on certificates.
_UNACCEPTED_CERT_SIGNATURES = {
    SignatureAlgorithmOID.ED25519: "Ed25519",
    SignatureAlgorithmOID.ED448: "Ed448",
}
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"


def validity_problem(
    cert: x509.Certificate, now: datetime.datetime, role: str | None
) -> CertificateError | None:
    """Expired or not yet valid; ``role`` names a non-leaf certificate."""
    who = "certificate" if role is None else f"{role} '{common_name(cert) or subject_text(cert)}'"
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
    if subject is None or name_matches(cert, subject):
        return None
    dns_names, ips = alt_names(cert)
    wanted = str(subject.value)
    if not dns_names and not ips:
        reason = f"certificate '{subject_text(cert)}' has no subjectAltName to match '{wanted}'"
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
        f"certificate for '{cert_label(cert)}' is not valid for {_EKU_PURPOSE[required]} "
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
            return validity_problem(root, now, "trusted root")
        issuer = _find_issuer(current, pool)
        if issuer is None:
            return CertificateError(AlertDescription.unknown_ca, _unknown_ca(chain[0], current))
        problem = validity_problem(issuer, now, "CA certificate")
        if problem is not None:
            return problem
        pool.remove(issuer)
        current = issuer
    return None


def _unknown_ca(leaf: x509.Certificate, top: x509.Certificate) -> str:
    issuer = top.issuer.rfc4514_string()
    if top is leaf:
        return (
            f"unknown CA: certificate for '{cert_label(leaf)}' was issued by '{issuer}', "
            "which is not a trusted root"
        )
    return (
        f"unknown CA: the chain for '{cert_label(leaf)}' ends at '{subject_text(top)}', "
        f"issued by '{issuer}', which is not a trusted root"
    )


def _signature_problem(chain: Sequence[x509.Certificate]) -> CertificateError | None:
    for cert in chain:
        name = _UNACCEPTED_CERT_SIGNATURES.get(cert.signature_algorithm_oid)
        if name is not None:
            return CertificateError(
                AlertDescription.unsupported_certificate,
                f"certificate '{subject_text(cert)}' is signed with {name}, which "
                "certificate verification does not accept (CA/Browser Forum profile)",
            )
    return None


def diagnose(
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
        lambda: validity_problem(leaf, now, None),
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
        f"certificate for '{cert_label(leaf)}' rejected: {detail}",
    )
