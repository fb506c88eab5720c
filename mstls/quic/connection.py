"""A QUIC v1 connection, sans-I/O (RFC 9000, RFC 9001, RFC 9002).

Theory of operation
-------------------
The connection owns no socket, thread or clock.  A driver calls, in any order:

* :meth:`QuicConnection.receive_datagram` with each datagram from the peer;
* :meth:`QuicConnection.datagrams_to_send` and sends what it returns to
  :attr:`QuicConnection.peer_address` (call it after every other call);
* :meth:`QuicConnection.get_timer` to learn the next deadline, and
  :meth:`QuicConnection.handle_timer` once it passes;
* :meth:`QuicConnection.next_event` to drain events (handshake completed,
  stream events, termination).

Every entry point takes ``now`` (seconds on the driver's monotonic clock).

The work is split by concern: :mod:`.receiving` turns datagrams into frames and
dispatches them through a table, :mod:`.sending` fills datagrams from the frame
producers (ACKs, CRYPTO, streams, connection IDs), :mod:`.handshake` glues the
TLS engine (CRYPTO data in, keys and bytes out) and the transport parameters.
This module holds the state, the public API, the timers and the lifecycle
(closing and draining periods, idle timeout, RFC 9000 §10).

The parts are one class: each module's class derives from the one before it, in
the order of the method resolution the parts had as mixins (:mod:`.state`,
:mod:`.paths`, :mod:`.datagrams`, :mod:`.ecn_marking`, :mod:`.black_hole`,
:mod:`.early`, :mod:`.handshake`, :mod:`.sending`, :mod:`.receiving`, then
:class:`QuicConnection`).  Single inheritance is what mypyc compiles into one
native class with direct attribute slots (issue 15: the compiled build); a
part that calls a method of a later one declares it in :class:`.ConnectionState`
or its own class as a stub.  No part holds a reference to the connection in an
object the connection owns (:mod:`.control_frames`, the TLS hook in
:mod:`.handshake`), so a dropped connection is freed without the cycle collector.

The lifecycle (``HANDSHAKE`` → ``ESTABLISHED`` → ``CLOSING`` | ``DRAINING`` →
``TERMINATED``) is the table :data:`~mstls.core.lifecycle.QUIC_TRANSITIONS`;
every change goes through :meth:`QuicConnection._apply`, which emits the one
:class:`~mstls.core.events.ConnectionTerminatedEvent` when the table says the
connection ends.  The timers are the table :data:`QUIC_TIMERS`.
"""

from __future__ import annotations

import math
import os
from collections import deque

from ..codes import TransportErrorCode
from ..core.connection_ids import LocalConnectionIds, PeerConnectionIds
from ..core.events import ConnectionTerminatedEvent, Event
from ..core.lifecycle import (
    QUIC_TRANSITIONS,
    CloseInfo,
    Lifecycle,
    LifecycleEvent,
    State,
    TerminationKind,
)
from ..core.stateless_reset import StatelessResetKey
from ..core.timers import Timer, TimerRow, TimerTable
from ..exceptions import Error
from ..stats import ConnectionStats, snapshot
from ..wire.transport_params import TransportParameters
from .config import INITIAL_MAX_DATAGRAM_SIZE, QuicConfig
from .mtu import PathMtu
from .qlog import open_qlog
from .receiving import ReceivingMixin
from .state import Address

__all__ = ["QuicConnection"]

#: Closing and draining last three PTOs (RFC 9000 §10.2).
CLOSE_PERIOD_PTOS = 3
#: Lifecycle states as qlog ConnectionState values (quic-events connection_state_updated);
#: ``attempted``, ``handshake_started`` and ``handshake_confirmed`` are logged apart.
QLOG_STATES = {
    State.HANDSHAKE: "handshake_started",
    State.ESTABLISHED: "handshake_complete",
    State.CLOSING: "closing",
    State.DRAINING: "draining",
    State.TERMINATED: "closed",
}


