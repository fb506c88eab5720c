"""Certificates: loading, chain verification with clear errors, and pinned keys.

This module is the public face of certificate handling; the work is done in modules
of one concern each, all re-exported here:

* :mod:`mstls.tls.cert_files` — *loading* (configuration time): PEM/DER certificate
  chains, private keys, trusted roots and the system trust store, with a
  :class:`~mstls.exceptions.ConfigurationError` naming the file and the problem;
* :mod:`mstls.tls.x509_fields` — parsing the peer's DER (untrusted input, raises only
  :class:`~mstls.exceptions.CertificateError`), size limits, and the fields we report;
* :mod:`mstls.tls.peer_identity` — :class:`VerifiedPeer` and server-name checks;
* :mod:`mstls.tls.chain_verification` — *verification* (handshake time) by
  ``cryptography.x509.verification`` in WebPKI mode, pinned-key mode (SHA-256 of the
  leaf's SubjectPublicKeyInfo) or unverified mode;
* :mod:`mstls.tls.chain_diagnosis` — when the verifier rejects a chain, one exact
  message and the right alert (RFC 8446 §6.2), from a table of findings.
"""

from __future__ import annotations

from .cert_files import (
    Password,
    load_cert_chain,
    load_certificate_chain,
    load_private_key,
    load_roots,
    load_system_roots,
)
from .chain_verification import (
    CLIENT_CERTIFICATE_REQUIRED_MESSAGE,
    EMPTY_SERVER_CERTIFICATE_MESSAGE,
    normalize_pin,
    unverified_peer,
    verify_client_chain,
    verify_pinned,
    verify_server_chain,
)
from .peer_identity import VerifiedPeer, is_valid_dns_name, server_name_subject
from .x509_fields import (
    MAX_CERTIFICATE_CHAIN_LENGTH,
    MAX_CERTIFICATE_SIZE,
    parse_certificate_chain,
    parse_certificate_der,
    spki_sha256,
)

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
