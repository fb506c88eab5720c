"""Per-connection statistics: one immutable snapshot, the same for QUIC and QMux.

Theory of operation
-------------------
:class:`ConnectionStats` is what ``stats()`` returns on every connection object
(the sans-I/O :class:`~mstls.quic.connection.QuicConnection` and
:class:`~mstls.qmux.connection.QMuxConnection`, the blocking
:class:`mstls.Connection`, :class:`mstls.trio.Connection`).  It is a frozen
snapshot: the connection keeps plain integer counters on its hot path and only
builds this object when asked, so taking stats costs nothing until it is done.

Definitions (every counter starts at 0 when the connection is created and only
grows; times are seconds):

* **RTT** (RFC 9002 §5).  Over UDP, the QUIC estimator: ``latest_rtt`` is the
  newest sample (§5.1), ``min_rtt`` the smallest one (§5.2), ``smoothed_rtt`` and
  ``rtt_variance`` the exponentially weighted mean and mean deviation after the
  peer's ACK delay is subtracted (§5.3).  Over TCP, the same estimator fed by
  QX_PING round trips (draft-ietf-quic-qmux-02 §4.3) — keep-alive pings or
  explicit ``ping()`` calls; without one all four are ``None``.  They are
  ``None`` before the first sample, never the RFC's 333 ms initial guess.
* **Loss** (RFC 9002 §6).  ``packets_lost`` / ``bytes_lost``: packets declared
  lost by the packet or time threshold (§6.1), sizes as sent in their UDP
  datagram.  Path MTU probes are not counted: their loss says the path is too
  narrow for them, not that anything was lost (RFC 9000 §14.4, RFC 8899).
* **Retransmissions**.  QUIC never resends a packet; it resends *frames*
  (RFC 9000 §13.3).  ``retransmissions`` counts the lost ack-eliciting packets
  whose frames were handed back to be sent again (stream data, CRYPTO, control
  frames).  ``probe_timeouts`` counts probe timeouts (§6.2), each of which sends
  one or two probe packets; ``pto_count`` is the current backoff exponent (§6.2.1,
  reset by an acknowledgement).  Over TCP all three are 0: TCP retransmits
  below us, invisibly.
* **Traffic**.  ``bytes_sent`` / ``bytes_received``: over UDP the datagram
  payloads (every QUIC packet, undecryptable ones included); over TCP the TLS
  record bytes written to and read from the socket.  ``packets_sent``: QUIC
  packets (coalesced ones counted one by one, RFC 9000 §12.2);
  ``packets_received``: QUIC packets decrypted and not duplicates.  Over TCP
  both are 0: QMux has no packets.
* **Congestion** (RFC 9002 §7, UDP only, else ``None``): ``congestion_window``,
  ``slow_start_threshold`` (``None`` until the first congestion event) and
  ``bytes_in_flight`` (§2).  ``path_mtu``: the largest UDP payload the path
  carries as far as the connection knows (RFC 9000 §14; ``None`` over TCP);
  ``path_mtu_black_holes``: how often it fell back to 1200 bytes because larger
  packets stopped arriving or the socket refused them (RFC 8899 §4.3).
* **ECN** (RFC 9000 §13.4, UDP only, else ``None``): ``ecn_state`` is the
  validation state of what we send (``testing``, ``unknown``, ``capable``,
  ``failed``); ``ecn_ect0_received`` / ``ecn_ce_received`` count 1-RTT packets
  that arrived ECT(0) / CE-marked; ``ecn_ect0_reported`` / ``ecn_ce_reported``
  are the peer's latest 1-RTT counts of ours (its ACK_ECN frames).
* **Streams**: ``streams_opened_local`` / ``streams_opened_peer`` — streams
  opened by us and by the peer (RFC 9000 §2.1; a peer stream opened implicitly
  by a higher-numbered one counts).
* **Datagrams** (RFC 9221): ``datagrams_sent`` / ``datagrams_received`` /
  ``datagrams_dropped`` — see :mod:`mstls.core.datagrams`.
* ``duration``: seconds since the connection object was created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import attrs

if TYPE_CHECKING:
    from .core.stream_manager import StreamManager

__all__ = ["ConnectionStats", "RttEstimate", "snapshot"]


@attrs.frozen(kw_only=True)
class ConnectionStats:
    """A snapshot of one connection's counters; see the module documentation."""

    #: ``"udp"`` (QUIC v1) or ``"tcp"`` (QMux over TLS 1.3).
    transport: str
    #: Seconds since the connection was created.
    duration: float
    #: RFC 9002 §5.3 smoothed RTT, seconds; ``None`` before the first sample.
    smoothed_rtt: float | None = None
    #: RFC 9002 §5.2 minimum RTT, seconds.
    min_rtt: float | None = None
    #: RFC 9002 §5.1 latest RTT sample, seconds.
    latest_rtt: float | None = None
    #: RFC 9002 §5.3 rttvar (mean deviation), seconds.
    rtt_variance: float | None = None
    packets_sent: int = 0
    packets_received: int = 0
    #: RFC 9002 §6.1 packets declared lost (path MTU probes excluded).
    packets_lost: int = 0
    bytes_lost: int = 0
    #: Lost ack-eliciting packets whose frames were queued to be sent again.
    retransmissions: int = 0
    #: RFC 9002 §6.2 probe timeouts since the start.
    probe_timeouts: int = 0
    #: RFC 9002 §6.2.1 current PTO backoff exponent.
    pto_count: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    #: RFC 9002 §7 congestion window, bytes (UDP only).
    congestion_window: int | None = None
    #: RFC 9002 §7.3 ssthresh, bytes; ``None`` in the initial slow start or over TCP.
    slow_start_threshold: int | None = None
    #: RFC 9002 §2 bytes in flight (UDP only).
    bytes_in_flight: int | None = None
    #: Largest UDP payload the path is known to carry (RFC 9000 §14, UDP only).
    path_mtu: int | None = None
    #: Fallbacks to the base PMTU (RFC 8899 §4.3, UDP only).
    path_mtu_black_holes: int | None = None
    #: RFC 9000 §13.4.2 ECN validation state of our marking (UDP only).
    ecn_state: str | None = None
    #: 1-RTT packets received ECT(0) / CE (RFC 9000 §13.4.1, UDP only).
    ecn_ect0_received: int | None = None
    ecn_ce_received: int | None = None
    #: The peer's ECT(0) / CE counts of our 1-RTT packets (ACK_ECN, UDP only).
    ecn_ect0_reported: int | None = None
    ecn_ce_reported: int | None = None
    streams_opened_local: int = 0
    streams_opened_peer: int = 0
    #: RFC 9221: DATAGRAM frames sent, payloads received, and datagrams dropped
    #: (received ones not read before the receive queue overflowed, oldest first,
    #: §5; queued ones that no longer fit the path).
    datagrams_sent: int = 0
    datagrams_received: int = 0
    datagrams_dropped: int = 0

    @property
    def streams_opened(self) -> int:
        """Streams opened by either side."""
        return self.streams_opened_local + self.streams_opened_peer

    @property
    def loss_rate(self) -> float:
        """``packets_lost / packets_sent`` (0.0 before anything was sent)."""
        return self.packets_lost / self.packets_sent if self.packets_sent else 0.0


class RttEstimate(Protocol):
    """What :func:`snapshot` reads of an RTT estimator (RFC 9002 §5)."""

    @property
    def has_sample(self) -> bool: ...
    @property
    def smoothed_rtt(self) -> float: ...
    @property
    def min_rtt(self) -> float: ...
    @property
    def latest_rtt(self) -> float: ...
    @property
    def rttvar(self) -> float: ...


def snapshot(
    transport: str, duration: float, rtt: RttEstimate, streams: StreamManager, **counters: Any
) -> ConnectionStats:
    """A :class:`ConnectionStats` from what both transports have, an RTT estimate and
    a stream manager (streams opened, RFC 9000 §2.1), plus their own ``counters``."""
    sampled = rtt.has_sample
    local, peer = streams.stream_counts.opened()
    return ConnectionStats(
        transport=transport,
        duration=duration,
        smoothed_rtt=rtt.smoothed_rtt if sampled else None,
        min_rtt=rtt.min_rtt if sampled else None,
        latest_rtt=rtt.latest_rtt if sampled else None,
        rtt_variance=rtt.rttvar if sampled else None,
        streams_opened_local=local,
        streams_opened_peer=peer,
        **counters,
    )