class QuicConnection(ReceivingMixin):
    """One QUIC v1 connection; see the module documentation for the call order."""

    def __init__(
        self,
        config: QuicConfig,
        *,
        is_client: bool,
        now: float,
        peer_address: Address,
        local_cid: bytes | None = None,
        initial_dcid: bytes | None = None,
        original_dcid: bytes | None = None,
        peer_cid: bytes | None = None,
        retry_source_cid: bytes | None = None,
        address_validated: bool = False,
        version: int | None = None,
    ) -> None:
        """A client needs only ``config``, ``now`` and ``peer_address``.

        A server connection is created by the endpoint from the client's first
        Initial: ``initial_dcid`` is that packet's DCID (the Initial keys derive
        from it), ``original_dcid`` the client's very first DCID (they differ
        after a Retry, whose SCID is ``retry_source_cid``), ``peer_cid`` the
        client's SCID, ``local_cid`` the ID the endpoint chose for us, ``version``
        the version of that Initial (a client starts in ``config.versions[0]``).
        """
        self.config = config
        self.is_client = is_client
        self.peer_address = peer_address
        self._init_paths(peer_address)
        self.events: deque[Event] = deque()
        self.lifecycle = Lifecycle(QUIC_TRANSITIONS)
        self.close_info: CloseInfo | None = None
        #: The exception behind the end when it is not the close itself (a shed
        #: handshake, :mod:`.pending_handshakes`); the session raises it.
        self.termination_error: Error | None = None
        #: The version of our long headers; the original one until negotiation
        #: moves it (RFC 9368, :mod:`.negotiation`).
        self.original_version = config.start_version if version is None else version
        self.version = self.original_version
        self.original_initial_recv = None
        self.created = now
        reset_key = config.stateless_reset_key or StatelessResetKey.generate()
        scid = local_cid or config.new_cid()
        self.local_cids = LocalConnectionIds(
            scid, reset_key, cid_length=config.cid_length, generator=config.cid_generator
        )
        if is_client:
            dcid = os.urandom(8)
            self.original_dcid = dcid
            initial = dcid
            peer_initial = dcid
        else:
            if initial_dcid is None or original_dcid is None or peer_cid is None:
                raise ValueError("a server connection needs the client's connection IDs")
            self.original_dcid = original_dcid
            initial = initial_dcid
            peer_initial = peer_cid
        self.host_cid = scid
        self.retry_source_cid = retry_source_cid
        self.peer_cids = PeerConnectionIds(
            peer_initial, active_connection_id_limit=config.active_connection_id_limit
        )
        self.peer_cid_set = not is_client
        self.address_validated = is_client or address_validated
        self.bytes_received = 0
        self.bytes_sent = 0
        self.packets_received = 0
        self.mtu = PathMtu(
            INITIAL_MAX_DATAGRAM_SIZE,
            config.pmtu_max,
            enabled=config.pmtu_discovery,
            raise_interval=config.pmtu_raise_interval,
        )
        self._init_deadlines(now)
        self.peer_params: TransportParameters | None = None
        self.qlog = (
            open_qlog(
                config.qlog_dir,
                vantage="client" if is_client else "server",
                odcid=self.original_dcid,
                now=now,
            )
            if config.qlog_dir is not None
            else None
        )
        self._init_spaces(initial)
        self._init_zero_rtt()
        self._init_handshake(now)
        self._init_sending()
        self._init_ecn()
        self._init_datagrams()
        if self.qlog is not None and not is_client:
            self.qlog.state_updated(now, "handshake_started")

    def _init_deadlines(self, now: float) -> None:
        """The idle, handshake, closing and key-discard deadlines (RFC 9000 §10.1, §10.2)."""
        config = self.config
        self.idle_timeout = config.idle_timeout
        self.idle_deadline = now + config.idle_timeout
        self.handshake_deadline: float | None = now + config.handshake_timeout
        self.close_deadline: float | None = None
        self.key_discard_deadline: float | None = None
        self.last_ack_eliciting_sent: float | None = None
        self.ack_eliciting_sent_since_receive = False
        self.last_sent = now

    # -- public API: lifecycle ---------------------------------------------------------
    def connect(self, now: float) -> None:
        """Client: start the handshake (queue the ClientHello)."""
        if not self.is_client:
            raise ValueError("only a client connects")
        if self.qlog is not None:
            self.qlog.state_updated(now, "attempted")
        self.start_handshake(now)

    @property
    def state(self) -> State:
        """The lifecycle state (RFC 9000 §10)."""
        return self.lifecycle.state

    @property
    def is_established(self) -> bool:
        return self.handshake_complete and self.lifecycle.state is State.ESTABLISHED

    @property
    def is_terminated(self) -> bool:
        return self.lifecycle.state is State.TERMINATED

    def close(
        self,
        error_code: int = 0,
        reason: str = "",
        *,
        is_application: bool = True,
        now: float,
    ) -> None:
        """Close the connection (RFC 9000 §10.2): CONNECTION_CLOSE, then a closing period."""
        self._enter_closing(
            CloseInfo(error_code, None, reason, by_peer=False, is_application=is_application),
            now,
        )

    def ping(self) -> None:
        """Send a PING (RFC 9000 §19.2) in the next 1-RTT packet: its acknowledgement
        is a fresh RTT sample (RFC 9002 §5.1) on a connection with nothing else to
        acknowledge.  A lost PING is not repeated; ask again."""
        if self.lifecycle.live:
            self.ping_pending = True

    def next_event(self) -> Event | None:
        """The next event, or ``None``; stream events come from the stream layer."""
        if not self.events:
            self.events.extend(self.streams.pull_events())
        return self.events.popleft() if self.events else None

    def stats(self, now: float) -> ConnectionStats:
        """A snapshot of the counters (RFC 9002 §5 RTT, §6 loss, §7 congestion);
        definitions in :mod:`mstls.stats`.  Valid after termination too."""
        recovery = self.recovery
        cc = recovery.congestion
        ssthresh = cc.ssthresh
        return snapshot(
            "udp",
            now - self.created,
            recovery.rtt,
            self.streams,
            packets_sent=self.packets_sent,
            packets_received=self.packets_received,
            packets_lost=recovery.packets_lost,
            bytes_lost=recovery.bytes_lost,
            retransmissions=recovery.retransmissions,
            probe_timeouts=recovery.probe_timeouts,
            pto_count=recovery.pto_count,
            bytes_sent=self.bytes_sent,
            bytes_received=self.bytes_received,
            congestion_window=cc.cwnd,
            slow_start_threshold=None if ssthresh == math.inf else int(ssthresh),
            bytes_in_flight=cc.bytes_in_flight,
            path_mtu=self.mtu.current,
            **self._path_stats(),
            **self.datagrams.stats(),
        )

    # -- public API: timers -----------------------------------------------------------
    def get_timer(self) -> float | None:
        """The earliest deadline at which :meth:`handle_timer` must be called."""
        return QUIC_TIMERS.next_deadline(self)

    def handle_timer(self, now: float) -> None:
        """Act on every deadline that has passed (:data:`QUIC_TIMERS`)."""
        QUIC_TIMERS.fire(self, now)

    def _on_close_timer(self, now: float) -> None:
        self._apply(LifecycleEvent.CLOSE_TIMER, None, now)

    def _on_idle_timer(self, now: float) -> None:
        self._terminate_silently("idle timeout", LifecycleEvent.IDLE_TIMEOUT, now)

    def _on_handshake_timer(self, now: float) -> None:
        self._terminate_silently(
            "handshake did not complete in time", LifecycleEvent.HANDSHAKE_TIMEOUT, now
        )

    def _on_key_discard_timer(self, now: float) -> None:
        self.discard_previous_keys(now)

    # -- lifecycle internals ------------------------------------------------------------
    def close_period(self) -> float:
        return CLOSE_PERIOD_PTOS * self.pto_interval()

    def fail(self, error: Error, now: float) -> None:
        """A local protocol error: close with its code (RFC 9000 §11.1)."""
        code = getattr(error, "error_code", TransportErrorCode.INTERNAL_ERROR)
        frame_type = getattr(error, "frame_type", None)
        reason = getattr(error, "reason", str(error))
        self._enter_closing(
            CloseInfo(code, frame_type, reason, by_peer=False, is_application=False), now
        )

    def _apply(
        self, event: LifecycleEvent, info: CloseInfo | None, now: float | None = None
    ) -> bool:
        """Move the lifecycle by ``event``; emit the termination if it ends the
        connection now (with ``info``).  Returns whether the state changed.

        qlog: every change is a ``connection_state_updated`` at ``now`` (None: the
        caller has no clock reading); the trace is closed when the connection
        reaches ``TERMINATED``."""
        before = self.lifecycle.state
        kind = self.lifecycle.apply(event)
        after = self.lifecycle.state
        if self.qlog is not None and after is not before:
            self.qlog.state_updated(now, QLOG_STATES[after])
        if kind is not None:
            assert info is not None, f"{event.name} ends the connection without a cause"
            self.close_info = info
            self._emit_terminated(info, kind, now)
        if after is State.TERMINATED and self.qlog is not None:
            self.qlog.close()
            self.qlog = None
        return after is not before

    def _enter_closing(self, info: CloseInfo, now: float) -> None:
        if self._apply(LifecycleEvent.LOCAL_CLOSE, info, now):
            self.close_deadline = now + self.close_period()
            self.close_pending = True

    def enter_draining(self, info: CloseInfo, now: float) -> None:
        """The peer closed: no more sending, state kept for 3 PTOs (RFC 9000 §10.2.2)."""
        if self._apply(LifecycleEvent.PEER_CLOSE, info, now):
            self.close_deadline = now + self.close_period()

    def abandon(self, error: Error, now: float) -> None:
        """Discard the connection at once, sending nothing (RFC 9000 §6.2)."""
        code = getattr(error, "error_code", TransportErrorCode.INTERNAL_ERROR)
        reason = getattr(error, "reason", str(error))
        info = CloseInfo(code, None, reason, by_peer=False, is_application=False)
        self._apply(LifecycleEvent.ABANDON, info, now)

    def _terminate_silently(
        self, reason: str, event: LifecycleEvent, now: float | None = None
    ) -> None:
        """Idle timeout, handshake timeout, stateless reset: no packets (RFC 9000 §10.1)."""
        info = CloseInfo(
            TransportErrorCode.NO_ERROR,
            None,
            reason,
            by_peer=event is LifecycleEvent.STATELESS_RESET,
            is_application=False,
        )
        self._apply(event, info, now)

    def _emit_terminated(self, info: CloseInfo, kind: TerminationKind, now: float | None) -> None:
        if self.qlog is not None:
            self.qlog.connection_closed(
                now,
                by_peer=info.by_peer,
                error_code=info.error_code,
                is_application=info.is_application,
                reason=info.reason,
                kind=str(kind),
            )
        self.events.append(
            ConnectionTerminatedEvent(
                error_code=info.error_code,
                frame_type=info.frame_type,
                reason=info.reason,
                by_peer=info.by_peer,
                is_application=info.is_application,
                kind=kind,
            )
        )

    def on_stateless_reset(self) -> None:
        """RFC 9000 §10.3.1: the connection is gone; enter draining without sending."""
        self._terminate_silently("stateless reset received", LifecycleEvent.STATELESS_RESET)

    def reset_idle_timer(self, now: float) -> None:
        """RFC 9000 §10.1: the effective timeout is at least three PTOs."""
        self.idle_deadline = now + max(self.idle_timeout, 3 * self.pto_interval())


