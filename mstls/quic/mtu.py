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
:data:`SEARCH_GRANULARITY`, and restarts after the raise interval
(:data:`RAISE_INTERVAL`, RFC 8899 §5.1.1 PMTU_RAISE_TIMER).

*Black holes* (RFC 8899 §4.3, §5.2 BLACK_HOLE state).  The path MTU may shrink
under a connection: then every full-size packet is lost while small ones get
through.  Two signals lead back to the base size:

* after a PTO (RFC 9002 §6.2) packets are sent at the base size until an ACK
  arrives (:meth:`PathMtu.datagram_size`), so a path that only drops large
  packets still carries the probes;
* :data:`BLACK_HOLE_LOSSES` losses of packets above the base size with no such
  packet acknowledged in between, and a base-size packet sent after the first
  of them acknowledged, is a black hole (:meth:`PathMtu.on_ack`);
* a datagram the local stack refuses as too big (EMSGSIZE: the interface MTU
  shrank) is a black hole at once when it was an ordinary packet, and lowers the
  search bound when it was a probe (:meth:`PathMtu.on_too_big`).

On a black hole the confirmed size drops to the base, the caller shrinks the
congestion controller's datagram size and re-sends the packets that no longer
fit; the search restarts after the raise interval (RFC 8899 §5.2).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

__all__ = [
    "BASE_AFTER_PTOS",
    "BLACK_HOLE_LOSSES",
    "MAX_PROBES",
    "RAISE_INTERVAL",
    "SEARCH_GRANULARITY",
    "PathMtu",
]

#: Probes lost at one size before that size is taken as too big (RFC 8899 MAX_PROBES).
MAX_PROBES = 3
#: Stop bisecting when the interval is this small.
SEARCH_GRANULARITY = 32
#: Look for a larger PMTU again after this long (RFC 8899 §5.1.1 PMTU_RAISE_TIMER).
RAISE_INTERVAL = 600.0
#: Losses of packets above the base size, none acknowledged in between, that make a
#: black hole once a smaller packet got through (RFC 8899 §4.3, MAX_PROBES-like).
BLACK_HOLE_LOSSES = 3
#: After this many consecutive PTOs packets go out at the base size until an ACK.
BASE_AFTER_PTOS = 1


class _Packet(Protocol):
    """What black-hole detection reads from a sent packet (``recovery.SentPacket``)."""

    @property
    def size(self) -> int: ...

    @property
    def sent_time(self) -> float: ...

    @property
    def ack_eliciting(self) -> bool: ...

    @property
    def is_mtu_probe(self) -> bool: ...


