"""Flow control windows (RFC 9000 §4), for one stream or the whole connection.

Theory of operation
-------------------
QUIC flow control is credit based and has two levels with the same shape
(§4.1): each stream, and the connection as the sum over its streams.

* :class:`SendCredit` is the peer's credit for *our* sending: the limit it
  advertised (``initial_max_data`` / ``initial_max_stream_data_*``, then
  MAX_DATA / MAX_STREAM_DATA) and how much of it we used.  Frames that would
  lower the limit are ignored (§4.1).  When we have data but no credit, we say
  so with DATA_BLOCKED / STREAM_DATA_BLOCKED *once per limit* (§4.1: "SHOULD
  send ... when it wishes to send data but is unable to").
* :class:`ReceiveWindow` is *our* limit for the peer: how much it may send
  (``limit``), how much it did (``received``, the highest stream offset for a
  stream, the sum of those for the connection) and how much the application
  consumed.  Receiving beyond ``limit`` is a FLOW_CONTROL_ERROR (§4.1).  The
  limit is raised to ``consumed + window`` once the application consumed half
  a window since the last update, so a reader that keeps up never lets the
  sender run dry (§4.2 asks for updates sent early enough not to block).

Window auto-tuning (in the spirit of §4.2's "should not wait until the sender
is blocked"): each update starts an *epoch*.  At the next update, if the reader
went through data at a pace that would consume a whole window in less than
:data:`AUTOTUNE_RTTS` round trips, the window doubles, up to its maximum.  A
fast reader therefore gets a window that covers the bandwidth-delay product,
and a slow one keeps a small window (bounded memory).

Nothing here knows frames or time sources: ``now`` and ``rtt`` are passed in.
"""

from __future__ import annotations

from ..codes import TransportErrorCode
from ..exceptions import ProtocolError

__all__ = ["AUTOTUNE_RTTS", "ReceiveWindow", "SendCredit"]

#: Grow the window when a whole window would be read in fewer round trips than this.
AUTOTUNE_RTTS = 2.0
#: Each growth step multiplies the window by this.
AUTOTUNE_FACTOR = 2
_NEVER = 1 << 62  # above any stream offset (RFC 9000 §16)


class SendCredit:
    """The peer's credit for our sending, at one level (RFC 9000 §4.1)."""

    __slots__ = ("_blocked_reported", "limit", "used")

    def __init__(self, limit: int = 0) -> None:
        self.limit = limit
        self.used = 0
        self._blocked_reported = -1

    @property
    def available(self) -> int:
        """Bytes we may still send at this level."""
        return self.limit - self.used

    def raise_limit(self, maximum: int) -> bool:
        """Apply MAX_DATA / MAX_STREAM_DATA; a smaller value is ignored (§4.1).

        Returns True when the limit grew.
        """
        if maximum <= self.limit:
            return False
        self.limit = maximum
        return True

    @property
    def blocked(self) -> bool:
        """True when all credit is used."""
        return self.used >= self.limit

    def note_blocked(self) -> bool:
        """We want to send but have no credit: True if this limit was not yet reported."""
        if self.used < self.limit or self._blocked_reported == self.limit:
            return False
        self._blocked_reported = self.limit
        return True


class ReceiveWindow:
    """Our receive limit for the peer, at one level, with auto-tuning (RFC 9000 §4.1-§4.2).

    ``received`` is the credit the peer used (for a stream, its highest
    offset; for the connection, the sum over streams); ``consumed`` what the
    application read (or what was discarded).  ``update_at`` is the consumed
    value past which a new limit should be advertised (half a window left).
    """

    __slots__ = (
        "_epoch_consumed",
        "_epoch_time",
        "acked_limit",
        "consumed",
        "limit",
        "max_window",
        "received",
        "update_at",
        "window",
    )

    def __init__(self, initial: int, max_window: int) -> None:
        self.limit = initial
        self.window = initial
        self.max_window = max(max_window, initial)
        self.received = 0
        self.consumed = 0
        #: Highest limit the peer acknowledged receiving (so a lost older update is not resent).
        self.acked_limit = initial
        self.update_at = self._threshold()
        self._epoch_time: float | None = None
        self._epoch_consumed = 0

    def _threshold(self) -> int:
        if not self.window:
            return _NEVER  # a zero window is never updated
        return self.limit - self.window // 2

    def check(self, received: int, frame_type: int | None = None) -> None:
        """Raise FLOW_CONTROL_ERROR when ``received`` credit exceeds the limit (§4.1)."""
        if received > self.limit:
            raise ProtocolError(
                f"peer sent {received} bytes, beyond the flow control limit {self.limit}",
                error_code=TransportErrorCode.FLOW_CONTROL_ERROR,
                frame_type=frame_type,
            )

    @property
    def wants_update(self) -> bool:
        """True when the application consumed past half the window (send an update)."""
        return self.consumed >= self.update_at

    def consume(self, amount: int) -> bool:
        """The application consumed ``amount`` bytes; True when an update is now due."""
        self.consumed += amount
        return self.consumed >= self.update_at

    def advance(self, now: float, rtt: float) -> int:
        """Auto-tune the window and raise the limit to ``consumed + window``; returns it."""
        epoch_time = self._epoch_time
        if epoch_time is not None and rtt > 0:
            read = self.consumed - self._epoch_consumed
            # A whole window would take elapsed * window / read seconds at this pace.
            if read > 0 and (now - epoch_time) * self.window < AUTOTUNE_RTTS * rtt * read:
                self.grow(self.window * AUTOTUNE_FACTOR)
        self._epoch_time = now
        self._epoch_consumed = self.consumed
        self.limit = max(self.limit, self.consumed + self.window)
        self.update_at = self._threshold()
        return self.limit

    def grow(self, window: int) -> None:
        """Make the window at least ``window`` (capped at ``max_window``)."""
        window = min(window, self.max_window)
        if window > self.window:
            self.window = window
            self.update_at = self._threshold()

    def on_acked(self, limit: int) -> None:
        """An update carrying ``limit`` was acknowledged."""
        self.acked_limit = max(self.acked_limit, limit)
