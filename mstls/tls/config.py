"""Configuration of one side of the TLS 1.3 handshake.

This is the engine's own configuration, made of loaded objects (certificates,
keys, roots).  The public ``mstls.ClientConfig``/``ServerConfig`` built on top
of it accept file names and turn them into a :class:`TLSConfig`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import datetime

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from .anti_replay import StrikeRegister
from .cipher_suites import SUPPORTED_CIPHER_SUITES, CipherSuite
from .groups import SUPPORTED_GROUPS, NamedGroup
from .messages import MAX_HANDSHAKE_MESSAGE_SIZE
from .signatures import SUPPORTED_SIGNATURE_SCHEMES, SignatureScheme
from .ticket_store import TicketStore
from .tickets import DEFAULT_TICKET_LIFETIME, TicketKeyRing

__all__ = ["DEFAULT_KEY_SHARE_GROUPS", "DEFAULT_SESSION_TICKETS", "TLSConfig"]

#: Shares a client sends in its first ClientHello: the hybrid post-quantum
#: group first, plus x25519 so that a classical-only server needs no
#: HelloRetryRequest (RFC 8446 §4.2.8).
DEFAULT_KEY_SHARE_GROUPS: tuple[NamedGroup, ...] = (NamedGroup.X25519MLKEM768, NamedGroup.x25519)

#: NewSessionTickets a resumption-enabled server sends after each handshake.
DEFAULT_SESSION_TICKETS = 2


@attrs.define
class TLSConfig:
    """Everything the handshake needs to know about our side.

    ``trusted_roots=None`` means the system store.  ``verify_peer=False`` on a
    client accepts any server certificate (the CertificateVerify signature is
    still checked); ``pinned_sha256`` replaces chain verification by a match of
    the SubjectPublicKeyInfo's SHA-256 (development mode).

    Resumption (RFC 8446 §2.2): a client with a ``ticket_store`` keeps the
    tickets it receives and offers one; a server with ``ticket_keys`` sends
    ``session_tickets`` tickets of ``ticket_lifetime`` seconds and accepts them.

    0-RTT (RFC 8446 §2.3; over QUIC RFC 9001 §4.6, tickets say 0xffffffff): a client with
    ``early_data`` offers it with tickets that allow it; a server with
    ``max_early_data`` > 0 and a ``strike_register`` issues such tickets and
    accepts early data once per ticket.  ``early_data_context`` is opaque to TLS:
    tickets seal a digest of it, and 0-RTT under a ticket sealed with another
    value is rejected, the PSK still resumed (RFC 8446 §4.2.10, RFC 9001 §4.6.2);
    the transport adds the limits it remembers (:mod:`mstls.tls.early_data`).
    """

    alpn_protocols: Sequence[str] = ()
    server_name: str | None = None
    certificate_chain: Sequence[x509.Certificate] = ()
    private_key: PrivateKeyTypes | None = None
    verify_peer: bool = True
    trusted_roots: Sequence[x509.Certificate] | None = None
    pinned_sha256: Sequence[str] | None = None
    request_client_certificate: bool = False
    require_client_certificate: bool = False
    cipher_suites: Sequence[CipherSuite] = SUPPORTED_CIPHER_SUITES
    groups: Sequence[NamedGroup] = SUPPORTED_GROUPS
    key_share_groups: Sequence[NamedGroup] | None = None
    signature_schemes: Sequence[SignatureScheme] = SUPPORTED_SIGNATURE_SCHEMES
    require_alpn: bool = True
    keylog: str | os.PathLike[str] | Callable[[str], None] | None = None
    verify_time: datetime | None = None
    max_handshake_message_size: int = MAX_HANDSHAKE_MESSAGE_SIZE
    ticket_store: TicketStore | None = None
    ticket_keys: TicketKeyRing | None = None
    session_tickets: int = DEFAULT_SESSION_TICKETS
    ticket_lifetime: int = DEFAULT_TICKET_LIFETIME
    early_data: bool = False
    max_early_data: int = 0
    strike_register: StrikeRegister | None = None
    early_data_context: bytes = b""

    def initial_share_groups(self) -> list[NamedGroup]:
        """Groups for which a client sends key shares in its first ClientHello."""
        wanted = self.key_share_groups
        if wanted is None:
            wanted = [g for g in DEFAULT_KEY_SHARE_GROUPS if g in self.groups] or list(
                self.groups[:1]
            )
        return [g for g in wanted if g in self.groups]
