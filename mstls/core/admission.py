"""Handshake admission: a per-source-address handshake rate, and when to ask for a Retry.

Theory of operation
-------------------
A handshake costs a server far more than it costs a client (a key exchange and
a signature against one packet), so a server bounds how many it starts, per
source and in total.  This module holds the decisions; it is sans-I/O like the
rest of the core: it never sleeps and is given ``now`` by the caller.

*Per-source rate* (:class:`SourceRateLimiter`).  Each source has a token
bucket: it holds at most ``burst`` tokens, refills at ``rate`` tokens per
second (:func:`refill`), and a handshake that would create state takes one
(:func:`take`).  An empty bucket refuses.  A source is the IP address with the
port ignored (a client opens each connection from a new port), and for IPv6
the /64 prefix (:data:`IPV6_PREFIX_BYTES`), since one host usually owns a
whole /64 and could otherwise rotate addresses inside it for free; an
IPv4-mapped IPv6 address counts as its IPv4 address (:func:`source_key`).

*A bounded table.*  The buckets live in an insertion-ordered table kept in
least-recently-used order.  A bucket that has refilled to ``burst`` says
nothing that a missing one would not, so each admission first drops up to
:data:`SWEEP_PER_ADMISSION` such idle buckets from the old end; when the table
still holds :data:`MAX_TRACKED_SOURCES`, the least recently used bucket is
evicted even if not full.  A flood of spoofed sources therefore costs a
constant amount of memory, and its worst effect is that a real source evicted
this way starts again with a full burst.

*Retry under load* (:func:`needs_retry`).  A Retry (RFC 9000 §8.1.2) proves
the client's address before any state exists, at the cost of one round trip.
It is asked for always (``retry``), or once the number of handshakes in
progress reaches ``retry_threshold``, and never from a client whose Initial
already carries a valid token.

*Order* (RFC 9000 §8.1, §21.1.1.1).  The caller checks the token first, then
decides on a Retry, and only then takes from the source's bucket, right before
it would create state.  So a Retry (stateless, smaller than the Initial that
caused it) never costs a token, and while Retry is in effect only proven
addresses reach the bucket: an attacker spoofing a victim's address cannot
empty the victim's bucket.  Without Retry an unproven address must be charged
(there is nothing else to charge), and such spoofing is possible; an operator
who fears it turns Retry on, at least under load.  TCP needs none of this: the
TCP handshake has already proven the address before a connection is accepted.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from typing import Any

from ..exceptions import ConfigurationError, HandshakeRefused

__all__ = [
    "DEFAULT_BURST",
    "IPV6_PREFIX_BYTES",
    "MAX_RECORDED_FAILURES",
    "MAX_TRACKED_SOURCES",
    "RATE_LIMITED",
    "SHED",
    "SWEEP_PER_ADMISSION",
    "SourceRateLimiter",
    "check_admission",
    "needs_retry",
    "reconfigured",
    "refill",
    "refusal",
    "source_key",
    "take",
]

#: Sources whose bucket is remembered at most (the table never grows past it).
MAX_TRACKED_SOURCES = 65536
#: Handshakes a source may start at once before its rate applies.
DEFAULT_BURST = 10
#: An IPv6 source is its /64 prefix: the first 8 bytes of the address.
IPV6_PREFIX_BYTES = 8
#: Idle (full) buckets dropped from the old end of the table per admission.
SWEEP_PER_ADMISSION = 4
#: The refusal cause of a source over its handshake rate (a metric label too).
RATE_LIMITED = "rate_limited"
#: The refusal cause of a pending handshake shed for a newer one (``max_pending_handshakes``,
#: :mod:`mstls.quic.pending_handshakes`).
SHED = "shed"

_V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


def source_key(address: Any) -> bytes:
    """The bucket key of a peer address ``(host, port, ...)``: IPv4 or IPv6 /64.

    Handles addresses that are not IP (tests, Unix sockets) by their text, so a
    malformed address never raises; the key lengths (4, 8, other) keep the
    three kinds apart.
    """
    is_pair = isinstance(address, tuple | list) and address
    host = str(address[0]) if is_pair else str(address)
    try:
        return ipaddress.IPv4Address(host).packed
    except ValueError:
        pass
    try:
        packed = ipaddress.IPv6Address(host.partition("%")[0]).packed
    except ValueError:
        return b"?" + host.encode("utf-8", "replace")
    if packed.startswith(_V4_MAPPED_PREFIX):
        return packed[12:]
    return packed[:IPV6_PREFIX_BYTES]


def refill(tokens: float, elapsed: float, rate: float, burst: int) -> float:
    """Tokens after ``elapsed`` seconds at ``rate`` per second, capped at ``burst``.

    A clock that went backwards (negative ``elapsed``) adds nothing.
    """
    return min(float(burst), tokens + max(0.0, elapsed) * rate)


def take(tokens: float, elapsed: float, rate: float, burst: int) -> tuple[bool, float]:
    """Refill, then take one token if there is one: ``(admitted, tokens left)``."""
    tokens = refill(tokens, elapsed, rate, burst)
    if tokens >= 1.0:
        return True, tokens - 1.0
    return False, tokens


def needs_retry(
    *, validated: bool, retry: bool, handshakes: int, retry_threshold: int | None
) -> bool:
    """Whether a new Initial gets a Retry instead of a connection (RFC 9000 §8.1.2).

    Never for a validated address (a valid token); always when ``retry``;
    otherwise once ``handshakes`` in progress reach ``retry_threshold``.
    """
    if validated:
        return False
    return retry or (retry_threshold is not None and handshakes >= retry_threshold)


def check_admission(rate: float | None, burst: int, retry_threshold: int | None) -> None:
    """Raise :class:`ConfigurationError` naming the first bad admission setting."""
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate < math.inf
    ):
        raise ConfigurationError(
            f"handshake_rate_per_source: expected a positive number of handshakes "
            f"per second, got {rate!r}"
        )
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ConfigurationError(
            f"handshake_burst_per_source: expected an integer of at least 1, got {burst!r}"
        )
    if retry_threshold is not None and (
        isinstance(retry_threshold, bool)
        or not isinstance(retry_threshold, int)
        or retry_threshold < 0
    ):
        raise ConfigurationError(
            f"retry_threshold: expected a number of handshakes (0 or more), got {retry_threshold!r}"
        )


#: Failed handshakes a listener remembers for ``pop_handshake_failures()`` (both APIs;
#: the count in ``failed_handshakes`` is kept without bound).
MAX_RECORDED_FAILURES = 256


def refusal(cause: str) -> HandshakeRefused:
    """The exception a listener records for a refused handshake (metrics, logs)."""
    return HandshakeRefused(f"handshake refused: {cause.replace('_', ' ')}", cause=cause)


class SourceRateLimiter:
    """Token buckets per source address in a bounded table; see the module documentation."""

    __slots__ = ("_table", "burst", "evicted", "max_sources", "rate", "refused")

    def __init__(
        self, rate: float, burst: int = DEFAULT_BURST, *, max_sources: int = MAX_TRACKED_SOURCES
    ) -> None:
        check_admission(rate, burst, None)
        if max_sources < 1:
            raise ValueError(f"max_sources must be at least 1, got {max_sources}")
        self.rate = float(rate)
        self.burst = burst
        self.max_sources = max_sources
        #: source key -> [tokens, time of the last update]
        self._table: OrderedDict[bytes, list[float]] = OrderedDict()
        #: Admissions refused since creation.
        self.refused = 0
        #: Buckets evicted before they were idle (the table was full).
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._table)

    def admit(self, address: Any, now: float) -> bool:
        """Take one handshake from ``address``'s bucket; False (and counted) when empty."""
        key = source_key(address)
        table = self._table
        entry = table.get(key)
        if entry is None:
            self._make_room(now)
            table[key] = [self.burst - 1.0, now]
            return True
        table.move_to_end(key)
        admitted, tokens = take(entry[0], now - entry[1], self.rate, self.burst)
        entry[0], entry[1] = tokens, max(entry[1], now)
        if not admitted:
            self.refused += 1
        return admitted

    def refund(self, address: Any) -> None:
        """Give back the token of an admission that started no handshake after all."""
        entry = self._table.get(source_key(address))
        if entry is not None:
            entry[0] = min(float(self.burst), entry[0] + 1.0)

    def available(self, address: Any, now: float) -> float:
        """Tokens ``address`` has at ``now`` (``burst`` for an unknown source)."""
        entry = self._table.get(source_key(address))
        if entry is None:
            return float(self.burst)
        return refill(entry[0], now - entry[1], self.rate, self.burst)

    def _make_room(self, now: float) -> None:
        table = self._table
        for _ in range(SWEEP_PER_ADMISSION):
            if not table:
                return
            key, (tokens, stamp) = next(iter(table.items()))
            if refill(tokens, now - stamp, self.rate, self.burst) < self.burst:
                break
            del table[key]
        while len(table) >= self.max_sources:
            table.popitem(last=False)
            self.evicted += 1


def reconfigured(
    limiter: SourceRateLimiter | None, rate: float | None, burst: int
) -> SourceRateLimiter | None:
    """The limiter for new settings, keeping ``limiter``'s table when there is one."""
    if rate is None:
        return None
    if limiter is None:
        return SourceRateLimiter(rate, burst)
    check_admission(rate, burst, None)
    limiter.rate, limiter.burst = float(rate), burst
    return limiter
