"""Client identities and the per-service allow-lists.

A client's identity is what mutual TLS verified: the certificate's subject, its
common name, its DNS and IP subjectAltNames and the SHA-256 of its public key
(``VerifiedPeer`` from :attr:`mstls.trio.Connection.peer_certificate`).  A
client without a certificate has no identity.

Allow-list entries (``allow = [...]`` of a service), one rule each:

==========================  =================================================
``"*"``                     any client that presented a verified certificate
``"cn:NAME"``               the subject's common name is NAME
``"dns:NAME"``              NAME is one of the DNS subjectAltNames
``"ip:ADDRESS"``            ADDRESS is one of the IP subjectAltNames
``"subject:RFC4514"``       the whole subject, as RFC 4514 text (``CN=x,O=y``)
``"spki-sha256:HEX"``       the public key's SHA-256 (a pinned key), hex with
                            or without colons
``"NAME"`` (no prefix)      NAME is the common name or a DNS subjectAltName
==========================  =================================================

How names compare (decided for issue 13):

* Names ignore case everywhere: ``cn:``, ``dns:`` and bare names alike
  (commonName's matching rule is caseIgnoreMatch, RFC 4519 §2.3; DNS names are
  case-insensitive, RFC 4343).
* ``subject:`` compares distinguished names, not strings: the entry is parsed
  as RFC 4514 text when the configuration loads (a bad one is a configuration
  error), spaces around ``,`` ``+`` ``=`` and the case of attribute types are
  allowed (``CN=alice, O=Example`` works), and attribute values compare as
  caseIgnoreMatch does: without case, with runs of spaces collapsed (RFC 4518
  §2.6.1).  The order of the RDNs counts, as in RFC 4517 distinguishedNameMatch.
* A client certificate must carry a subjectAltName: the library verifies client
  chains with cryptography's client policy, which (as the Web PKI profile)
  rejects a leaf without one, before any rule is looked at.  ``cn:NAME``
  matches the common name of such a certificate; a certificate with only a CN
  fails the handshake (logged as ``handshake failed (certificate)``).
  ``mstls certs`` makes client certificates with a DNS subjectAltName.

A service without ``allow`` accepts every client, with or without a
certificate.  A service with ``allow = []`` accepts nobody.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from cryptography import x509

__all__ = ["AllowList", "Peer", "RuleError", "parse_dn", "parse_rule"]

#: Length of a SHA-256 written as hex.
_SHA256_HEX = 64


class RuleError(ValueError):
    """An allow-list entry that cannot be parsed."""


@attrs.frozen
class Peer:
    """Who is on the other end of a stream: what the python handlers receive.

    ``certificate`` is the library's ``VerifiedPeer`` (or None); the other
    fields are copied from it for convenience.  ``address`` follows the
    connection when ``current_address`` reads it (a QUIC peer may move, RFC 9000 §9).
    """

    _address: Any = attrs.field(alias="address")
    transport: str
    connection_id: str
    certificate: Any = None
    current_address: Callable[[], Any] | None = attrs.field(default=None, eq=False)

    @property
    def address(self) -> Any:
        """The peer's current address (the connection-time one without ``current_address``)."""
        return self._address if self.current_address is None else self.current_address()

    @property
    def authenticated(self) -> bool:
        return self.certificate is not None

    @property
    def subject(self) -> str | None:
        return self.certificate.subject if self.certificate is not None else None

    @property
    def common_name(self) -> str | None:
        return self.certificate.common_name if self.certificate is not None else None

    @property
    def dns_names(self) -> tuple[str, ...]:
        return tuple(self.certificate.dns_names) if self.certificate is not None else ()

    @property
    def ip_addresses(self) -> tuple[str, ...]:
        return tuple(self.certificate.ip_addresses) if self.certificate is not None else ()

    @property
    def spki_sha256(self) -> str | None:
        return self.certificate.spki_sha256 if self.certificate is not None else None

    def describe(self) -> str:
        """A short label for logs: the subject, or ``anonymous``."""
        return self.subject or "anonymous"


Rule = Callable[[Peer], bool]


def _normalise_hex(text: str) -> str:
    value = text.replace(":", "").lower()
    if len(value) != _SHA256_HEX or any(c not in "0123456789abcdef" for c in value):
        raise RuleError(f"spki-sha256: expected 64 hex digits, got {text!r}")
    return value


