"""The receive path of a QMux connection: TLS events → records → frames → handlers.

Theory of operation
-------------------
:class:`ReceivingMixin` is the half of
:class:`~mstls.qmux.connection.QMuxConnection` that consumes what TLS
delivered.  TLS events come in order: ``HandshakeCompleted``, application data,
close_notify.  Application data goes through the
:class:`~mstls.wire.qmux.RecordReader` (a record above our max_record_size is a
FRAME_ENCODING_ERROR as soon as its Size is read, draft-ietf-quic-qmux-02 §5.2),
then each record's frames are decoded with the QMux table (prohibited frames
are FRAME_ENCODING_ERROR, §4) and dispatched through :data:`FRAME_HANDLERS`,
the stream layer's handlers taking the rest.  The first frame of the first
record must be QX_TRANSPORT_PARAMETERS and no later frame may be (§4.2); a
record without frames is a PROTOCOL_VIOLATION (§3.2: "one or more").

Every byte here is untrusted input: the only exceptions handlers raise are the
project's protocol errors, and the connection closes with their code.  Frames
after a CONNECTION_CLOSE, and everything received while closing or draining,
are discarded (§7.2).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from ..codes import TransportErrorCode
from ..core.datagrams import DatagramQueues
from ..core.events import Event, HandshakeCompletedEvent
from ..core.lifecycle import CloseInfo, Lifecycle, LifecycleEvent
from ..core.stream_manager import STREAM_FRAME_HANDLERS, StreamManager
from ..exceptions import Error, PeerAlert, ProtocolError, TLSError
from ..tls.engine import HandshakeCompleted
from ..tls.tcp import ApplicationData, CloseNotifyReceived, TLSConnection
from ..wire.buffer import Reader
from ..wire.frame_types import FrameType, frame_type_name
from ..wire.frames import ApplicationCloseFrame, ConnectionCloseFrame, Frame, decode_frame
from ..wire.qmux import (
    QMUX_FRAME_DECODERS,
    QMuxFrameType,
    QxPingFrame,
    QxTransportParametersFrame,
    RecordReader,
)
from ..wire.transport_params import TransportParameters, validate_qmux_parameters
from .config import QMuxConfig
from .datagrams import DATAGRAM_HANDLERS
from .early import EarlySender, remember_parameters
from .ping import PingState

__all__ = ["FRAME_HANDLERS", "ReceivingMixin"]


def _violation(reason: str, frame_type: int | None) -> ProtocolError:
    return ProtocolError(
        reason, error_code=TransportErrorCode.PROTOCOL_VIOLATION, frame_type=frame_type
    )


class ReceivingMixin:
    """Receive path of :class:`~mstls.qmux.connection.QMuxConnection` (declarations
    of the shared state first; the connection defines and initialises it)."""

    config: QMuxConfig
    lifecycle: Lifecycle
    events: deque[Event]
    tls_connection: TLSConnection
    streams: StreamManager
    ping_state: PingState
    early: EarlySender
    is_client: bool
    datagrams: DatagramQueues
    peer_params: TransportParameters | None
    handshake_complete: bool
    handshake_deadline: float | None
    idle_timeout: float
    _reader: RecordReader
    _send_capacity: int
    _last_received: float
    _peer_shut: bool
    _write_closed: bool

    # Implemented by the connection.
    def _fail(self, error: ProtocolError, now: float) -> None:
        raise NotImplementedError

    def _apply(
        self, event: LifecycleEvent, info: CloseInfo | None = None, error: Error | None = None
    ) -> bool:
        raise NotImplementedError

    def _shutdown_write(self) -> None:
        raise NotImplementedError

    def _start_close_timer(self, now: float) -> None:
        raise NotImplementedError

    def _drain_tls_events(self, now: float) -> None:
        tls = self.tls_connection
        while (event := tls.next_event()) is not None:
            if type(event) is ApplicationData:
                if self.lifecycle.live:  # §7.2: discarded while closing or draining
                    self._on_application_data(event.data, now)
            elif isinstance(event, HandshakeCompleted):
                self._on_handshake_completed(event)
            elif isinstance(event, CloseNotifyReceived):
                self._on_close_notify()
            # SessionTicketReceived: the TLS engine already stored the ticket.

    def _on_application_data(self, data: bytes | bytearray, now: float) -> None:
        try:
            for payload in self._reader.feed(data):
                self._process_record(payload, now)
                self._last_received = now
                if not self.lifecycle.live:
                    return
        except ProtocolError as exc:
            self._fail(exc, now)
        except Error as exc:  # never let a project error escape on untrusted input
            self._fail(ProtocolError(str(exc), error_code=TransportErrorCode.INTERNAL_ERROR), now)

    def _process_record(self, payload: bytes | memoryview, now: float) -> None:
        """The frames of one record (§3.2, §4).  Handles untrusted input."""
        reader = Reader(payload)
        if reader.eof():
            raise _violation("QMux record without frames (§3.2: one or more)", None)
        if self.peer_params is None:
            frame = decode_frame(reader, QMUX_FRAME_DECODERS)
            if not isinstance(frame, QxTransportParametersFrame):
                name = frame_type_name(frame.frame_type)
                raise _violation(
                    f"first frame is {name}, not QX_TRANSPORT_PARAMETERS", frame.frame_type
                )
            self._on_transport_parameters(frame)
        own = FRAME_HANDLERS
        streams = STREAM_FRAME_HANDLERS  # one table for every connection (no bound methods)
        manager = self.streams
        while not reader.eof():
            frame = decode_frame(reader, QMUX_FRAME_DECODERS)
            frame_type = frame.frame_type
            handler = own.get(frame_type)
            if handler is not None:
                handler(self, frame, now)
                if not self.lifecycle.live:
                    return  # after CONNECTION_CLOSE the rest is not processed
            else:
                stream_handler = streams.get(frame_type)
                if stream_handler is None:
                    raise _violation(f"{frame_type_name(frame_type)} not handled", frame_type)
                stream_handler(manager, frame)

    def _on_transport_parameters(self, frame: QxTransportParametersFrame) -> None:
        """The peer's QX_TRANSPORT_PARAMETERS (§4.2, §5)."""
        params = frame.parameters
        try:
            validate_qmux_parameters(params)
        except ProtocolError as exc:
            exc.frame_type = QMuxFrameType.QX_TRANSPORT_PARAMETERS
            raise
        if self.is_client:
            self.early.finish(params, self.tls_connection, self.streams)
            remember_parameters(self.tls_connection, params)
        self.peer_params = params
        self.streams.set_peer_parameters(params)
        self._send_capacity = min(self.config.send_record_size, params.max_record_size)
        self.datagrams.set_peer_limit(params.max_datagram_frame_size)  # RFC 9221 §3
        if params.max_idle_timeout:
            peer = params.max_idle_timeout / 1000
            self.idle_timeout = min(self.idle_timeout, peer) if self.idle_timeout else peer
        if self.handshake_complete:
            self.handshake_deadline = None

    def _on_second_transport_parameters(self, frame: Frame, now: float) -> None:
        raise _violation(
            "QX_TRANSPORT_PARAMETERS received other than as the first frame (§4.2)",
            QMuxFrameType.QX_TRANSPORT_PARAMETERS,
        )

    def _on_ping(self, frame: QxPingFrame, now: float) -> None:
        self.ping_state.on_frame(frame, now)

    def _on_padding(self, frame: Frame, now: float) -> None:
        """PADDING is permitted (§4) and means nothing."""

    def _on_connection_close(
        self, frame: ConnectionCloseFrame | ApplicationCloseFrame, now: float
    ) -> None:
        """CONNECTION_CLOSE (§7.3): answer with close_notify only, then drain."""
        is_application = isinstance(frame, ApplicationCloseFrame)
        info = CloseInfo(
            frame.error_code,
            None if is_application else frame.offending_frame_type,  # type: ignore[union-attr]
            frame.reason_text,
            by_peer=True,
            is_application=is_application,
        )
        if self._apply(LifecycleEvent.PEER_CLOSE, info):
            self._shutdown_write()
            self._start_close_timer(now)

    def _on_handshake_completed(self, event: HandshakeCompleted) -> None:
        self.handshake_complete = True
        if self.peer_params is not None:
            self.handshake_deadline = None
        self.lifecycle.apply(LifecycleEvent.HANDSHAKE_DONE)
        self.events.append(
            HandshakeCompletedEvent(
                alpn_protocol=event.alpn_protocol,
                cipher_suite=int(event.cipher_suite),
                peer=event.peer,
                server_name=event.server_name,
                resumed=event.resumed,
            )
        )

    def _on_close_notify(self) -> None:
        """The peer shut down its sending side (§7.2, §7.3)."""
        self._peer_shut = True
        partial = " in the middle of a QMux record" if self._reader.buffered else ""
        reason = (
            f"peer shut down with TLS close_notify and no CONNECTION_CLOSE{partial} "
            "(draft-ietf-quic-qmux-02 §7.2: its idle timeout)"
        )
        info = CloseInfo(TransportErrorCode.NO_ERROR, None, reason, True, False)
        if self._apply(LifecycleEvent.CLOSE_NOTIFY, info):
            self._shutdown_write()  # answer with ours (idempotent after CONNECTION_CLOSE)

    def _on_tls_error(self, error: TLSError) -> None:
        by_peer = isinstance(error, PeerAlert)
        info = CloseInfo(error.error_code, None, error.reason, by_peer, False)
        self._apply(LifecycleEvent.TLS_ERROR, info, error)
        if not by_peer:
            self._write_closed = True  # TLS queued our alert


_Handler = Callable[[ReceivingMixin, Any, float], None]
#: Frames the connection handles itself; every other permitted frame goes to the
#: stream layer (draft-ietf-quic-qmux-02 §4).
FRAME_HANDLERS: dict[int, _Handler] = {
    FrameType.PADDING: ReceivingMixin._on_padding,
    FrameType.CONNECTION_CLOSE: ReceivingMixin._on_connection_close,
    FrameType.CONNECTION_CLOSE_APPLICATION: ReceivingMixin._on_connection_close,
    QMuxFrameType.QX_TRANSPORT_PARAMETERS: ReceivingMixin._on_second_transport_parameters,
    QMuxFrameType.QX_PING_REQUEST: ReceivingMixin._on_ping,
    QMuxFrameType.QX_PING_RESPONSE: ReceivingMixin._on_ping,
    **DATAGRAM_HANDLERS,
}
