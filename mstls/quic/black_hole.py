"""Path MTU black holes and EMSGSIZE for a QUIC connection (RFC 8899 §4.3, §4.6, §5.2).

Theory of operation
-------------------
:class:`~mstls.quic.mtu.PathMtu` decides; this mixin wires it to the rest of
the connection.  After every batch of acknowledgements and losses (an ACK
frame, a loss timer) the packets are shown to
:meth:`~mstls.quic.mtu.PathMtu.on_ack`; a driver whose socket refused a
datagram as too big (EMSGSIZE) calls :meth:`BlackHoleMixin.on_datagram_too_big`.
When either reveals a black hole the connection falls back to the base size:
the congestion controller learns the new maximum datagram size (RFC 9002 §7.2)
and every outstanding 1-RTT packet larger than it is released, its frames sent
again in base-size packets at once, without a congestion signal (the loss was
the path's size, not its load).
"""

from __future__ import annotations

from typing import Any

from ..core.recovery import PacketNumberSpace
from .ecn_marking import EcnMixin

__all__ = ["BlackHoleMixin"]


class BlackHoleMixin(EcnMixin):
    """Black-hole detection hooks of :class:`~mstls.quic.connection.QuicConnection`."""

    def on_datagram_too_big(self, size: int, now: float) -> None:
        """The driver's socket refused a datagram of ``size`` bytes (EMSGSIZE):
        shrink to the base size if it was an ordinary packet, lower the probe
        search bound if it was a probe; what it carried is sent again."""
        mtu = self.mtu
        if size <= mtu.base:
            return
        if size > mtu.current:
            # A refused probe is lost now, not after a timer (its PING record), and
            # its size is too big at once (no MAX_PROBES tries).
            self.recovery.release_larger_than(PacketNumberSpace.APPLICATION, mtu.current, now)
        if mtu.on_too_big(size, now):
            self._shrink_to_base(now)

    def _check_black_hole(self, result: Any, now: float) -> None:
        """After recovery handled an ACK or a loss timer (``AckResult``/``TimeoutResult``)."""
        mtu = self.mtu
        if mtu.current <= mtu.base:
            return
        lost = getattr(result, "lost", ())
        acked = getattr(result, "acked", ())
        if (lost or acked) and mtu.on_ack(acked, lost, now):
            self._shrink_to_base(now)

    def _shrink_to_base(self, now: float) -> None:
        base = self.mtu.base
        self.recovery.congestion.set_max_datagram_size(base)
        self.recovery.release_larger_than(PacketNumberSpace.APPLICATION, base, now)
