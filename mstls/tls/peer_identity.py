"""The peer's identity: what verification returns, and server-name matching.

:class:`VerifiedPeer` is what a handshake reports about the peer once its chain is
verified (or its key pinned).  Server names are checked when a client is configured
(:func:`server_name_subject`: an IP literal or an A-label DNS name, RFC 1035 §2.3.1);
:func:`name_matches` repeats the RFC 6125 §6.4 match (no common-name fallback) only to
explain a rejection, since the verifier alone decides.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from ..exceptions import ConfigurationError
from .x509_fields import alt_names, common_name, spki_sha256, subject_text

__all__ = [
    "VerifiedPeer",
    "is_valid_dns_name",
    "name_matches",
    "server_name_subject",
    "verified_peer",
]

#: RFC 1035 §2.3.4 limits.
_MAX_DNS_NAME_LENGTH = 253
_MAX_DNS_LABEL_LENGTH = 63
_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


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


def verified_peer(chain: Sequence[x509.Certificate]) -> VerifiedPeer:
    """The :class:`VerifiedPeer` of ``chain`` (leaf first)."""
    leaf = chain[0]
    dns_names, ips = alt_names(leaf)
    return VerifiedPeer(
        chain=tuple(chain),
        leaf=leaf,
        public_key=leaf.public_key(),
        subject=subject_text(leaf),
        common_name=common_name(leaf),
        dns_names=tuple(dns_names),
        ip_addresses=tuple(ips),
        spki_sha256=spki_sha256(leaf),
    )


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


def name_matches(cert: x509.Certificate, subject: x509.DNSName | x509.IPAddress) -> bool:
    """RFC 6125 §6.4 matching, used only to explain a rejection."""
    dns_names, ips = alt_names(cert)
    if isinstance(subject, x509.IPAddress):
        return str(subject.value) in ips
    wanted = subject.value.lower()
    _, _, parent = wanted.partition(".")
    return any(
        pattern.lower() == wanted or (pattern.startswith("*.") and pattern[2:].lower() == parent)
        for pattern in dns_names
    )