class PathMtu:
    """The confirmed maximum datagram size of a path, the probe search and
    black-hole detection (module documentation)."""

    def __init__(
        self,
        base: int,
        maximum: int,
        *,
        enabled: bool = True,
        raise_interval: float = RAISE_INTERVAL,
    ) -> None:
        self.base = base
        self.current = base
        self._high = max(maximum, base)
        self._maximum = self._high
        self.enabled = enabled and maximum > base
        self.raise_interval = raise_interval
        #: Black holes detected since the start (statistics, tests).
        self.black_holes = 0
        self._in_flight: int | None = None
        self._losses = 0
        self._next_search = 0.0
        # Black-hole detection: suspicious losses, the send time of the first one,
        # whether a small packet sent after it was acknowledged, and the send time
        # of the newest large packet acknowledged.
        self._suspect_losses = 0
        self._suspect_since: float | None = None
        self._small_acked = False
        self._large_acked_time = float("-inf")
        #: Probes sent before the last fallback say nothing about the path now.
        self._epoch = float("-inf")

    def set_peer_limit(self, max_udp_payload_size: int) -> None:
        """The peer's max_udp_payload_size caps the search (RFC 9000 §18.2)."""
        self._maximum = max(self.base, min(self._maximum, max_udp_payload_size))
        self._high = min(self._high, self._maximum)
        self.enabled = self.enabled and self._high > self.current

    @property
    def searching(self) -> bool:
        return self.enabled and self._high - self.current >= SEARCH_GRANULARITY

    def datagram_size(self, pto_count: int) -> int:
        """The size to fill datagrams to: the base size after a PTO (module doc)."""
        return self.base if pto_count >= BASE_AFTER_PTOS else self.current

    def probe_size(self, now: float) -> int | None:
        """Size of the probe to send now, or ``None``."""
        if not self.enabled or self._in_flight is not None or now < self._next_search:
            return None
        if not self.searching:
            if self._high < self._maximum:  # restart after the raise interval
                self._high = self._maximum
                self._next_search = now + self.raise_interval
            return None
        if self._losses == 0 and self._high == self._maximum:
            return self._high
        return (self.current + self._high + 1) // 2

    def on_probe_sent(self, size: int) -> None:
        self._in_flight = size

    def on_probe_acked(self, size: int, sent: float | None = None) -> bool:
        """A probe sent at ``sent`` arrived: ``size`` is usable.  Returns True if the
        PMTU grew.  Probes sent before a black hole was detected are ignored."""
        if sent is not None and sent < self._epoch:
            return False
        self._in_flight = None
        self._losses = 0
        if size > self.current:
            self.current = size
            self._clear_suspicion()
            return True
        return False

    def on_probe_lost(self, size: int, now: float) -> None:
        """A probe sent at ``now`` was declared lost; after MAX_PROBES losses the
        size is too big.  Probes sent before a black hole was detected are ignored."""
        if now < self._epoch:
            return
        self._in_flight = None
        self._losses += 1
        if self._losses >= MAX_PROBES:
            self._lower_bound(size, now)

    def _lower_bound(self, size: int, now: float) -> None:
        self._high = min(self._high, size - 1)
        self._losses = 0
        if not self.searching:
            self._next_search = now + self.raise_interval

    # -- black holes (RFC 8899 §4.3) ---------------------------------------------------
    def on_ack(self, acked: Iterable[_Packet], lost: Iterable[_Packet], now: float) -> bool:
        """Packets just acknowledged and declared lost (MTU probes are skipped).

        Returns True when they reveal a black hole: the size is then back at the
        base and the caller must shrink what it sends (module documentation).
        """
        base = self.base
        if self.current <= base:
            return False
        for packet in lost:
            if packet.is_mtu_probe or packet.size <= base:
                continue
            if packet.sent_time > self._large_acked_time:
                self._suspect_losses += 1
                since = self._suspect_since
                if since is None or packet.sent_time < since:
                    self._suspect_since = packet.sent_time
        for packet in acked:
            if packet.is_mtu_probe:
                continue
            sent = packet.sent_time
            since = self._suspect_since
            if packet.size > base:
                self._large_acked_time = max(self._large_acked_time, sent)
                if since is not None and sent >= since:
                    self._clear_suspicion()
            elif since is not None and sent > since and packet.ack_eliciting:
                self._small_acked = True
        if self._small_acked and self._suspect_losses >= BLACK_HOLE_LOSSES:
            self._fall_back(now)
            return True
        return False

    def on_too_big(self, size: int, now: float) -> bool:
        """The local stack refused a datagram of ``size`` bytes (EMSGSIZE).

        A probe lowers the search bound at once; an ordinary datagram is a black
        hole (returns True, as :meth:`on_ack`).  Sizes at or below the base are
        beyond repair here.
        """
        if size <= self.base:
            return False
        if size > self.current:
            self._lower_bound(size, now)
            return False
        self._fall_back(now)
        return True

    def _fall_back(self, now: float) -> None:
        """RFC 8899 §5.2: BLACK_HOLE -> BASE; search again after the raise interval."""
        self.current = self.base
        self.black_holes += 1
        self._losses = 0
        self._in_flight = None
        self._epoch = now
        self._high = self._maximum
        self._next_search = now + self.raise_interval
        self.enabled = self._maximum > self.base
        self._clear_suspicion()
        self._large_acked_time = now

    def _clear_suspicion(self) -> None:
        self._suspect_losses = 0
        self._suspect_since = None
        self._small_acked = False
