"""The client's store of session tickets (RFC 8446 §4.6.1, §2.2).

A client that was given a store keeps every NewSessionTicket it receives,
with the PSK derived from it, under the key ``(server name, ALPN protocol,
transport)``; the next handshake to the same server with the same protocol
over the same transport *takes* one (tickets are single-use on the client,
RFC 8446 §8.1 and Appendix C.4: reusing one lets observers link connections)
and offers it.  Expired tickets are dropped when met.

:class:`MemoryTicketStore` keeps them in the process; :class:`FileTicketStore`
in a JSON file of mode 0600 rewritten atomically, so tickets survive the
process.  Both are bounded and thread-safe.  Any object with ``add`` and
``take`` (:class:`TicketStore`) may be given instead.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import attrs

__all__ = [
    "DEFAULT_MAX_TICKETS",
    "MAX_TICKETS_PER_KEY",
    "FileTicketStore",
    "MemoryTicketStore",
    "StoredTicket",
    "TicketKey",
    "TicketStore",
]

#: ``(server name, ALPN protocol or "", transport: "quic" or "tcp")``.
TicketKey = tuple[str, str, str]
#: Tickets kept for one key; the oldest go first (servers send a few per connection).
MAX_TICKETS_PER_KEY = 4
#: Tickets a store keeps in all by default; the least recently stored key goes first.
DEFAULT_MAX_TICKETS = 1024
#: A file store refuses to read a file larger than this (bytes).
MAX_TICKET_FILE_SIZE = 8 * 1024 * 1024


@attrs.frozen
class StoredTicket:
    """One ticket as a client keeps it: the opaque ticket, its PSK and what it
    was issued for.  ``received_ms`` is the client's wall clock at receipt;
    ``peer_chain`` the server's certificates (DER) as verified then;
    ``transport_parameters`` the server's transport parameters (encoded) as the
    connection that received the ticket learned them, remembered for 0-RTT
    (RFC 9000 §7.4.1; draft-ietf-quic-qmux "Using 0-RTT"), ``b""`` if unknown."""

    ticket: bytes
    psk: bytes
    cipher_suite: int
    age_add: int
    lifetime: int
    received_ms: int
    max_early_data: int
    alpn_protocol: str | None
    server_name: str
    peer_chain: tuple[bytes, ...] = ()
    transport_parameters: bytes = b""

    def expired(self, now_ms: int) -> bool:
        """Whether the ticket's lifetime (RFC 8446 §4.6.1) has run out at ``now_ms``."""
        return not 0 <= now_ms - self.received_ms < self.lifetime * 1000

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (bytes as base64), as :class:`FileTicketStore` writes it."""
        b64 = base64.b64encode
        return {
            "ticket": b64(self.ticket).decode(),
            "psk": b64(self.psk).decode(),
            "cipher_suite": self.cipher_suite,
            "age_add": self.age_add,
            "lifetime": self.lifetime,
            "received_ms": self.received_ms,
            "max_early_data": self.max_early_data,
            "alpn_protocol": self.alpn_protocol,
            "server_name": self.server_name,
            "peer_chain": [b64(c).decode() for c in self.peer_chain],
            "transport_parameters": b64(self.transport_parameters).decode(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StoredTicket:
        """The ticket of a :meth:`to_json` dict; KeyError, TypeError or ValueError if malformed."""
        b64 = base64.b64decode
        return cls(
            ticket=b64(data["ticket"]),
            psk=b64(data["psk"]),
            cipher_suite=int(data["cipher_suite"]),
            age_add=int(data["age_add"]),
            lifetime=int(data["lifetime"]),
            received_ms=int(data["received_ms"]),
            max_early_data=int(data["max_early_data"]),
            alpn_protocol=data["alpn_protocol"],
            server_name=str(data["server_name"]),
            peer_chain=tuple(b64(c) for c in data["peer_chain"]),
            transport_parameters=b64(data.get("transport_parameters", "")),
        )


@runtime_checkable
class TicketStore(Protocol):
    """Where a client keeps session tickets (give one as ``ClientConfig.ticket_store``)."""

    def add(self, key: TicketKey, ticket: StoredTicket) -> None:
        """Keep ``ticket`` for connections matching ``key``."""

    def take(self, key: TicketKey, now_ms: int) -> StoredTicket | None:
        """Remove and return an unexpired ticket for ``key``, or None."""


class MemoryTicketStore:
    """Tickets in memory, at most ``max_tickets`` (thread-safe)."""

    def __init__(self, max_tickets: int = DEFAULT_MAX_TICKETS) -> None:
        if max_tickets < 1:
            raise ValueError("max_tickets must be positive")
        self.max_tickets = max_tickets
        self._lock = threading.Lock()
        self._tickets: OrderedDict[TicketKey, list[StoredTicket]] = OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._tickets.values())

    def add(self, key: TicketKey, ticket: StoredTicket) -> None:
        """Keep ``ticket``; drop the oldest of the key, then of the store, past the bounds."""
        with self._lock:
            self._add(key, ticket)
            self._changed()

    def take(self, key: TicketKey, now_ms: int) -> StoredTicket | None:
        """Remove and return the newest unexpired ticket for ``key`` (expired ones are dropped)."""
        with self._lock:
            found = self._take(key, now_ms)
            self._changed()
            return found

    def _add(self, key: TicketKey, ticket: StoredTicket) -> None:
        tickets = self._tickets.pop(key, [])
        tickets.append(ticket)
        del tickets[:-MAX_TICKETS_PER_KEY]
        self._tickets[key] = tickets
        total = sum(len(v) for v in self._tickets.values())
        while total > self.max_tickets:
            oldest = next(iter(self._tickets))
            entries = self._tickets[oldest]
            entries.pop(0)
            total -= 1
            if not entries:
                del self._tickets[oldest]

    def _take(self, key: TicketKey, now_ms: int) -> StoredTicket | None:
        tickets = self._tickets.get(key)
        found = None
        while tickets and found is None:
            candidate = tickets.pop()
            if not candidate.expired(now_ms):
                found = candidate
        if tickets is not None and not tickets:
            del self._tickets[key]
        return found

    def _changed(self) -> None:
        """Called under the lock after every change (the file store saves)."""


class FileTicketStore(MemoryTicketStore):
    """Tickets in a JSON file (mode 0600), read at creation and rewritten on each change.

    A missing, unreadable or malformed file is an empty store: tickets are only a
    shortcut and a full handshake always works.
    """

    def __init__(self, path: str | os.PathLike[str], max_tickets: int = DEFAULT_MAX_TICKETS):
        super().__init__(max_tickets)
        self.path = Path(path)
        for key, ticket in self._load():
            self._add(key, ticket)

    def _load(self) -> list[tuple[TicketKey, StoredTicket]]:
        try:
            if self.path.stat().st_size > MAX_TICKET_FILE_SIZE:
                return []
            entries = json.loads(self.path.read_text("utf-8"))
            loaded = []
            for entry in entries:
                key = entry["key"]
                loaded.append(
                    ((str(key[0]), str(key[1]), str(key[2])), StoredTicket.from_json(entry))
                )
            return loaded
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return []

    def _changed(self) -> None:
        entries = [
            {"key": list(key), **ticket.to_json()}
            for key, tickets in self._tickets.items()
            for ticket in tickets
        ]
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(entries, out)
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
