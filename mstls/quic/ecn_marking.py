"""ECN for a QUIC connection: which codepoint to send, which one arrived (RFC 9000 §13.4).

Theory of operation
-------------------
The connection owns no socket, so the driver and the connection share the work:

* *Sending.*  A driver whose socket can set the ECN field calls
  :meth:`EcnMixin.enable_ecn_marking`.  Each :meth:`datagrams_to_send` call then
  fixes one codepoint for the datagrams it returns, :attr:`EcnMixin.send_codepoint`
  (ECT(0) while :class:`~mstls.core.ecn.EcnValidator` says so, else Not-ECT); the
  driver sends them with it, and the packets are recorded as marked or not.
  Marking more than recorded is harmless for validation, the other way round
  would fail it.  A listener's socket sends for many connections: the endpoint
  reports each one's codepoint beside its output
  (:attr:`~mstls.quic.endpoint.ServerEndpoint.send_codepoints`,
  :mod:`mstls.core.ecn_runs`), so one whose validation failed sends Not-ECT
  (§13.4.2.2) while the others keep marking.
* *Receiving.*  The driver passes each datagram's codepoint
  (``receive_datagram(..., ecn=)``); every packet of the datagram is counted in
  its packet number space and the counts go out in ACK_ECN frames
  (:class:`~mstls.core.ack_tracker.AckTracker`, RFC 9000 §13.4.1).

``QuicConfig.ecn = False`` turns marking off (counts are still reported: they
cost nothing and let the peer validate).
"""

from __future__ import annotations

from typing import Any

from ..core.ecn import ECT0, EcnValidator
from ..core.recovery import PacketNumberSpace
from .datagrams import DatagramMixin

__all__ = ["EcnMixin"]


class EcnMixin(DatagramMixin):
    """ECN state of :class:`~mstls.quic.connection.QuicConnection`."""

    #: The codepoint of the datagrams the last ``datagrams_to_send`` returned.
    send_codepoint: int
    #: The codepoint of the datagram being received.
    receive_codepoint: int

    def _init_ecn(self) -> None:
        self.send_codepoint = 0
        self.receive_codepoint = 0
        self._ecn_socket = False
        self.recovery.ecn = EcnValidator(enabled=self.config.ecn)

    def enable_ecn_marking(self) -> None:
        """The driver's socket sends the codepoint in :attr:`send_codepoint`."""
        self._ecn_socket = True

    def _next_send_codepoint(self) -> int:
        if self._ecn_socket and self.recovery.ecn.marking:
            return ECT0
        return 0

    def _path_stats(self) -> dict[str, Any]:
        """The ECN and PMTU black-hole counters of :class:`~mstls.stats.ConnectionStats`."""
        app = PacketNumberSpace.APPLICATION
        received = self.spaces[app].acks.ecn_counts
        ecn = self.recovery.ecn
        reported = ecn.peer_counts(app)
        return {
            "path_mtu_black_holes": self.mtu.black_holes,
            "ecn_state": ecn.state.value,
            "ecn_ect0_received": received.ect0,
            "ecn_ce_received": received.ce,
            "ecn_ect0_reported": reported.ect0,
            "ecn_ce_reported": reported.ce,
        }
