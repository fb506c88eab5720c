"""Datagram packetization layer PMTU discovery (RFC 8899, RFC 9000 §14.3).

Theory of operation
-------------------
Every path carries 1200-byte datagrams (RFC 9000 §14).  Once the handshake is
confirmed the connection sends probes: 1-RTT packets of PING plus PADDING at a
candidate size.  An acknowledged probe raises the confirmed size; a probe lost
:data:`MAX_PROBES` times lowers the upper bound.  The first probe tries the
maximum at once (loopback and jumbo-frame LANs take it), then the search
bisects.  Probe losses are not congestion signals (RFC 8899 §3; the recovery
code skips them).  The search ends when the bounds are within
:data:`SEARCH_GRANULARITY`, and restarts after :data:`RAISE_INTERVAL`.
"""

from __future__ import annotations

__all__ = ["MAX_PROBES", "RAISE_INTERVAL", "SEARCH_GRANULARITY", "PathMtu"]

#: Probes lost at one size before that size is taken as too big (RFC 8899 MAX_PROBES).
MAX_PROBES = 3
#: Stop bisecting when the interval is this small.
SEARCH_GRANULARITY = 32
#: Look for a larger PMTU again after this long (RFC 8899 PMTU_RAISE_TIMER).
RAISE_INTERVAL = 600.0


class PathMtu:
    """The confirmed maximum datagram size of a path and the probe search."""

    def __init__(self, base: int, maximum: int, *, enabled: bool = True) -> None:
        self.base = base
        self.current = base
        self._high = max(maximum, base)
        self._maximum = self._high
        self.enabled = enabled and maximum > base
        self._in_flight: int | None = None
        self._losses = 0
        self._next_search = 0.0

    def set_peer_limit(self, max_udp_payload_size: int) -> None:
        """The peer's max_udp_payload_size caps the search (RFC 9000 §18.2)."""
        self._maximum = max(self.base, min(self._maximum, max_udp_payload_size))
        self._high = min(self._high, self._maximum)
        self.enabled = self.enabled and self._high > self.current

    @property
    def searching(self) -> bool:
        return self.enabled and self._high - self.current >= SEARCH_GRANULARITY

    def probe_size(self, now: float) -> int | None:
        """Size of the probe to send now, or ``None``."""
        if not self.enabled or self._in_flight is not None or now < self._next_search:
            return None
        if not self.searching:
            if self._high < self._maximum:  # restart after RAISE_INTERVAL
                self._high = self._maximum
                self._next_search = now + RAISE_INTERVAL
            return None
        if self._losses == 0 and self._high == self._maximum:
            return self._high
        return (self.current + self._high + 1) // 2

    def on_probe_sent(self, size: int) -> None:
        self._in_flight = size

    def on_probe_acked(self, size: int) -> bool:
        """A probe arrived: ``size`` is usable.  Returns True if the PMTU grew."""
        self._in_flight = None
        self._losses = 0
        if size > self.current:
            self.current = size
            return True
        return False

    def on_probe_lost(self, size: int, now: float) -> None:
        """A probe was declared lost; after MAX_PROBES losses the size is too big."""
        self._in_flight = None
        self._losses += 1
        if self._losses >= MAX_PROBES:
            self._high = size - 1
            self._losses = 0
            if not self.searching:
                self._next_search = now + RAISE_INTERVAL