def _live_timers() -> tuple[TimerRow[QuicConnection], ...]:
    """RFC 9000 §10.1 idle, T1 handshake, RFC 9001 §6.5 key discard, RFC 9002 §6.2
    loss detection, then pacing/delayed ACK (wakes the driver only)."""
    return (
        TimerRow(Timer.IDLE, lambda c: c.idle_deadline, QuicConnection._on_idle_timer),
        TimerRow(
            Timer.HANDSHAKE, lambda c: c.handshake_deadline, QuicConnection._on_handshake_timer
        ),
        TimerRow(
            Timer.KEY_DISCARD,
            lambda c: c.key_discard_deadline,
            QuicConnection._on_key_discard_timer,
        ),
        TimerRow(
            Timer.LOSS_DETECTION,
            lambda c: c.recovery.loss_detection_deadline(),
            QuicConnection.on_loss_detection_timeout,
        ),
        TimerRow(Timer.PATH_VALIDATION, QuicConnection.path_deadline, QuicConnection.on_path_timer),
        TimerRow(Timer.SEND, QuicConnection.send_deadline),
    )


_CLOSE_TIMER: TimerRow[QuicConnection] = TimerRow(
    Timer.CLOSE, lambda c: c.close_deadline, QuicConnection._on_close_timer
)
#: The timers armed in each lifecycle state, in the order they are handled.
QUIC_TIMERS: TimerTable[QuicConnection] = TimerTable(
    {
        State.HANDSHAKE: _live_timers(),
        State.ESTABLISHED: _live_timers(),
        State.CLOSING: (_CLOSE_TIMER,),
        State.DRAINING: (_CLOSE_TIMER,),
        State.TERMINATED: (),
    }
)
