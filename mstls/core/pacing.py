"""Pacing (RFC 9002 §7.7): a token bucket refilled at ``N * cwnd / smoothed_rtt``.

Theory of operation
-------------------
The bucket holds bytes.  It refills at :data:`PACING_GAIN` (N = 1.25) times
``cwnd / smoothed_rtt``, so a window is spread over 80 % of a round trip and the
sender is never held back by pacing alone when the window has room.  Its
capacity is the *burst*: at least :data:`MIN_BURST_PACKETS` datagrams (the
initial window, the limit §7.7 recommends, and a whole GSO batch), growing with
the rate to :data:`BURST_INTERVAL` worth of sending so that a driver woken
every millisecond or so can still sustain the rate, and capped at
:data:`MAX_BURST_PACKETS` datagrams.

Until there is an RTT sample there is no rate: the handshake is never paced.
:meth:`Pacer.next_send_time` answers ``None`` (send now) or the time at which a
packet of that size fits; :meth:`Pacer.on_packet_sent` spends tokens.  A send
that ignores pacing (a PTO probe) can drive the bucket negative, down to minus
one burst, so the rate is kept on average.  Nothing here reads a clock: ``now``
comes from the caller, and a bucket left idle is full again when next used.
"""

from __future__ import annotations

__all__ = [
    "BURST_INTERVAL",
    "MAX_BURST_PACKETS",
    "MIN_BURST_PACKETS",
    "PACING_GAIN",
    "Pacer",
]

#: RFC 9002 §7.7, the N in ``rate = N * cwnd / smoothed_rtt``.
PACING_GAIN = 1.25
#: Smallest burst, in datagrams: the initial window (RFC 9002 §7.7) and a GSO batch.
MIN_BURST_PACKETS = 10
#: Largest burst, in datagrams (the usual UDP GSO segment limit).
MAX_BURST_PACKETS = 64
#: Seconds of sending a burst may hold at high rates, so coarse driver timers keep the rate.
BURST_INTERVAL = 0.002


class Pacer:
    """Token bucket pacer; see the module docstring."""

    __slots__ = ("_last", "_tokens", "capacity", "max_datagram_size", "rate")

    def __init__(self, max_datagram_size: int = 1200) -> None:
        self.max_datagram_size = max_datagram_size
        #: Refill rate in bytes per second; ``None`` before the first RTT sample.
        self.rate: float | None = None
        #: Bucket size (the largest burst) in bytes.
        self.capacity = MIN_BURST_PACKETS * max_datagram_size
        self._tokens = float(self.capacity)
        self._last: float | None = None

    def update(self, cwnd: int, smoothed_rtt: float | None, max_datagram_size: int) -> None:
        """Recompute rate and burst after the window, the RTT or the datagram size changed."""
        self.max_datagram_size = max_datagram_size
        if smoothed_rtt is None or smoothed_rtt <= 0:
            self.rate = None
            self.capacity = MIN_BURST_PACKETS * max_datagram_size
            return
        rate = PACING_GAIN * cwnd / smoothed_rtt
        if self.rate is None:
            self._tokens = float(MIN_BURST_PACKETS * max_datagram_size)
        self.rate = rate
        burst = rate * BURST_INTERVAL
        low = MIN_BURST_PACKETS * max_datagram_size
        high = MAX_BURST_PACKETS * max_datagram_size
        self.capacity = int(min(max(burst, low), high))
        if self._tokens > self.capacity:
            self._tokens = float(self.capacity)

    def _refill(self, now: float) -> float:
        last = self._last
        tokens = self._tokens
        rate = self.rate
        if last is not None and rate is not None and now > last:
            tokens = min(float(self.capacity), tokens + (now - last) * rate)
            self._tokens = tokens
        self._last = now
        return tokens

    def next_send_time(self, now: float, size: int) -> float | None:
        """``None`` if a packet of ``size`` bytes may leave now, else when it may."""
        if self.rate is None:
            return None
        tokens = self._refill(now)
        if tokens >= size:
            return None
        when = now + (size - tokens) / self.rate
        # A deficit too small to move the clock must not become a busy loop.
        return when if when > now else None

    def on_packet_sent(self, now: float, size: int) -> None:
        """Spend ``size`` bytes of tokens (RFC 9002 §7.7)."""
        tokens = self._refill(now) - size
        floor = -float(self.capacity)
        self._tokens = tokens if tokens > floor else floor

    @property
    def tokens(self) -> float:
        """Bytes that may be sent right now (as of the last call)."""
        return self._tokens

    def __repr__(self) -> str:
        return f"Pacer(rate={self.rate}, capacity={self.capacity}, tokens={self._tokens:.0f})"
