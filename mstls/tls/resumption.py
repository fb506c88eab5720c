"""Session resumption decisions shared by the handshake roles (RFC 8446 §2.2, §4.2.11, §4.6.1).

Server: :func:`issue_tickets` makes the NewSessionTickets sent after the
handshake (stateless, sealed by the :class:`~mstls.tls.tickets.TicketKeyRing`);
:func:`choose_psk` decides whether an offered ticket is resumed.  It declines
-- and the handshake goes on as a full one -- for anything but a valid ticket
of ours issued for the same cipher-suite hash, server name, ALPN protocol and
transport, inside its lifetime and the ticket-age window.  Only the binder of
a ticket it would accept is checked; a wrong one aborts the handshake with
``decrypt_error`` (§4.2.11, §6.2).

Client: :func:`take_ticket` picks one stored ticket for this server (and
removes it: single use), :func:`stored_ticket` turns a received ticket into
what the store keeps.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Sequence

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ..codes import AlertDescription
from ..exceptions import CertificateError, HandshakeError
from .chain_verification import verify_pinned
from .cipher_suites import CipherSuite, suite_hash
from .config import TLSConfig
from .extensions import ExtensionType, parse_uint32
from .messages import NewSessionTicket
from .peer_identity import VerifiedPeer, verified_peer
from .psk import OfferedPsks, compute_binder, psk_from_ticket
from .ticket_store import StoredTicket, TicketKey
from .tickets import MAX_TICKET_LIFETIME, MAX_TICKET_PEER_CHAIN_BYTES, TicketContents
from .x509_fields import parse_certificate_der

__all__ = [
    "QUIC_MAX_EARLY_DATA",
    "TICKET_AGE_TOLERANCE_MS",
    "AcceptedPsk",
    "choose_psk",
    "early_data_limit",
    "issue_tickets",
    "peer_from_chain",
    "stored_ticket",
    "take_ticket",
    "ticket_key",
]

#: How far the client's view of a ticket's age may differ from ours (RFC 8446
#: §8.3: network delay plus clock-rate differences), in milliseconds.
TICKET_AGE_TOLERANCE_MS = 10_000
#: Largest ticket nonce counter: the nonce is one byte, unique per connection (§4.6.1).
MAX_TICKETS_PER_CONNECTION = 255


@attrs.frozen
class AcceptedPsk:
    """The ticket the server resumes: which identity, and what it holds."""

    index: int
    identity: bytes
    contents: TicketContents


def _chain_der(peer: VerifiedPeer | None) -> tuple[bytes, ...]:
    if peer is None:
        return ()
    chain = tuple(c.public_bytes(Encoding.DER) for c in peer.chain)
    return chain if sum(map(len, chain)) <= MAX_TICKET_PEER_CHAIN_BYTES else ()


def peer_from_chain(chain: Sequence[bytes]) -> VerifiedPeer | None:
    """The peer identity remembered with a ticket (verified when it was issued)."""
    if not chain:
        return None
    certs: list[x509.Certificate] = [parse_certificate_der(der) for der in chain]
    return verified_peer(certs)


# -- server -----------------------------------------------------------------------------
#: The max_early_data_size of a QUIC ticket that allows 0-RTT (RFC 9001 §4.6.1).
QUIC_MAX_EARLY_DATA = 0xFFFFFFFF


def early_data_limit(config: TLSConfig, *, quic: bool) -> int:
    """The max_early_data_size our tickets carry: 0 without 0-RTT (no strike
    register or ``max_early_data`` 0); over QUIC the sentinel 0xffffffff, QUIC's
    own flow control limiting 0-RTT data (RFC 9001 §4.6.1)."""
    if config.strike_register is None or config.max_early_data <= 0:
        return 0
    return QUIC_MAX_EARLY_DATA if quic else config.max_early_data


def issue_tickets(
    config: TLSConfig,
    suite: CipherSuite,
    resumption_secret: bytes,
    *,
    alpn: str | None,
    server_name: str | None,
    peer: VerifiedPeer | None,
    quic: bool,
    now_ms: int,
    early_context: bytes = b"",
) -> list[NewSessionTicket]:
    """The NewSessionTickets to send after a handshake (none without ticket keys);
    ``early_context`` is the sealed :class:`~mstls.tls.early_data.EarlyDataContext`."""
    ring = config.ticket_keys
    count = min(config.session_tickets, MAX_TICKETS_PER_CONNECTION)
    if ring is None or count <= 0:
        return []
    lifetime = max(1, min(config.ticket_lifetime, MAX_TICKET_LIFETIME))
    algorithm = suite_hash(suite)
    early = early_data_limit(config, quic=quic)
    chain = _chain_der(peer)
    if peer is not None and not chain:
        return []  # a client identity too large to carry: no resumption for it
    tickets = []
    for counter in range(count):
        nonce = bytes((counter,))
        age_add = int.from_bytes(os.urandom(4), "big")
        contents = TicketContents(
            cipher_suite=suite,
            psk=psk_from_ticket(algorithm, resumption_secret, nonce),
            alpn_protocol=alpn,
            server_name=server_name,
            issued_ms=now_ms,
            age_add=age_add,
            lifetime=lifetime,
            max_early_data=early,
            quic=quic,
            peer_chain=chain,
            early_context=early_context if early else b"",
        )
        extensions: dict[int, bytes] = (
            {ExtensionType.early_data: early.to_bytes(4, "big")} if early else {}
        )
        tickets.append(NewSessionTicket(lifetime, age_add, nonce, ring.seal(contents), extensions))
    return tickets


def _usable(
    config: TLSConfig,
    contents: TicketContents,
    obfuscated_age: int,
    *,
    suite: CipherSuite,
    alpn: str | None,
    server_name: str | None,
    quic: bool,
    now_ms: int,
) -> bool:
    """Whether a ticket of ours may resume this handshake (RFC 8446 §4.2.11, §4.6.1, §8.3)."""
    age_ms = now_ms - contents.issued_ms
    client_age = (obfuscated_age - contents.age_add) % (1 << 32)
    return (
        suite_hash(contents.cipher_suite).name == suite_hash(suite).name
        and contents.alpn_protocol == alpn
        and contents.server_name == server_name
        and contents.quic == quic
        and -TICKET_AGE_TOLERANCE_MS <= age_ms < contents.lifetime * 1000
        and abs(client_age - age_ms) <= TICKET_AGE_TOLERANCE_MS
        and (bool(contents.peer_chain) or not config.require_client_certificate)
        and _pins_still_match(config, contents.peer_chain)
    )


def _pins_still_match(config: TLSConfig, chain: Sequence[bytes]) -> bool:
    """With pinned client keys, a remembered client must still have a pinned key."""
    if not config.pinned_sha256 or not chain:
        return True
    try:
        verify_pinned([parse_certificate_der(der) for der in chain], config.pinned_sha256)
    except CertificateError:
        return False
    return True


def choose_psk(
    config: TLSConfig,
    offered: OfferedPsks,
    binder_transcript_hash: bytes,
    *,
    suite: CipherSuite,
    alpn: str | None,
    server_name: str | None,
    quic: bool,
    now_ms: int,
) -> AcceptedPsk | None:
    """The first offered ticket we resume, its binder checked; None: full handshake."""
    ring = config.ticket_keys
    if ring is None:
        return None
    for index, (identity, obfuscated_age) in enumerate(offered.identities):
        contents = ring.open(identity)
        if contents is None or not _usable(
            config,
            contents,
            obfuscated_age,
            suite=suite,
            alpn=alpn,
            server_name=server_name,
            quic=quic,
            now_ms=now_ms,
        ):
            continue
        expected = compute_binder(suite_hash(suite), contents.psk, binder_transcript_hash)
        if not hmac.compare_digest(expected, offered.binders[index]):
            raise HandshakeError(AlertDescription.decrypt_error, "PSK binder does not verify")
        return AcceptedPsk(index, identity, contents)
    return None


# -- client -----------------------------------------------------------------------------
def ticket_key(server_name: str | None, alpn: str | None, quic: bool) -> TicketKey:
    """The store key of tickets for this server, protocol and transport."""
    return (server_name or "", alpn or "", "quic" if quic else "tcp")


def take_ticket(config: TLSConfig, *, quic: bool, now_ms: int) -> StoredTicket | None:
    """Remove and return a stored ticket we can offer (RFC 8446 §4.6.1), or None."""
    store = config.ticket_store
    if store is None:
        return None
    choices: list[str | None] = list(config.alpn_protocols) or [None]
    for alpn in choices:
        ticket = store.take(ticket_key(config.server_name, alpn, quic), now_ms)
        if ticket is not None and ticket.cipher_suite in [int(s) for s in config.cipher_suites]:
            return ticket
    return None


def stored_ticket(
    message: NewSessionTicket,
    suite: CipherSuite,
    resumption_secret: bytes,
    *,
    alpn: str | None,
    server_name: str | None,
    peer: VerifiedPeer | None,
    now_ms: int,
    transport_parameters: bytes = b"",
) -> StoredTicket | None:
    """What the client keeps of a NewSessionTicket; None for a zero lifetime (§4.6.1)."""
    if message.lifetime == 0:
        return None
    return StoredTicket(
        ticket=message.ticket,
        psk=psk_from_ticket(suite_hash(suite), resumption_secret, message.nonce),
        cipher_suite=int(suite),
        age_add=message.age_add,
        lifetime=min(message.lifetime, MAX_TICKET_LIFETIME),
        received_ms=now_ms,
        max_early_data=_max_early_data(message),
        alpn_protocol=alpn,
        server_name=server_name or "",
        peer_chain=_chain_der(peer),
        transport_parameters=transport_parameters,
    )


def _max_early_data(message: NewSessionTicket) -> int:
    """The early_data extension of a NewSessionTicket (RFC 8446 §4.2.10), or 0."""
    raw = message.extensions.get(ExtensionType.early_data)
    return 0 if raw is None else parse_uint32(raw, "early_data extension")
