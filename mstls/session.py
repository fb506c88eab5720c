"""The public API's view of one sans-I/O connection, shared by the blocking and trio drivers.

Theory of operation
-------------------
A :class:`Session` wraps a QUIC (:class:`~mstls.quic.connection.QuicConnection`) or
QMux (:class:`~mstls.qmux.connection.QMuxConnection`) connection.  It holds what
the public API needs beyond the stream layer: which streams reached their end
(FIN), which were reset or stopped by the peer and with which code, the queue of
peer-opened streams, and the connection's error :class:`~mstls.errors.Channel`.

Drivers call :meth:`Session.pump_events` after every input or timer; it drains the
connection's events into that state and returns a :class:`Wakeups` naming exactly
the waiters to wake: the streams whose state changed, the acceptors, everyone when
the connection changed (handshake done, termination).  It never blocks, sleeps or
touches a socket; callers hold the driver's lock.

Error rules (brief E3-E6): a connection failure goes onto the channel once and is
replicated to every later caller; a stream reset fails reads only, a STOP_SENDING
fails writes only, and reads return everything delivered before the reset's error.

Per-stream memory (issue 11): a stream that ended cleanly leaves nothing here.  A
read after the end is answered from the stream layer: a live stream says FIN again,
and a stream it has forgotten (done on both sides) whose receiving part we did not
stop and the peer did not reset can only have ended with its FIN read.  Only the
exceptions (the peer's reset or STOP_SENDING, our own reset or STOP_SENDING, a
QMux acknowledgement still awaited) keep an entry, until :meth:`Session.forget`
when the application closes the stream.

"Acknowledged" (:meth:`Session.all_acknowledged`, behind both APIs'
``wait_acknowledged``) means the peer's transport holds every byte written so far
and the FIN if sent, and is recomputed on every call, never cached.  QUIC: the
peer ACKed all of it (RFC 9000 §3.1 "Data Recvd").  QMux has no ACKs (its frame
sink counts a frame as acknowledged once it is framed into a TLS record), so once
everything is framed a QX_PING is queued behind it and the data counts as
acknowledged when the peer answers that ping or a later one
(draft-ietf-quic-qmux-02 §4.3): TCP and TLS deliver in order and the peer's QMux
layer answers only after processing every record before the request, so the
peer's stream layer received all of it — the same promise as a QUIC ACK.
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Any

import attrs

from . import _errors as errors
from .core.events import (
    ConnectionTerminatedEvent,
    DatagramsAvailable,
    Event,
    HandshakeCompletedEvent,
    StopSendingReceived,
    StreamAcknowledged,
    StreamDataAvailable,
    StreamOpened,
    StreamReset,
    StreamsAvailable,
    StreamWritable,
)
from .core.stream_states import RecvState
from .exceptions import (
    DatagramError,
    DatagramQueueFull,
    Error,
    StreamLimitReached,
    StreamResetError,
    StreamStateError,
    StreamStoppedError,
)
from .stats import ConnectionStats

__all__ = ["Session", "Wakeups"]

#: Receiving states in which the peer sends nothing more and only reading is left.
_UNREAD_ENDS = frozenset({RecvState.DATA_RECVD, RecvState.RESET_RECVD})


@attrs.define
class Wakeups:
    """Whom an event batch concerns."""

    streams: set[int] = attrs.Factory(set)
    accept: bool = False
    open: bool = False
    connection: bool = False
    #: Received datagrams wait (RFC 9221).
    datagram: bool = False

    def __bool__(self) -> bool:
        return bool(self.streams or self.accept or self.open or self.connection or self.datagram)


#: What :meth:`Session.pump_events` returns when nothing happened (never changed).
_NO_WAKEUPS = Wakeups()


class Session:
    """Stream and connection state of one connection, as the public API sees it."""

    def __init__(self, conn: Any, *, transport: str) -> None:
        self.conn = conn
        self.transport = transport
        self.channel = errors.Channel(errors.Lib.QMUX if transport == "tcp" else errors.Lib.QUIC)
        self.handshake_done = False
        self.handshake_info: HandshakeCompletedEvent | None = None
        self.accept_queue: deque[int] = deque()
        #: Streams the peer reset (their code): every later read raises it (E5).
        self._reset: dict[int, int] = {}
        self._stopped: dict[int, int] = {}
        #: Streams we reset ourselves: their data will never be acknowledged.
        self._reset_sent: set[int] = set()
        #: Streams whose reading we stopped: a read raises, never reports an end.
        self._stop_sent: set[int] = set()
        #: QMux: stream -> (what was framed: bytes written and FIN, or None once the
        #: stream is forgotten; the QX_PING sequence number that must be answered).
        self._ack_pings: dict[int, tuple[tuple[int, bool] | None, int]] = {}
        self._pings_answered = -1
        #: Streams the application closed that the stream layer still holds: a reset or
        #: STOP_SENDING pumped for them later keeps nothing (pruned after each pump).
        self._forgotten: set[int] = set()
        #: Whether the data of the latest :meth:`read` reached the peer's FIN (the
        #: next read returns ``b""``): an echo then answers with its own FIN at once.
        self.read_reached_end = False

    # -- events --------------------------------------------------------------------------
    def pump_events(self) -> Wakeups:
        """Take the connection's events; whom they concern.  The result is read, never
        changed, by the callers: with nothing to report it is a shared empty one."""
        conn = self.conn
        event = conn.next_event()
        if event is None and not self._ack_pings and not self._forgotten:
            return _NO_WAKEUPS  # the common case: asked after every call
        wake = Wakeups()
        while event is not None:
            self._take(event, wake)
            event = conn.next_event()
        if self._ack_pings:
            self._wake_acknowledged(wake)
        if self._forgotten:
            self._prune_forgotten()
        return wake

    def _take(self, event: Event, wake: Wakeups) -> None:
        """Record one event and whom it wakes."""
        if isinstance(event, StreamDataAvailable | StreamWritable):
            wake.streams.add(event.stream_id)
        elif isinstance(event, StreamOpened):
            self.accept_queue.append(event.stream_id)
            wake.accept = True
        elif isinstance(event, StreamReset):
            if event.stream_id not in self._forgotten:
                self._reset[event.stream_id] = event.error_code
            wake.streams.add(event.stream_id)
        elif isinstance(event, StopSendingReceived):
            if event.stream_id not in self._forgotten:
                self._stopped[event.stream_id] = event.error_code
            wake.streams.add(event.stream_id)
        elif isinstance(event, StreamAcknowledged):
            wake.streams.add(event.stream_id)
        elif isinstance(event, StreamsAvailable):
            wake.open = True
        elif isinstance(event, DatagramsAvailable):
            wake.datagram = True
        elif isinstance(event, HandshakeCompletedEvent):
            self.handshake_done = True
            self.handshake_info = event
            wake.connection = True
        elif isinstance(event, ConnectionTerminatedEvent):
            self._on_terminated(event)
            wake.connection = True

    def _prune_forgotten(self) -> None:
        """Drop the closed streams the stream layer freed: no event can name them now."""
        get = self.conn.streams.get_stream
        self._forgotten = {sid for sid in self._forgotten if get(sid) is not None}

    def _wake_acknowledged(self, wake: Wakeups) -> None:
        """QMux: wake the streams whose acknowledging QX_PING was just answered."""
        answered = int(self.conn.ping_state.largest_acknowledged)
        if answered > self._pings_answered:
            self._pings_answered = answered
            wake.streams.update(
                sid for sid, (_, sequence) in self._ack_pings.items() if sequence <= answered
            )

    def _on_terminated(self, event: ConnectionTerminatedEvent) -> None:
        if not self.channel.failed:
            conn = self.conn
            factory, entries = errors.terminated_from_event(
                event,
                transport=self.transport,
                during_handshake=not self.handshake_done,
                idle_timeout=getattr(conn, "idle_timeout", None),
                bytes_received=getattr(conn, "bytes_received", None)
                if self.transport == "tcp"
                else None,
                cause=getattr(conn, "termination_error", None),
            )
            self.channel.fail(entries, factory)

    # -- statistics ------------------------------------------------------------------------
    def stats(self, now: float) -> ConnectionStats:
        """The connection's :class:`~mstls.stats.ConnectionStats` (also after it ended)."""
        stats: ConnectionStats = self.conn.stats(now)
        return stats

    def ping(self) -> None:
        """Ask for an RTT sample.  QMux: queue a QX_PING, whose answer feeds the RTT
        estimate (draft-ietf-quic-qmux §4.3), since TCP acknowledges nothing we see.
        QUIC: send a PING, whose acknowledgement is a sample (RFC 9002 §5.1).
        Quiet once the connection has failed."""
        if not self.failed and not self.conn.is_terminated:
            self.conn.ping()

    # -- checks ----------------------------------------------------------------------------
    @property
    def tracked_streams(self) -> int:
        """Per-stream entries held (for tests and statistics): the exceptions only."""
        return (
            len(self._reset)
            + len(self._stopped)
            + len(self._reset_sent)
            + len(self._stop_sent)
            + len(self._ack_pings)
            + len(self._forgotten)
        )

    @property
    def failed(self) -> bool:
        return self.channel.failed

    def check(self, op: str) -> None:
        """Raise the connection's failure (copied into the caller's queue) if it failed."""
        self.channel.raise_if_failed(op)

    # -- datagrams (RFC 9221) ----------------------------------------------------------------
    @property
    def max_datagram_size(self) -> int:
        """The largest datagram payload that may be sent now (0: none may)."""
        if self.failed or self.conn.is_terminated:
            return 0
        return int(self.conn.max_datagram_size)

    def send_datagram(self, data: bytes | bytearray | memoryview) -> None:
        """Queue one datagram.  A full queue raises :class:`DatagramQueueFull` bare
        (a would-block, E4); the other refusals are recorded in the caller's queue."""
        self.check("send_datagram")
        try:
            self.conn.send_datagram_frame(data)
        except DatagramQueueFull:
            raise
        except DatagramError as exc:
            raise errors.recorded(exc, lib=self.channel.lib) from None

    def receive_datagram(self) -> bytes | None:
        """The next received datagram, or ``None``; those that arrived before the
        connection failed are returned first (as reads return delivered data, E6),
        then its failure is raised."""
        data: bytes | None = self.conn.receive_datagram_frame()
        if data is None:
            self.check("receive_datagram")
        return data

    # -- streams -----------------------------------------------------------------------------
    def open_stream(self, bidirectional: bool, early: bool = False) -> int | None:
        """A new stream ID, or ``None`` while the peer's stream limit is reached;
        ``early``: its data is replay-safe and may go as 0-RTT data (QMux)."""
        self.check("open_stream")
        try:
            stream_id = int(self.conn.streams.open_stream(bidirectional))
        except StreamLimitReached:
            return None
        if early and self.early_data_possible:
            self.conn.mark_early(stream_id)
        return stream_id

    @property
    def early_data_possible(self) -> bool:
        """Client: 0-RTT is in use, so a replay-safe stream may send before the handshake."""
        return bool(getattr(self.conn, "early_data_possible", False))

    @property
    def ready(self) -> bool:
        """Streams may be used: the handshake completed or, on a server, the client's
        0-RTT data was accepted (its early streams are readable before the client's
        Finished, RFC 8446 §2.3; our own data then goes as 0.5-RTT data)."""
        if self.handshake_done:
            return True
        return self.early_data_accepted is True and not getattr(self.conn, "is_client", True)

    @property
    def early_data_accepted(self) -> bool | None:
        """Whether 0-RTT data was accepted: None until known, False after a handshake
        without it (RFC 8446 §4.2.10)."""
        accepted: bool | None = getattr(self.conn, "early_data_accepted", None)
        return False if accepted is None and self.handshake_done else accepted

    def accept(self) -> int | None:
        self.check("accept_stream")
        return self.accept_queue.popleft() if self.accept_queue else None

    def read(self, stream_id: int, max_bytes: int) -> bytes | None:
        """Data, ``b""`` at a clean FIN, or ``None`` when nothing is there yet.

        Every byte received contiguously before the peer's RESET_STREAM is returned
        first (E6; RFC 9000 §3.2 allows it, bytes beyond a gap are lost); then the
        reset raises :class:`~mstls.exceptions.StreamReset` with the peer's code,
        in the caller's queue only (E5), on this and every later read.
        """
        streams = self.conn.streams
        try:
            data, fin = streams.read(stream_id, max_bytes)
        except StreamResetError as exc:
            # Kept even before the StreamReset event is pumped: the stream may be
            # forgotten now, and a later read must not take it for a clean end.
            self._reset[stream_id] = exc.error_code
            raise errors.stream_error("reset", exc.error_code, stream_id) from None
        except StreamStateError:
            code = self._reset.get(stream_id)
            if code is not None:
                raise errors.stream_error("reset", code, stream_id) from None
            if stream_id not in self._stop_sent and streams.ended_readable(stream_id):
                return b""  # forgotten after its FIN was read (see the module doc)
            self.check("read")
            raise
        self.read_reached_end = fin
        if data or fin:
            return bytes(data)
        code = self._reset.get(stream_id)
        if code is not None:
            raise errors.stream_error("reset", code, stream_id)
        self.check("read")
        return None

    def write(self, stream_id: int, data: bytes | bytearray | memoryview, fin: bool = False) -> int:
        """Bytes the stream layer took (0: full, wait for StreamWritable)."""
        self._check_write(stream_id)
        try:
            return int(self.conn.streams.write(stream_id, data, fin=fin))
        except StreamStoppedError as exc:
            raise errors.stream_error("stopped", exc.error_code, stream_id) from None
        except StreamStateError:
            self._check_write(stream_id)
            raise

    def conclude(self, stream_id: int) -> None:
        """Send FIN.  After the peer's STOP_SENDING this is a quiet no-op: the peer
        asked for no more data and ending ours complies (RFC 9000 §3.5)."""
        if stream_id in self._stopped:
            return
        self.write(stream_id, b"", fin=True)

    def _check_write(self, stream_id: int) -> None:
        code = self._stopped.get(stream_id)
        if code is not None:
            raise errors.stream_error("stopped", code, stream_id)
        self.check("write")

    def reset(self, stream_id: int, code: int) -> None:
        self.check("reset")
        # Already finished or reset: nothing is left to abandon.
        with contextlib.suppress(StreamStateError):
            self.conn.streams.reset_stream(stream_id, code)
        stream = self.conn.streams.get_stream(stream_id)
        if stream is not None and stream.send is not None and stream.send.reset_code is not None:
            self._reset_sent.add(stream_id)

    def stop_sending(self, stream_id: int, code: int) -> None:
        self.check("stop_sending")
        with contextlib.suppress(StreamStateError):
            stream = self.conn.streams.get_stream(stream_id)
            self.conn.streams.stop_sending(stream_id, code)
            if stream is not None and stream.recv is not None and stream.recv.stop_code is not None:
                self._stop_sent.add(stream_id)  # took effect (not after the end was read)

    def all_acknowledged(self, stream_id: int) -> bool:
        """Every byte written on ``stream_id`` so far, and its FIN if sent, is
        acknowledged (see the module documentation for QUIC and QMux).

        Checked anew on every call.  QMux: may queue a QX_PING (the caller flushes
        the connection's output).  The peer's STOP_SENDING raises
        :class:`~mstls.exceptions.StreamStopped` (E6: it fails the write side);
        our own reset raises :class:`StreamStateError`: that data is abandoned.
        """
        code = self._stopped.get(stream_id)
        if code is not None:
            raise errors.stream_error("stopped", code, stream_id)
        stream = self.conn.streams.get_stream(stream_id)
        send = None if stream is None else stream.send
        if stream_id in self._reset_sent or (send is not None and send.reset_code is not None):
            raise errors.recorded(
                StreamStateError(
                    f"stream {stream_id} was reset: its data will not be acknowledged",
                    stream_id=stream_id,
                )
            )
        if send is not None and not send.all_acknowledged:
            return False
        if self.transport != "tcp" or (stream is not None and send is None):
            return True  # QUIC ACKs, or a receive-only stream (nothing written)
        if send is not None and not send.write_offset and not send.fin_requested:
            return True  # nothing written: nothing to wait for
        return self._ping_answered(stream_id, send)

    def _ping_answered(self, stream_id: int, send: Any) -> bool:
        """QMux: everything is framed; a QX_PING queued after it must come back."""
        mark = None if send is None else (int(send.write_offset), bool(send.fin_requested))
        entry = self._ack_pings.get(stream_id)
        if entry is not None:
            framed, sequence = entry
            # Forgotten: nothing was written since a mark made after its FIN.
            valid = framed == mark or (mark is None and (framed is None or framed[1]))
            if valid:
                if self.conn.ping_state.largest_acknowledged >= sequence:
                    del self._ack_pings[stream_id]
                    return True
                return False
        if not self.failed and not self.conn.is_terminated:
            self._ack_pings[stream_id] = (mark, int(self.conn.ping()))
        return False

    def forget(self, stream_id: int) -> None:
        """The application closed ``stream_id``: drop what is kept for its later calls.

        A receiving part that needs nothing more from the peer (its reset or all its
        data arrived, unread) is ended too, silently, so a stream done on both sides
        is forgotten and the peer's stream credit comes back (RFC 9000 §3.2, §4.6)."""
        stream = self.conn.streams.get_stream(stream_id)
        recv = None if stream is None else stream.recv
        if recv is not None and recv.state in _UNREAD_ENDS:
            self.conn.streams.stop_sending(stream_id, 0)  # no frame: nothing to stop
        self._stop_sent.discard(stream_id)
        self._reset.pop(stream_id, None)
        self._stopped.pop(stream_id, None)
        self._reset_sent.discard(stream_id)
        self._ack_pings.pop(stream_id, None)
        if self.conn.streams.get_stream(stream_id) is not None:
            self._forgotten.add(stream_id)


def as_error(exc: BaseException) -> Error | None:
    return exc if isinstance(exc, Error) else None
