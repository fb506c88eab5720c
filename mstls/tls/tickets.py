"""Stateless session tickets (RFC 8446 §4.6.1, §2.2) and the server's ticket-key ring.

Theory of operation
-------------------
The server keeps no per-session state: everything it needs to resume a session
travels inside the ticket, sealed with AES-256-GCM under a *ticket key*.  A
ticket is ``version (1) || key id (4) || nonce (12) || ciphertext``; the
version and the key id are the associated data, so neither can be changed
without the tag failing.  The key id names the key (a hash of it), so a
:class:`TicketKeyRing` of the current key and the previous ones (rotation)
opens tickets sealed under any of them, and seals new ones with the current
key.  All workers of one service are given the same ring, so a ticket issued by
one is accepted by the others.

:meth:`TicketKeyRing.open` treats the ticket as untrusted input: an unknown key
id, a failed tag or malformed contents all give ``None`` and the handshake
falls back to a full one (RFC 8446 §4.2.11: a server may decline any PSK);
they are never an error.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..exceptions import ConfigurationError, DecodeError
from ..wire.buffer import Reader, Writer
from .cipher_suites import CipherSuite

__all__ = [
    "DEFAULT_TICKET_LIFETIME",
    "MAX_TICKET_KEYS",
    "MAX_TICKET_LIFETIME",
    "TICKET_KEY_LENGTH",
    "TicketContents",
    "TicketKeyRing",
]

#: AES-256-GCM key length of a ticket key.
TICKET_KEY_LENGTH = 32
#: Bytes of the key id that names the key a ticket was sealed with.
KEY_ID_LENGTH = 4
#: AES-GCM nonce length.
NONCE_LENGTH = 12
#: Format of the sealed contents; a ticket of another version is declined
#: (2: the early-data context was added).
TICKET_VERSION = 2
#: RFC 8446 §4.6.1: a ticket lifetime MUST NOT exceed 7 days.
MAX_TICKET_LIFETIME = 7 * 24 * 3600
#: Default lifetime of the tickets a server issues, in seconds.
DEFAULT_TICKET_LIFETIME = 24 * 3600
#: Most keys a ring holds (the current one and previous ones still accepted).
MAX_TICKET_KEYS = 8
#: Largest peer certificate chain a ticket carries, in bytes (keeps tickets
#: well below the 2^16-1 limit of NewSessionTicket.ticket).
MAX_TICKET_PEER_CHAIN_BYTES = 48 * 1024


@attrs.frozen
class TicketContents:
    """What a ticket holds: enough to resume without server state (RFC 8446 §4.6.1).

    ``psk`` is the PSK derived from the resumption master secret and the ticket
    nonce; ``issued_ms`` is the server's wall clock in milliseconds; ``peer_chain``
    the client's verified certificate chain (DER) when client authentication was
    used; ``early_context`` the sealed :class:`~mstls.tls.early_data.EarlyDataContext`
    of the issuing connection (RFC 9000 §7.4.1: what its 0-RTT data may rely on).
    """

    cipher_suite: CipherSuite
    psk: bytes
    alpn_protocol: str | None
    server_name: str | None
    issued_ms: int
    age_add: int
    lifetime: int
    max_early_data: int
    quic: bool
    peer_chain: tuple[bytes, ...] = ()
    early_context: bytes = b""

    def encode(self) -> bytes:
        w = Writer()
        w.push_uint16(int(self.cipher_suite))
        w.push_block(1, self.psk)
        w.push_block(1, (self.alpn_protocol or "").encode("latin-1"))
        w.push_block(1, (self.server_name or "").encode("ascii"))
        w.push_uint64(self.issued_ms)
        w.push_uint32(self.age_add)
        w.push_uint32(self.lifetime)
        w.push_uint32(self.max_early_data)
        w.push_uint8(1 if self.quic else 0)
        with w.block(3):
            for der in self.peer_chain:
                w.push_block(3, der)
        w.push_block(2, self.early_context)
        return w.data

    @classmethod
    def parse(cls, data: bytes) -> TicketContents:
        """Decode (authenticated, but still checked) contents; raises DecodeError."""
        r = Reader(data)
        suite_value = r.pull_uint16()
        try:
            suite = CipherSuite(suite_value)
        except ValueError:
            raise DecodeError(f"unknown cipher suite {suite_value:#06x}") from None
        psk = r.pull_block(1)
        alpn = r.pull_block(1).decode("latin-1") or None
        name_raw = r.pull_block(1)
        if not name_raw.isascii():
            raise DecodeError("server name is not ASCII")
        name = name_raw.decode("ascii") or None
        issued_ms = r.pull_uint64()
        age_add = r.pull_uint32()
        lifetime = r.pull_uint32()
        max_early_data = r.pull_uint32()
        quic = r.pull_uint8() == 1
        inner = r.sub_reader(3)
        chain: list[bytes] = []
        while not inner.eof():
            chain.append(inner.pull_block(3))
        early_context = r.pull_block(2)
        r.expect_eof("ticket contents")
        return cls(
            suite,
            psk,
            alpn,
            name,
            issued_ms,
            age_add,
            lifetime,
            max_early_data,
            quic,
            tuple(chain),
            early_context,
        )


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"mstls ticket key id\x00" + key).digest()[:KEY_ID_LENGTH]


class TicketKeyRing:
    """Seals tickets with the current key; opens tickets of any key in the ring.

    ``keys`` is the current key first, then previous keys still accepted (each
    :data:`TICKET_KEY_LENGTH` bytes, at most :data:`MAX_TICKET_KEYS`).
    """

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys or len(keys) > MAX_TICKET_KEYS:
            raise ConfigurationError(
                f"session_ticket_keys: expected 1 to {MAX_TICKET_KEYS} keys, got {len(keys)}"
            )
        self._ciphers: dict[bytes, AESGCM] = {}
        for key in keys:
            if not isinstance(key, bytes | bytearray) or len(key) != TICKET_KEY_LENGTH:
                raise ConfigurationError(
                    f"session_ticket_keys: each key must be {TICKET_KEY_LENGTH} bytes"
                )
            self._ciphers.setdefault(_key_id(bytes(key)), AESGCM(bytes(key)))
        self._current = _key_id(bytes(keys[0]))

    @classmethod
    def generate(cls) -> TicketKeyRing:
        """A ring of one fresh random key (tickets then resume on this process only)."""
        return cls([os.urandom(TICKET_KEY_LENGTH)])

    def seal(self, contents: TicketContents) -> bytes:
        """The ticket for ``contents`` under the current key."""
        header = bytes((TICKET_VERSION,)) + self._current
        nonce = os.urandom(NONCE_LENGTH)
        sealed = self._ciphers[self._current].encrypt(nonce, contents.encode(), header)
        return header + nonce + sealed

    def open(self, ticket: bytes) -> TicketContents | None:
        """The contents of ``ticket`` (untrusted input), or None if it is not one of ours."""
        prefix = 1 + KEY_ID_LENGTH + NONCE_LENGTH
        if len(ticket) <= prefix or ticket[0] != TICKET_VERSION:
            return None
        cipher = self._ciphers.get(ticket[1 : 1 + KEY_ID_LENGTH])
        if cipher is None:
            return None
        try:
            plain = cipher.decrypt(ticket[1 + KEY_ID_LENGTH : prefix], ticket[prefix:], ticket[:5])
            return TicketContents.parse(plain)
        except (InvalidTag, DecodeError):
            return None
