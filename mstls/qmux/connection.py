"""A QMux connection over TLS 1.3, sans-I/O (draft-ietf-quic-qmux-02, RFC 8446).

Theory of operation
-------------------
:class:`QMuxConnection` runs QMux records (§3.2) as TLS application data over
our :class:`~mstls.tls.tcp.TLSConnection`, and feeds their frames to the same
:class:`~mstls.core.stream_manager.StreamManager` QUIC uses, in its ordered
mode (§4.1).  It owns no socket, thread or clock; its surface mirrors
:class:`~mstls.quic.connection.QuicConnection` so that drivers treat both
alike.  A driver:

1. calls :meth:`~QMuxConnection.connect` (client) once the TCP connection is up;
2. feeds what TCP delivers to :meth:`~QMuxConnection.receive_data`, a TCP FIN
   to :meth:`~QMuxConnection.receive_eof`, a reset or fatal socket error to
   :meth:`~QMuxConnection.on_transport_error`;
3. after *every* call (timers and application stream writes included, and also
   after termination) writes what :meth:`~QMuxConnection.data_to_send` returns,
   calling it again until it returns ``b""`` or the socket is full (then again
   once it is writable: each call produces at most ``max_send_per_call``
   bytes); then, once :attr:`~QMuxConnection.should_shutdown_write` is true,
   shuts down the TCP write side (once), and once
   :attr:`~QMuxConnection.is_terminated` closes the socket;
4. calls :meth:`~QMuxConnection.handle_timer` when
   :meth:`~QMuxConnection.get_timer` passes, and drains
   :meth:`~QMuxConnection.next_event`.

Every entry point takes ``now`` (seconds on the driver's monotonic clock).

Start (§4.2).  Each side queues its QX_TRANSPORT_PARAMETERS record at once; the
TLS layer holds it until the 1-RTT write key exists, so the server's goes right
after its Finished and the client's right after its own.  Stream frames are
produced only once the peer's parameters arrived (before that the stream layer
has no credit anyway).  The handshake deadline covers TLS *and* the peer's
parameters.

Receiving (:mod:`.receiving`).  TLS records → QMux records (bounded by our
max_record_size) → frames decoded with the QMux table → the handler table or
the stream layer.  All of it is untrusted input; a
:class:`~mstls.exceptions.ProtocolError` closes the connection with its code.

Sending.  :meth:`~QMuxConnection.data_to_send` fills records of
``min(send_record_size, peer max_record_size)`` bytes (four full TLS records at
our defaults, one with a peer that keeps the §5.2 default) through a
:class:`~mstls.qmux.records.RecordSink`, pending QX_PING frames first, up to
``max_send_per_call`` bytes per call (brief T5).

Flow control is the stream layer's, unchanged (§6): TCP's own round-trip time
is invisible here, so window auto-tuning keeps the stream layer's conservative
default RTT, which lets a fast reader's windows grow to the configured maxima.

Lifecycle (§7): the table :data:`~mstls.core.lifecycle.QMUX_TRANSITIONS`
(``HANDSHAKE`` → ``ESTABLISHED`` → ``CLOSING`` | ``DRAINING`` → ``TERMINATED``),
applied by :meth:`QMuxConnection._apply`, one
:class:`~mstls.core.events.ConnectionTerminatedEvent` per connection; the
timers are the table :data:`QMUX_TIMERS`.  What each row sends:

============================  =============  ================================  =========
what happened                 kind           we send                           next state
============================  =============  ================================  =========
:meth:`close` / local error   close          CONNECTION_CLOSE, close_notify    closing
peer CONNECTION_CLOSE         close          close_notify (§7.3: no frames)    draining
idle timeout (§7.1)           idle_timeout   close_notify only (§7.2)          closing
peer close_notify, no         idle_timeout   close_notify                      terminated
CONNECTION_CLOSE (by_peer)
handshake deadline            handshake_     nothing                           terminated
                              timeout
TCP FIN without either (E8)   premature_     nothing                           terminated
                              close
TLS alert sent or received    tls_error      the alert (TLS queued it)         terminated
TCP reset / socket error      tcp_reset,     nothing                           terminated
                              io_error
============================  =============  ================================  =========

A peer's close_notify without CONNECTION_CLOSE is what §7.2 prescribes for its
idle timeout, so it is a clean, authenticated end reported as the peer's idle
timeout — not a truncation; streams without FIN still fail, never end with
``b""``.  A TCP FIN or reset without either is a premature close (brief E8):
its reason and :attr:`~QMuxConnection.termination_error` (a
:class:`~mstls.exceptions.PrematureClose`) give the application bytes that
did arrive.  Closing and draining last until the peer's close_notify or FIN
(§7.2: wait for the peer's graceful shutdown, discarding what it sends) or
``close_timeout``.  :attr:`~QMuxConnection.termination_error` is the exception
a driver raises for every later call (brief E3).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from ..codes import TransportErrorCode
from ..core.events import ConnectionTerminatedEvent, Event
from ..core.lifecycle import (
    QMUX_TRANSITIONS,
    CloseInfo,
    Lifecycle,
    LifecycleEvent,
    State,
    TerminationKind,
)
from ..core.stream_manager import StreamManager
from ..core.timers import Timer, TimerRow, TimerTable
from ..exceptions import (
    ConnectionTerminated,
    Error,
    PrematureClose,
    ProtocolError,
    TLSError,
    kept,
)
from ..stats import ConnectionStats, snapshot
from ..tls.engine import TLSHandshake
from ..tls.server import ServerHandshake
from ..tls.states import HandshakeState
from ..tls.tcp import TLSConnection
from ..wire.frames import ApplicationCloseFrame, ConnectionCloseFrame, encode_frame
from ..wire.qmux import QxTransportParametersFrame, RecordReader, encode_record
from ..wire.transport_params import TransportParameters
from .config import QMuxConfig
from .datagrams import DatagramMixin
from .early import EarlySender, early_data_limits
from .ping import PingState
from .receiving import ReceivingMixin
from .records import RecordSink

__all__ = ["MAX_REASON_BYTES", "TRANSPORT_ERROR_KINDS", "QMuxConnection"]

#: Reason phrases we send are cut to this many bytes (the frame must fit a record).
MAX_REASON_BYTES = 1024
#: Kinds :meth:`QMuxConnection.on_transport_error` accepts: a TCP reset by the
#: peer, or any other fatal socket error, and the lifecycle event each is.
TRANSPORT_ERROR_EVENTS = {
    "tcp_reset": LifecycleEvent.TCP_RESET,
    "io_error": LifecycleEvent.IO_ERROR,
}
TRANSPORT_ERROR_KINDS = frozenset(TRANSPORT_ERROR_EVENTS)


class QMuxConnection(ReceivingMixin, DatagramMixin):
    """One QMux connection over TLS 1.3; see the module documentation for the call order."""

    def __init__(self, config: QMuxConfig, *, is_client: bool, now: float) -> None:
        self.config = config
        self.is_client = is_client
        self.lifecycle = Lifecycle(QMUX_TRANSITIONS)
        self.events: deque[Event] = deque()
        self.close_info: CloseInfo | None = None
        #: The exception every later call on this connection raises (brief E3).
        self.termination_error: Error | None = None
        self.created = now
        self.tls_connection = TLSConnection(config.tls, is_client=is_client)
        #: The TLS handshake engine (peer, alpn_protocol, ...), as ``QuicConnection.tls``.
        self.tls: TLSHandshake = self.tls_connection.handshake
        self.handshake_complete = False
        self.local_params = config.transport_parameters()
        if isinstance(self.tls, ServerHandshake):  # tickets remember them (RFC 9000 §7.4.1)
            self.tls.early_data_limits = early_data_limits(self.local_params)
        self.peer_params: TransportParameters | None = None
        self.streams = StreamManager(
            is_client,
            self.local_params,
            max_stream_window=config.max_stream_data_window,
            max_connection_window=config.max_data_window,
            max_tracked_streams=config.max_tracked_streams,
            ordered_transport=True,
        )
        self.ping_state = PingState()
        self.early = EarlySender()
        self._init_datagrams()
        self._reader = RecordReader(config.max_record_size)
        self._send_capacity = config.send_record_size
        #: The idle timeout in force (seconds, 0: none): min of both sides' (§7.1).
        self.idle_timeout = config.idle_timeout
        self.handshake_deadline: float | None = now + config.handshake_timeout
        #: Server: the ClientHello is due first, by the shorter ``client_hello_timeout``.
        self._after_hello = self.handshake_deadline
        self._awaiting_hello = not is_client and config.client_hello_timeout < (
            config.handshake_timeout
        )
        if self._awaiting_hello:
            self.handshake_deadline = now + config.client_hello_timeout
        self.close_deadline: float | None = None
        self._last_received = now
        self._last_sent = now  # records that reset the idle timer (keep-alives do not)
        self._last_activity = now  # any record either way, and keep-alive attempts
        #: TLS record bytes read from and written to TCP (statistics).
        self.wire_bytes_received = 0
        self.wire_bytes_sent = 0
        self._started = False
        self._write_closed = False
        self._peer_shut = False
        self._shutdown_ready = False
        if not is_client:
            self._start()

    # -- public API: state -----------------------------------------------------------------
    @property
    def state(self) -> State:
        """The lifecycle state (§7)."""
        return self.lifecycle.state

    @property
    def is_established(self) -> bool:
        return self.handshake_complete and self.lifecycle.state is State.ESTABLISHED

    @property
    def is_terminated(self) -> bool:
        return self.lifecycle.state is State.TERMINATED

    @property
    def should_shutdown_write(self) -> bool:
        """True once our last bytes (close_notify or a fatal alert) were returned by
        :meth:`data_to_send`: the driver shuts down the TCP write side now (§7.2)."""
        return self._shutdown_ready

    @property
    def early_data_accepted(self) -> bool | None:
        """Whether 0-RTT data was accepted (RFC 8446 §4.2.10): None until known,
        False after a handshake without it (rejected data is resent, :mod:`.early`)."""
        accepted = self.tls_connection.early_data_accepted
        if accepted is None and self.handshake_complete:
            return False
        return accepted

    @property
    def early_data_possible(self) -> bool:
        """Client: 0-RTT is in use, so replay-safe streams may send before the handshake."""
        return self.early.remembered is not None

    def mark_early(self, stream_id: int) -> None:
        """Client: ``stream_id``'s data is replay-safe and may go as 0-RTT data."""
        self.early.mark(stream_id)

    @property
    def bytes_received(self) -> int:
        """Application bytes TLS delivered so far (what a premature close reports)."""
        return self.tls_connection.bytes_received

    @property
    def latest_rtt(self) -> float | None:
        """Round-trip time measured by the latest answered QX_PING, in seconds."""
        return self.ping_state.latest_rtt

    def stats(self, now: float) -> ConnectionStats:
        """A snapshot of the counters (definitions in :mod:`mstls.stats`): RTT from
        QX_PING round trips (§4.3, RFC 9002 §5), no loss or congestion figures (TCP
        retransmits below us).  Valid after termination too."""
        return snapshot(
            "tcp",
            now - self.created,
            self.ping_state.rtt,
            self.streams,
            bytes_sent=self.wire_bytes_sent,
            bytes_received=self.wire_bytes_received,
            **self.datagrams.stats(),
        )

    # -- public API: lifecycle -------------------------------------------------------------
    def connect(self, now: float) -> None:
        """Client: start the TLS handshake (queue the ClientHello)."""
        if not self.is_client:
            raise ValueError("only a client connects")
        if not self._started:
            self._start()

    def _start(self) -> None:
        """Start TLS and queue QX_TRANSPORT_PARAMETERS, the first frame (§4.2)."""
        self._started = True
        tls = self.tls_connection
        tls.start()
        record = encode_record(encode_frame(QxTransportParametersFrame(self.local_params)))
        if self.is_client and self.early.begin(tls, self.streams):
            tls.send_early(record)  # 0-RTT: the first frame goes first, early (.early)
        else:
            tls.send(record)

    def close(
        self,
        error_code: int = 0,
        reason: str = "",
        *,
        is_application: bool = True,
        now: float,
    ) -> None:
        """Close (§7.2): CONNECTION_CLOSE, then close_notify; the closing state follows."""
        info = CloseInfo(error_code, None, reason, by_peer=False, is_application=is_application)
        self._enter_closing(info, now)

    def ping(self) -> int:
        """Queue a QX_PING request (§4.3); returns its sequence number."""
        return self.ping_state.request()

    def next_event(self) -> Event | None:
        """The next event, or ``None``; stream events come from the stream layer."""
        if not self.events:
            self.events.extend(self.streams.pull_events())
        return self.events.popleft() if self.events else None

    # -- public API: input -----------------------------------------------------------------
    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Process bytes TCP delivered (untrusted input)."""
        if self.lifecycle.state is State.TERMINATED:
            return
        if self.lifecycle.live and self._deadline_passed(now):
            # A passed deadline comes first (docs/error-model.md, T1-T5): late bytes
            # neither reset the idle timer nor complete the handshake (§7.1).
            self.handle_timer(now)
        error: TLSError | None = None
        self.wire_bytes_received += len(data)
        try:
            self.tls_connection.receive_data(data)
        except TLSError as exc:  # PeerAlert included; records before it still count
            error = kept(exc)  # a local holding the traced original would be a cycle
        if self._awaiting_hello and self.tls.state is not HandshakeState.START:
            self._awaiting_hello = False  # the ClientHello is in: the full timeout applies
            self.handshake_deadline = self._after_hello
        self._drain_tls_events(now)
        if error is not None:
            self._on_tls_error(error)

    def receive_eof(self, now: float) -> None:
        """TCP delivered a FIN.  Without close_notify or CONNECTION_CLOSE: premature close (E8)."""
        if self.lifecycle.state is State.TERMINATED:
            return
        self._peer_shut = True
        reason = "TCP FIN without TLS close_notify"
        try:
            self.tls_connection.receive_eof()
        except PrematureClose as exc:
            reason = exc.reason
        except TLSError as exc:
            self._on_tls_error(kept(exc))
            return
        self._apply(LifecycleEvent.TCP_FIN, *self._premature(reason, by_peer=True))

    def on_transport_error(self, kind: str, now: float, reason: str = "") -> None:
        """The driver's socket failed: ``kind`` is ``"tcp_reset"`` (ECONNRESET, EPIPE)
        or ``"io_error"`` (any other fatal error).  Terminates at once (§7.4); while
        live this is a premature close (E8)."""
        event = TRANSPORT_ERROR_EVENTS.get(kind)
        if event is None:
            raise ValueError(f"unknown transport error kind {kind!r}")
        reset = event is LifecycleEvent.TCP_RESET
        what = "TCP connection reset" if reset else "TCP socket error"
        self._apply(event, *self._premature(f"{what}{': ' + reason if reason else ''}", reset))

    # -- public API: output and timers ----------------------------------------------------------
    def data_to_send(self, now: float) -> bytes | bytearray:
        """Bytes to write to TCP, in order (also after termination, until empty)."""
        if self.lifecycle.live:
            if self.peer_params is not None:
                self._produce_records(now)
            elif room := self.early.room(self.tls_connection):
                self._produce_records(now, room)
        out = self.tls_connection.data_to_send()
        self.wire_bytes_sent += len(out)
        if self._write_closed and (self.tls_connection.handshake_complete or self.is_terminated):
            self._shutdown_ready = True
        return out

    @property
    def awaiting_client_hello(self) -> bool:
        """Server: the ClientHello is not complete yet (its deadline applies)."""
        return self._awaiting_hello

    def expire_client_hello(self, now: float) -> None:
        """Server, all handshake slots taken: if the ClientHello is still incomplete,
        its deadline is ``now`` (the next :meth:`handle_timer` fails the connection)."""
        if self._awaiting_hello:
            self.handshake_deadline = now

    def get_timer(self) -> float | None:
        """The earliest deadline at which :meth:`handle_timer` must be called."""
        return QMUX_TIMERS.next_deadline(self)

    def handle_timer(self, now: float) -> None:
        """Act on every deadline that has passed (:data:`QMUX_TIMERS`)."""
        QMUX_TIMERS.fire(self, now)

    def _on_close_timer(self, now: float) -> None:
        self._apply(LifecycleEvent.CLOSE_TIMER)

    def _on_handshake_timer(self, now: float) -> None:
        stage = "TLS" if not self.handshake_complete else "the peer's transport parameters"
        reason = f"handshake did not complete in {self.config.handshake_timeout:g} s ({stage})"
        if self._awaiting_hello:
            reason = f"no complete ClientHello within {self.config.client_hello_timeout:g} s"
        info = CloseInfo(TransportErrorCode.NO_ERROR, None, reason, False, False)
        self._apply(LifecycleEvent.HANDSHAKE_TIMEOUT, info)

    def _on_idle_timer(self, now: float) -> None:
        reason = f"idle timeout after {self.idle_timeout:g} s"
        info = CloseInfo(TransportErrorCode.NO_ERROR, None, reason, False, False)
        if self._apply(LifecycleEvent.IDLE_TIMEOUT, info):
            self._shutdown_write()  # §7.2: no frames, a close_notify
            self._start_close_timer(now)

    def _on_keepalive_timer(self, now: float) -> None:
        self.ping_state.request()
        self._last_activity = now

    def _deadline_passed(self, now: float) -> bool:
        """The idle or handshake deadline is at or before ``now``."""
        idle = self._idle_deadline()
        handshake = self.handshake_deadline
        return (idle is not None and now >= idle) or (handshake is not None and now >= handshake)

    def _idle_deadline(self) -> float | None:
        """§7.1: reset by every record received and every record sent."""
        if not self.idle_timeout:
            return None
        return max(self._last_received, self._last_sent) + self.idle_timeout

    def _keepalive_deadline(self) -> float | None:
        interval = self.config.keepalive_interval
        if interval is None or self.peer_params is None or not self.handshake_complete:
            return None
        return max(self._last_activity, self._last_received) + interval

    # -- sending ---------------------------------------------------------------------------
    def _produce_records(self, now: float, early_room: int = 0) -> None:
        """Fill records from QX_PING and the stream layer, up to the per-call budget;
        with ``early_room``, 0-RTT records of replay-safe streams (:mod:`.early`)."""
        budget = self.config.max_send_per_call
        capacity = self._send_capacity
        ping = self.ping_state
        streams = self.streams
        datagrams = self.datagrams
        send: Callable[[bytes | bytearray], object] = self.tls_connection.send
        if early_room:
            budget, capacity = early_room, self.early.record_capacity(early_room)
            send = self.tls_connection.send_early
            self.early.used = True
        while budget > 0:
            if (
                not ping.has_pending
                and not datagrams.has_data_to_send
                and not streams.has_data_to_send()
            ):
                break
            answers = ping.response_pending
            sink = RecordSink(capacity)
            control = ping.pending_frames(now) if ping.has_pending else b""
            if control:
                sink.add(control)
            if datagrams.has_data_to_send and not early_room:  # not replay-safe: not early
                datagrams.write_frames(sink, self.max_datagram_size)
            streams.write_frames(sink, now)
            record = sink.finish()
            if not record:
                break
            send(record)
            budget -= len(record)
            self._last_activity = now
            if answers or sink.size > len(control):
                self._last_sent = now  # a keep-alive alone does not keep us alive (§7.1)

    # -- lifecycle internals -----------------------------------------------------------------
    def _fail(self, error: ProtocolError, now: float) -> None:
        """A local protocol error: close with its code (RFC 9000 §11.1)."""
        info = CloseInfo(error.error_code, error.frame_type, error.reason, False, False)
        self._enter_closing(info, now)

    def _apply(
        self, event: LifecycleEvent, info: CloseInfo | None = None, error: Error | None = None
    ) -> bool:
        """Move the lifecycle by ``event``; if that ends the connection, record ``info``
        (and ``error``, the exception later calls raise).  Returns whether the state
        changed."""
        before = self.lifecycle.state
        kind = self.lifecycle.apply(event)
        if kind is not None:
            assert info is not None, f"{event.name} ends the connection without a cause"
            self._terminated(info, kind, error)
        return self.lifecycle.state is not before

    def _enter_closing(self, info: CloseInfo, now: float) -> None:
        if not self._started:  # nothing was sent: nothing to close on the wire
            self._apply(LifecycleEvent.ABANDON, info)
            return
        if not self._apply(LifecycleEvent.LOCAL_CLOSE, info):
            return
        reason = info.reason.encode()[:MAX_REASON_BYTES]
        frame: ConnectionCloseFrame | ApplicationCloseFrame
        if info.is_application:
            frame = ApplicationCloseFrame(info.error_code, reason)
        else:
            frame = ConnectionCloseFrame(info.error_code, info.frame_type or 0, reason)
        self.tls_connection.send(encode_record(encode_frame(frame)))
        self._shutdown_write()
        self._start_close_timer(now)

    def _start_close_timer(self, now: float) -> None:
        """The closing or draining wait (§7.2): until the peer's close_notify or FIN."""
        self.close_deadline = now + self.config.close_timeout

    def _shutdown_write(self) -> None:
        if not self._write_closed:
            self._write_closed = True
            self.tls_connection.close()

    def _premature(self, reason: str, by_peer: bool) -> tuple[CloseInfo, Error]:
        """E8: the byte stream ended without CONNECTION_CLOSE or close_notify."""
        received = self.tls_connection.bytes_received
        partial = " (in the middle of a QMux record)" if self._reader.buffered else ""
        text = f"{reason}; {received} application bytes had arrived{partial}"
        info = CloseInfo(TransportErrorCode.INTERNAL_ERROR, None, text, by_peer, False)
        error = PrematureClose(
            text, bytes_received=received, wire_bytes_received=self.wire_bytes_received
        )
        return info, error

    def _terminated(
        self, info: CloseInfo, kind: TerminationKind, error: Error | None = None
    ) -> None:
        """Record why the connection ended and emit the one termination event."""
        self.close_info = info
        self.handshake_deadline = None
        self.termination_error = (
            kept(error)
            if error is not None
            else ConnectionTerminated(
                info.error_code,
                info.reason,
                by_peer=info.by_peer,
                is_application=info.is_application,
                frame_type=info.frame_type,
            )
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


_LIVE_TIMERS: tuple[TimerRow[QMuxConnection], ...] = (
    TimerRow(Timer.HANDSHAKE, lambda c: c.handshake_deadline, QMuxConnection._on_handshake_timer),
    TimerRow(Timer.IDLE, QMuxConnection._idle_deadline, QMuxConnection._on_idle_timer),
    TimerRow(
        Timer.KEEPALIVE, QMuxConnection._keepalive_deadline, QMuxConnection._on_keepalive_timer
    ),
)
_CLOSE_TIMER: TimerRow[QMuxConnection] = TimerRow(
    Timer.CLOSE, lambda c: c.close_deadline, QMuxConnection._on_close_timer
)
#: The timers armed in each lifecycle state, in the order they are handled (§7).
QMUX_TIMERS: TimerTable[QMuxConnection] = TimerTable(
    {
        State.HANDSHAKE: _LIVE_TIMERS,
        State.ESTABLISHED: _LIVE_TIMERS,
        State.CLOSING: (_CLOSE_TIMER,),
        State.DRAINING: (_CLOSE_TIMER,),
        State.TERMINATED: (),
    }
)
