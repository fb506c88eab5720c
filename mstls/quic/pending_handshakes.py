"""Server connections still in the handshake, oldest first, under a bound (issue 11).

Theory of operation
-------------------
A handshake in progress holds a :class:`~mstls.quic.connection.QuicConnection`
until it completes, fails or times out (``handshake_timeout``).  Clients that
send a first flight and then go silent (or spoofed sources, without Retry)
could pile such state up to ``max_connections``.  The endpoint therefore keeps
at most ``limit`` pending handshakes: when a new one would exceed the bound,
the *oldest* pending handshake is shed, silently (no CONNECTION_CLOSE: nothing
is spent on a peer that has probably gone; RFC 9000 §10 allows discarding
state without a word, and §21.1.1.1 names handshake state as what a server
must bound).  The newest handshakes are the most likely to complete, and a
genuine client that was shed retransmits its Initial (RFC 9002 §6.2) and
starts again.

The set is an insertion-ordered dict keyed by ``id(conn)``: adding, removing
and finding the oldest are O(1).  Entries whose connection left the handshake
without the endpoint noticing (the application closed it directly) are
skipped when found at the old end and pruned by :meth:`PendingHandshakes.prune`.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..core.admission import SHED, refusal
from ..core.lifecycle import State
from ..exceptions import ConfigurationError
from .connection import QuicConnection

__all__ = ["DEFAULT_MAX_PENDING_HANDSHAKES", "PendingHandshakes", "check_pending_limit", "shed"]

#: Handshakes one server endpoint keeps in progress at most (the oldest is shed).
DEFAULT_MAX_PENDING_HANDSHAKES = 1000


def check_pending_limit(limit: object) -> None:
    """Raise :class:`ConfigurationError` unless ``limit`` is a positive integer."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigurationError(
            f"max_pending_handshakes: must be a positive integer, got {limit!r}"
        )


def shed(conn: QuicConnection, now: float) -> None:
    """End ``conn``'s handshake at once, sending nothing; its failure is a
    :class:`~mstls.exceptions.HandshakeRefused` with cause ``"shed"``."""
    error = refusal(SHED)
    conn.termination_error = error
    conn.abandon(error, now)


class PendingHandshakes:
    """The connections in the handshake, oldest first; see the module documentation."""

    __slots__ = ("_conns", "limit")

    def __init__(self, limit: int = DEFAULT_MAX_PENDING_HANDSHAKES) -> None:
        check_pending_limit(limit)
        self.limit = limit
        self._conns: dict[int, QuicConnection] = {}

    def __len__(self) -> int:
        return len(self._conns)

    def __contains__(self, conn: QuicConnection) -> bool:
        return id(conn) in self._conns

    def add(self, conn: QuicConnection) -> None:
        """``conn`` started its handshake (the newest)."""
        self._conns[id(conn)] = conn

    def discard(self, conn: QuicConnection) -> None:
        """``conn`` left the handshake (or was forgotten); O(1)."""
        self._conns.pop(id(conn), None)

    def prune(self) -> None:
        """Drop the entries no longer in the handshake (O(N))."""
        stale = [key for key, c in self._conns.items() if c.state is not State.HANDSHAKE]
        for key in stale:
            del self._conns[key]

    def to_shed(self) -> Iterator[QuicConnection]:
        """The oldest handshakes to shed so that one more fits under the bound,
        each removed from the set as it is yielded (O(1) each, amortised)."""
        conns = self._conns
        while conns and len(conns) >= self.limit:
            key = next(iter(conns))
            conn = conns.pop(key)
            if conn.state is State.HANDSHAKE:
                yield conn