def _ip_rule(text: str) -> Rule:
    try:
        wanted = ipaddress.ip_address(text)
    except ValueError:
        raise RuleError(f"ip: not an IP address: {text!r}") from None
    return lambda p: any(ipaddress.ip_address(a) == wanted for a in p.ip_addresses)


def _spki_rule(text: str) -> Rule:
    wanted = _normalise_hex(text)
    return lambda p: p.spki_sha256 is not None and _normalise_hex(p.spki_sha256) == wanted


def _name_rule(text: str) -> Rule:
    wanted = text.lower()
    return lambda p: (
        (p.common_name or "").lower() == wanted or wanted in (n.lower() for n in p.dns_names)
    )


#: RFC 4514 §3 special characters that separate RDNs, attributes, types and values.
_DN_SEPARATORS = ",+="

DNKey = tuple[tuple[tuple[str, str], ...], ...]


def _tidy_dn(text: str) -> str:
    """``text`` without the spaces around unescaped ``,`` ``+`` ``=``; types upper-cased."""
    parts: list[str] = []
    current = ""
    escaped = False
    for char in text:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            current += char
            escaped = True
        elif char in _DN_SEPARATORS:
            parts += [current, char]
            current = ""
        else:
            current += char
    parts.append(current)
    tidy = []
    for index, part in enumerate(parts):
        if part in _DN_SEPARATORS:
            tidy.append(part)
            continue
        kept = part.strip()
        if part.rstrip() != part and kept.endswith("\\"):
            kept += " "  # an escaped trailing space is part of the value
        is_type = index + 1 < len(parts) and parts[index + 1] == "="
        tidy.append(kept.upper() if is_type else kept)
    return "".join(tidy)


def _dn_key(name: x509.Name) -> DNKey:
    """RDNs in order; in each, (type OID, value without case, spaces collapsed), sorted."""
    return tuple(
        tuple(
            sorted(
                (attribute.oid.dotted_string, " ".join(str(attribute.value).split()).casefold())
                for attribute in rdn
            )
        )
        for rdn in name.rdns
    )


def parse_dn(text: str) -> DNKey:
    """The comparison key of RFC 4514 text (ValueError if it is not a distinguished name)."""
    return _dn_key(x509.Name.from_rfc4514_string(_tidy_dn(text)))


def _subject_rule(text: str) -> Rule:
    try:
        wanted = parse_dn(text)
    except ValueError:
        raise RuleError(f"subject: not an RFC 4514 distinguished name: {text!r}") from None

    def matches(p: Peer) -> bool:
        if p.subject is None:
            return False
        try:
            return parse_dn(p.subject) == wanted
        except ValueError:
            return False

    return matches


def _cn_rule(text: str) -> Rule:
    wanted = text.casefold()
    return lambda p: p.common_name is not None and p.common_name.casefold() == wanted


_PREFIXES: dict[str, Callable[[str], Rule]] = {
    "cn": _cn_rule,
    "dns": lambda v: lambda p: v.lower() in (n.lower() for n in p.dns_names),
    "ip": _ip_rule,
    "subject": _subject_rule,
    "spki-sha256": _spki_rule,
}


def parse_rule(entry: str) -> Rule:
    """One allow-list entry as a predicate on :class:`Peer` (raises :class:`RuleError`)."""
    if not isinstance(entry, str) or not entry.strip():
        raise RuleError(f"expected a non-empty string, got {entry!r}")
    if entry == "*":
        return lambda p: p.authenticated
    prefix, sep, value = entry.partition(":")
    if sep and prefix in _PREFIXES:
        if not value:
            raise RuleError(f"{entry!r}: nothing after {prefix + ':'!r}")
        return _PREFIXES[prefix](value)
    if sep:
        known = ", ".join(f"{p}:" for p in _PREFIXES)
        raise RuleError(f"{entry!r}: unknown prefix {prefix + ':'!r} (use {known} or '*')")
    return _name_rule(entry)


@attrs.frozen
class AllowList:
    """A service's allow-list; ``entries=None`` means no restriction."""

    entries: tuple[str, ...] | None
    _rules: tuple[Rule, ...] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        rules = tuple(parse_rule(e) for e in self.entries) if self.entries is not None else ()
        object.__setattr__(self, "_rules", rules)

    @classmethod
    def from_config(cls, entries: Sequence[str] | None) -> AllowList:
        return cls(None if entries is None else tuple(entries))

    def allows(self, peer: Peer) -> bool:
        """Whether ``peer`` may use the service."""
        if self.entries is None:
            return True
        return peer.authenticated and any(rule(peer) for rule in self._rules)
