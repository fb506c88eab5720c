"""The stream layer shared by QUIC and QMux (RFC 9000 §2-§4, draft-ietf-quic-qmux-02).

Theory of operation
-------------------
:class:`StreamManager` owns every stream of a connection, both flow-control
levels and the stream-count limits.  It has three faces:

* **Application calls**: :meth:`~StreamManager.open_stream`,
  :meth:`~StreamManager.write`, :meth:`~StreamManager.read`,
  :meth:`~StreamManager.reset_stream`, :meth:`~StreamManager.stop_sending`,
  :meth:`~StreamManager.accept_pending`.  Misuse raises a
  :class:`~mstls.exceptions.StreamError` subclass, never a connection error.
* **Frame handlers** ``on_*(frame)``, called by the connection for each
  received frame.  They handle untrusted input: every violation is a
  :class:`~mstls.exceptions.ProtocolError` carrying the RFC's error code and
  the frame type, which the connection turns into CONNECTION_CLOSE.
* **Output**: :meth:`~StreamManager.write_frames` fills a
  :class:`~mstls.core.sending.FrameSink` and :meth:`~StreamManager.pull_events`
  returns coalesced events (one per kind per stream).

Sending order within :meth:`~StreamManager.write_frames`: control frames first
(flow-control updates, blocked signals, RESET_STREAM, STOP_SENDING), then lost
stream data, then new stream data round-robin, one frame per stream per turn,
so a busy stream cannot starve the others.  Control frames are queued as
*intents* ``(frame type, stream ID)`` in an ordered set, and built when sent
from the *current* state: a lost MAX_DATA is resent with the current limit, a
lost STREAM_DATA_BLOCKED only if still blocked, a lost RESET_STREAM until
acknowledged.  Every frame carries a :data:`~mstls.core.sending.SentRecord`.

Limits: our stream windows start at our ``initial_max_stream_data_*`` and
auto-tune up to ``max_stream_window``; the connection window up to
``max_connection_window`` (kept at least :data:`CONNECTION_WINDOW_RATIO` times
the largest stream window).  The peer's concurrent stream limit stays what we
advertised: credit is returned with MAX_STREAMS as its streams are forgotten.
A stream is forgotten once both parts are terminal (the application has then
seen the end, the reset, or the acknowledgement); frames for it afterwards are
ignored.  Send buffers are ``send_buffer_size`` per stream.

Transport parameters use the sender's point of view (RFC 9000 §18.2): the
peer's ``initial_max_stream_data_bidi_remote`` limits what *we* send on
streams *we* open.  Until :meth:`~StreamManager.set_peer_parameters` the peer
gave no credit and no streams.

QMux (``ordered_transport=True``) runs on a reliable, ordered byte stream: a
STREAM frame that does not start where the previous one on its stream ended is
a PROTOCOL_VIOLATION, and its sink acknowledges frames as it takes them.

Helpers live beside it: :mod:`mstls.core.stream_limits` (the stream-count credit
of both sides) and :mod:`mstls.core.stream_control` (the control-frame builders).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from types import MethodType
from typing import Any

from ..codes import TransportErrorCode
from ..exceptions import (
    ConfigurationError,
    ProtocolError,
    StreamLimitReached,
    StreamStateError,
)
from ..wire.frame_types import FrameType, frame_type_name
from ..wire.frames import (
    DataBlockedFrame,
    MaxDataFrame,
    MaxStreamDataFrame,
    MaxStreamsFrame,
    ResetStreamFrame,
    StopSendingFrame,
    StreamDataBlockedFrame,
    StreamFrame,
    StreamsBlockedFrame,
    encode_frame,
)
from ..wire.transport_params import TransportParameters
from .events import (
    Event,
    StopSendingReceived,
    StreamAcknowledged,
    StreamDataAvailable,
    StreamOpened,
    StreamReset,
    StreamsAvailable,
    StreamWritable,
)
from .flow_control import ReceiveWindow, SendCredit
from .sending import FrameSink
from .stream_control import BUILDERS, CONNECTION_WINDOW_RATIO, ControlKey
from .stream_limits import (
    BIDI,
    DEFAULT_MAX_TRACKED_STREAMS,
    MAX_TRACKED_STREAMS_LIMIT,
    UNI,
    StreamCounts,
    check_tracked_streams,
    stream_kind,
)
from .streams import (
    DEFAULT_SEND_BUFFER,
    MAX_RECV_GAPS,
    NO_ROOM,
    RECV_TERMINAL,
    SEND_TERMINAL,
    RecvState,
    RecvStream,
    SendStream,
    Stream,
    is_bidirectional,
    is_local,
    make_stream_id,
    stream_index,
)

__all__ = [
    "CONNECTION_WINDOW_RATIO",
    "DEFAULT_MAX_CONNECTION_WINDOW",
    "DEFAULT_MAX_STREAM_WINDOW",
    "DEFAULT_MAX_TRACKED_STREAMS",
    "INITIAL_RTT",
    "MAX_TRACKED_STREAMS_LIMIT",
    "STREAM_FRAME_HANDLERS",
    "StreamManager",
    "check_stream_limits",
]

#: Largest auto-tuned receive window of one stream.
DEFAULT_MAX_STREAM_WINDOW = 16 << 20
#: Largest auto-tuned connection receive window.
DEFAULT_MAX_CONNECTION_WINDOW = 24 << 20
#: RTT assumed for window auto-tuning until the connection sets :attr:`StreamManager.rtt`
#: (RFC 9002 §6.2.2 kInitialRtt).
INITIAL_RTT = 0.333

#: Smallest STREAM frame: type, 1-byte ID and Length, no data (RFC 9000 §19.8).
_MIN_STREAM_FRAME = 3

_MAX_STREAMS_TYPES = (FrameType.MAX_STREAMS_BIDI, FrameType.MAX_STREAMS_UNI)
_STREAMS_BLOCKED_TYPES = (FrameType.STREAMS_BLOCKED_BIDI, FrameType.STREAMS_BLOCKED_UNI)


def _state_error(reason: str, frame_type: int) -> ProtocolError:
    return ProtocolError(
        f"{frame_type_name(frame_type)}: {reason}",
        error_code=TransportErrorCode.STREAM_STATE_ERROR,
        frame_type=frame_type,
    )


def check_stream_limits(
    params: TransportParameters, max_tracked_streams: int = DEFAULT_MAX_TRACKED_STREAMS
) -> None:
    """Raise :class:`ConfigurationError` if the stream counts we advertise
    (initial_max_streams_bidi/uni, RFC 9000 §18.2) exceed what we agree to track
    (the peer could make us keep that many streams), or if ``max_tracked_streams``
    itself is outside 1..:data:`MAX_TRACKED_STREAMS_LIMIT`."""
    check_tracked_streams(max_tracked_streams)
    for name in ("initial_max_streams_bidi", "initial_max_streams_uni"):
        if getattr(params, name) > max_tracked_streams:
            raise ConfigurationError(
                f"{name} ({getattr(params, name)}) exceeds max_tracked_streams "
                f"({max_tracked_streams}): the peer could make us track that many streams"
            )


class StreamManager:
    """Every stream of one connection, its flow control and its stream limits."""

    def __init__(
        self,
        is_client: bool,
        local_params: TransportParameters,
        *,
        send_buffer_size: int = DEFAULT_SEND_BUFFER,
        max_stream_window: int = DEFAULT_MAX_STREAM_WINDOW,
        max_connection_window: int = DEFAULT_MAX_CONNECTION_WINDOW,
        max_tracked_streams: int = DEFAULT_MAX_TRACKED_STREAMS,
        max_recv_gaps: int = MAX_RECV_GAPS,
        ordered_transport: bool = False,
    ) -> None:
        check_stream_limits(local_params, max_tracked_streams)
        self.is_client = is_client
        self.local_params = local_params
        self.peer_params: TransportParameters | None = None
        self.send_buffer_size = send_buffer_size
        self.max_stream_window = max_stream_window
        self.max_tracked_streams = max_tracked_streams
        self.max_recv_gaps = max_recv_gaps
        self.ordered_transport = ordered_transport
        #: Smoothed RTT in seconds, for window auto-tuning; the connection keeps it current.
        self.rtt = INITIAL_RTT
        #: Our connection-level receive window (§4.1) and the peer's credit for us.
        self.connection_window = ReceiveWindow(local_params.initial_max_data, max_connection_window)
        self.connection_credit = SendCredit(0)
        self._streams: dict[int, Stream] = {}
        #: Stream-count credit both ways (RFC 9000 §4.6).
        self.stream_counts = StreamCounts(
            local_params.initial_max_streams_bidi, local_params.initial_max_streams_uni
        )
        self._send_queue: deque[SendStream] = deque()
        #: 0-RTT: only these streams' new data is written (None: every stream's).
        self.send_only: set[int] | None = None
        self._retransmit_queue: deque[SendStream] = deque()
        self._control: dict[ControlKey, None] = {}
        self._events: dict[tuple[int, type], Event] = {}
        self._readable: dict[int, None] = {}  # StreamDataAvailable, made when pulled
        #: Peer streams not yet taken by :meth:`accept_pending`; a stream leaves when
        #: forgotten too (drivers learn of streams from StreamOpened and never poll).
        self._accept: dict[int, None] = {}

    # -- configuration -------------------------------------------------------------------
    def set_peer_parameters(self, params: TransportParameters) -> None:
        """Apply the peer's transport parameters (RFC 9000 §7.4, §18.2); limits only grow."""
        self.peer_params = params
        self.connection_credit.raise_limit(params.initial_max_data)
        for kind, limit in (
            (BIDI, params.initial_max_streams_bidi),
            (UNI, params.initial_max_streams_uni),
        ):
            if self.stream_counts.raise_peer_limit(kind, limit):
                self._event(-1 - kind, StreamsAvailable(kind == BIDI))
        for stream in self._streams.values():
            send = stream.send
            if send is None:
                continue
            send.credit.raise_limit(self._peer_stream_limit(send.stream_id))
            if send.has_sendable:
                self._schedule(send)

    def restart_peer_parameters(self, params: TransportParameters) -> str | None:
        """Rejected 0-RTT (RFC 9001 §4.6.2, RFC 9000 §7.4.1): the limits the streams
        ran on were remembered ones; put the peer's new ``params`` in force, lower
        ones too.  Returns the name of the first limit the streams already went
        beyond (their early data cannot be sent again within it), else None."""
        self.peer_params = params
        overrun: str | None = None
        credit = self.connection_credit
        credit.limit = params.initial_max_data
        if credit.used > credit.limit:
            overrun = "initial_max_data"
        for kind, name, limit in (
            (BIDI, "initial_max_streams_bidi", params.initial_max_streams_bidi),
            (UNI, "initial_max_streams_uni", params.initial_max_streams_uni),
        ):
            counts = self.stream_counts
            counts.peer_max[kind] = limit
            if counts.next_local[kind] > limit and overrun is None:
                overrun = name
        for stream in self._streams.values():
            send = stream.send
            if send is None or not is_local(stream.stream_id, self.is_client):
                continue
            send.credit.limit = self._peer_stream_limit(send.stream_id)
            if send.credit.used > send.credit.limit and overrun is None:
                bidi = is_bidirectional(send.stream_id)
                overrun = (
                    "initial_max_stream_data_bidi_remote" if bidi else "initial_max_stream_data_uni"
                )
        return overrun

    def _peer_stream_limit(self, stream_id: int) -> int:
        """The peer's initial credit for our sending on ``stream_id`` (§18.2)."""
        peer = self.peer_params
        if peer is None:
            return 0
        if not is_bidirectional(stream_id):
            return peer.initial_max_stream_data_uni
        if is_local(stream_id, self.is_client):
            return peer.initial_max_stream_data_bidi_remote
        return peer.initial_max_stream_data_bidi_local

    def _local_stream_window(self, stream_id: int) -> int:
        """Our initial window for receiving on ``stream_id`` (§18.2)."""
        local = self.local_params
        if not is_bidirectional(stream_id):
            return local.initial_max_stream_data_uni
        if is_local(stream_id, self.is_client):
            return local.initial_max_stream_data_bidi_local
        return local.initial_max_stream_data_bidi_remote

    def _new_stream(self, stream_id: int) -> Stream:
        local = is_local(stream_id, self.is_client)
        bidi = is_bidirectional(stream_id)
        send = recv = None
        if bidi or local:
            send = SendStream(
                stream_id,
                limit=self._peer_stream_limit(stream_id),
                buffer_size=self.send_buffer_size,
            )
        if bidi or not local:
            window = ReceiveWindow(self._local_stream_window(stream_id), self.max_stream_window)
            recv = RecvStream(
                stream_id, window, self.connection_window, max_gaps=self.max_recv_gaps
            )
        stream = Stream(stream_id, send, recv)
        self._streams[stream_id] = stream
        return stream

    # -- application side -------------------------------------------------------------------
    def open_stream(self, bidirectional: bool = True) -> int:
        """Open a stream of ours; raises :class:`StreamLimitReached` when the peer's
        MAX_STREAMS does not allow it (and queues STREAMS_BLOCKED, RFC 9000 §4.6)."""
        kind = BIDI if bidirectional else UNI
        counts = self.stream_counts
        if counts.local_exhausted(kind):
            if counts.report_blocked(kind):
                self._control[(_STREAMS_BLOCKED_TYPES[kind], kind)] = None
            what = "bidirectional" if bidirectional else "unidirectional"
            raise StreamLimitReached(
                f"the peer allows {counts.peer_max[kind]} {what} streams; all are opened"
            )
        if len(self._streams) >= self.max_tracked_streams:
            raise StreamLimitReached(f"{len(self._streams)} streams open (the local limit)")
        index = counts.take_local(kind)
        stream_id = make_stream_id(index, client=self.is_client, bidirectional=bidirectional)
        self._new_stream(stream_id)
        return stream_id

    @property
    def tracked(self) -> int:
        """Streams tracked now, both sides' (forgotten ones are not)."""
        return len(self._streams)

    def get_stream(self, stream_id: int) -> Stream | None:
        """The live stream, or None (never opened, or finished and forgotten)."""
        return self._streams.get(stream_id)

    def ended_readable(self, stream_id: int) -> bool:
        """Whether ``stream_id`` has a receiving part and was forgotten: it reached a
        terminal state, so its end (FIN or reset) was read or reading was stopped."""
        local = is_local(stream_id, self.is_client)
        return (
            (is_bidirectional(stream_id) or not local)
            and stream_id not in self._streams
            and self.stream_counts.was_opened(stream_id, local)
        )

    def accept_pending(self) -> list[int]:
        """IDs of streams the peer opened since the last call, in order."""
        accepted, self._accept = list(self._accept), {}
        return accepted

    def _app_stream(self, stream_id: int) -> Stream | None:
        """The stream for an application call; None when finished and forgotten."""
        stream = self._streams.get(stream_id)
        if stream is not None:
            return stream
        if self.stream_counts.was_opened(stream_id, is_local(stream_id, self.is_client)):
            return None
        raise StreamStateError(f"stream {stream_id} does not exist", stream_id=stream_id)

    def _send_part(self, stream_id: int) -> tuple[Stream, SendStream] | None:
        stream = self._app_stream(stream_id)
        if stream is None:
            return None
        if stream.send is None:
            raise StreamStateError(f"stream {stream_id} is receive-only", stream_id=stream_id)
        return stream, stream.send

    def _recv_part(self, stream_id: int) -> tuple[Stream, RecvStream] | None:
        stream = self._app_stream(stream_id)
        if stream is None:
            return None
        if stream.recv is None:
            raise StreamStateError(f"stream {stream_id} is send-only", stream_id=stream_id)
        return stream, stream.recv

    def write(self, stream_id: int, data: bytes | bytearray | memoryview, fin: bool = False) -> int:
        """Buffer ``data`` for sending; returns how many bytes were taken (RFC 9000 §2.2).

        Fewer than ``len(data)`` means the stream's send buffer is full: wait
        for :class:`StreamWritable`.  ``fin`` ends the stream once all of
        ``data`` is taken.  ``bytes`` are kept without copying.
        """
        parts = self._send_part(stream_id)
        if parts is None:
            raise StreamStateError(f"stream {stream_id} is closed", stream_id=stream_id)
        send = parts[1]
        taken = send.write(data, fin)
        if not send.scheduled:
            if send.has_sendable:
                self._schedule(send)
            elif send.is_flow_blocked and send.credit.note_blocked():
                self._control[(FrameType.STREAM_DATA_BLOCKED, stream_id)] = None
        return taken

    def read(self, stream_id: int, max_bytes: int) -> tuple[bytes, bool]:
        """Up to ``max_bytes`` of in-order data, and whether the end (FIN) was reached.

        Raises :class:`~mstls.exceptions.StreamResetError` when the peer reset
        the stream, :class:`StreamStateError` for a closed or send-only stream.
        """
        parts = self._recv_part(stream_id)
        if parts is None:
            raise StreamStateError(f"stream {stream_id} is closed", stream_id=stream_id)
        stream, recv = parts
        try:
            data, fin = recv.read(max_bytes)
        finally:
            if recv.state in RECV_TERMINAL:
                self._maybe_release(stream)
        if recv.wants_window_update:
            self._control[(FrameType.MAX_STREAM_DATA, stream_id)] = None
        window = self.connection_window
        if window.consumed >= window.update_at:
            self._control[(FrameType.MAX_DATA, 0)] = None
        return data, fin

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        """Abandon sending on ``stream_id`` with an application error code (RESET_STREAM)."""
        parts = self._send_part(stream_id)
        if parts is not None and parts[1].reset(error_code):
            self._control[(FrameType.RESET_STREAM, stream_id)] = None

    def stop_sending(self, stream_id: int, error_code: int) -> None:
        """Stop reading ``stream_id``: discard its data, ask the peer to stop (STOP_SENDING)."""
        parts = self._recv_part(stream_id)
        if parts is None:
            return
        stream, recv = parts
        if recv.stop(error_code):
            self._control[(FrameType.STOP_SENDING, stream_id)] = None
        self._after_discard(stream, recv)

    # -- events --------------------------------------------------------------------------------
    def pull_events(self) -> list[Event]:
        """Events since the last call, at most one of each kind per stream."""
        if not self._events and not self._readable:
            return []
        events = list(self._events.values())
        events += [StreamDataAvailable(stream_id) for stream_id in self._readable]
        self._events.clear()
        self._readable.clear()
        return events

    def _event(self, key: int, event: Event) -> None:
        self._events[(key, type(event))] = event

    # SendListener: progress reported by a sending part (from recovery callbacks).
    def on_send_lost(self, stream: SendStream) -> None:
        if not stream.retransmit_scheduled:
            stream.retransmit_scheduled = True
            self._retransmit_queue.append(stream)

    def on_send_progress(self, stream: SendStream, writable: bool, acknowledged: bool) -> None:
        stream_id = stream.stream_id
        if writable:
            self._event(stream_id, StreamWritable(stream_id))
        if acknowledged:
            self._event(stream_id, StreamAcknowledged(stream_id))
        if stream.state in SEND_TERMINAL:
            whole = self._streams.get(stream_id)
            if whole is not None:
                self._maybe_release(whole)

    def _maybe_release(self, stream: Stream) -> None:
        """Forget a stream whose parts are both terminal (RFC 9000 §3.3)."""
        if not stream.is_terminal or self._streams.get(stream.stream_id) is not stream:
            return
        stream_id = stream.stream_id
        del self._streams[stream_id]
        if not is_local(stream_id, self.is_client):
            self._accept.pop(stream_id, None)
            kind = stream_kind(stream_id)
            self.stream_counts.remote_closed_one(kind)
            self._check_max_streams(kind)

    def _check_max_streams(self, kind: int, force: bool = False) -> None:
        """Queue MAX_STREAMS when the peer used half its credit and some came back."""
        if self.stream_counts.wants_max_streams(kind, force):
            self._control[(_MAX_STREAMS_TYPES[kind], kind)] = None

    def _after_discard(self, stream: Stream, recv: RecvStream) -> None:
        if recv.state in RECV_TERMINAL:
            self._maybe_release(stream)
        window = self.connection_window
        if window.consumed >= window.update_at:
            self._control[(FrameType.MAX_DATA, 0)] = None

    # -- receiving frames --------------------------------------------------------------------
    def _peer_stream(self, stream_id: int, frame_type: int, sending: bool) -> Stream | None:
        """The stream a peer frame refers to (RFC 9000 §2.1, §3, §19).  Handles untrusted input.

        ``sending``: the frame needs our sending part (MAX_STREAM_DATA,
        STOP_SENDING), else our receiving part.  Opens peer streams up to
        ``stream_id`` (§3.2); returns None for a stream already forgotten.
        """
        local = is_local(stream_id, self.is_client)
        bidi = is_bidirectional(stream_id)
        if not bidi and local != sending:
            which = "send-only" if local else "receive-only"
            raise _state_error(f"stream {stream_id} is {which} for us", frame_type)
        stream = self._streams.get(stream_id)
        if stream is not None:
            return stream
        counts = self.stream_counts
        if local:
            if not counts.was_opened(stream_id, local=True):
                raise _state_error(f"stream {stream_id} was not opened by us", frame_type)
            return None
        kind = stream_kind(stream_id)
        index = stream_index(stream_id)
        if index >= counts.max_remote[kind]:
            raise ProtocolError(
                f"{frame_type_name(frame_type)}: stream {stream_id} exceeds the limit of "
                f"{counts.max_remote[kind]} streams",
                error_code=TransportErrorCode.STREAM_LIMIT_ERROR,
                frame_type=frame_type,
            )
        opened = counts.remote_opened[kind]
        if index < opened:
            return None
        for i in range(opened, index + 1):
            new_id = make_stream_id(i, client=not self.is_client, bidirectional=bidi)
            stream = self._new_stream(new_id)
            self._accept[new_id] = None
            self._event(new_id, StreamOpened(new_id))
        counts.remote_opened[kind] = index + 1
        self._check_max_streams(kind)
        return stream

    def on_stream(self, frame: StreamFrame) -> None:
        """STREAM (RFC 9000 §19.8).  Handles untrusted input."""
        stream_id = frame.stream_id
        stream = self._streams.get(stream_id)
        recv = None if stream is None else stream.recv
        if stream is None or recv is None:
            stream = self._peer_stream(stream_id, frame.frame_type, sending=False)
            if stream is None:
                return
            recv = stream.recv
            assert recv is not None
        offset = frame.offset
        if self.ordered_transport and offset != recv.window.received:
            raise ProtocolError(
                f"STREAM on stream {stream_id} at offset {offset}, expected "
                f"{recv.window.received} (QMux delivers in order)",
                error_code=TransportErrorCode.PROTOCOL_VIOLATION,
                frame_type=frame.frame_type,
            )
        try:
            recv.on_data(offset, frame.data, frame.fin)
        except ProtocolError as exc:
            exc.frame_type = frame.frame_type
            raise
        if recv.notify:
            recv.notify = False
            self._readable[stream_id] = None
        if recv.stop_code is not None:
            self._after_discard(stream, recv)

    def on_reset_stream(self, frame: ResetStreamFrame) -> None:
        """RESET_STREAM (RFC 9000 §19.4).  Handles untrusted input."""
        stream = self._peer_stream(frame.stream_id, FrameType.RESET_STREAM, sending=False)
        if stream is None:
            return
        recv = stream.recv
        assert recv is not None
        if recv.on_reset(frame.error_code, frame.final_size):
            self._event(
                frame.stream_id, StreamReset(frame.stream_id, frame.error_code, frame.final_size)
            )
        self._after_discard(stream, recv)

    def on_stop_sending(self, frame: StopSendingFrame) -> None:
        """STOP_SENDING (RFC 9000 §19.5): reset with the peer's code (§3.5).  Untrusted input."""
        stream = self._peer_stream(frame.stream_id, FrameType.STOP_SENDING, sending=True)
        if stream is None:
            return
        send = stream.send
        assert send is not None
        first = send.stop_code is None
        if send.on_stop_sending(frame.error_code):
            self._control[(FrameType.RESET_STREAM, frame.stream_id)] = None
        if first:
            self._event(frame.stream_id, StopSendingReceived(frame.stream_id, frame.error_code))

    def on_max_data(self, frame: MaxDataFrame) -> None:
        """MAX_DATA (RFC 9000 §19.9); a smaller value is ignored."""
        self.connection_credit.raise_limit(frame.maximum)

    def on_max_stream_data(self, frame: MaxStreamDataFrame) -> None:
        """MAX_STREAM_DATA (RFC 9000 §19.10).  Handles untrusted input."""
        stream = self._peer_stream(frame.stream_id, FrameType.MAX_STREAM_DATA, sending=True)
        if stream is None:
            return
        send = stream.send
        assert send is not None
        if send.credit.raise_limit(frame.maximum) and send.has_sendable:
            self._schedule(send)

    def on_max_streams(self, frame: MaxStreamsFrame) -> None:
        """MAX_STREAMS (RFC 9000 §19.11); a smaller value is ignored."""
        kind = BIDI if frame.bidi else UNI
        if self.stream_counts.raise_peer_limit(kind, frame.maximum):
            self._event(-1 - kind, StreamsAvailable(frame.bidi))

    def on_data_blocked(self, frame: DataBlockedFrame) -> None:
        """DATA_BLOCKED (RFC 9000 §19.12): advertise more credit now if we can."""
        window = self.connection_window
        if window.consumed + window.window > window.limit:
            window.update_at = window.consumed
            self._control[(FrameType.MAX_DATA, 0)] = None

    def on_stream_data_blocked(self, frame: StreamDataBlockedFrame) -> None:
        """STREAM_DATA_BLOCKED (RFC 9000 §19.13).  Handles untrusted input."""
        stream = self._peer_stream(frame.stream_id, FrameType.STREAM_DATA_BLOCKED, sending=False)
        if stream is None:
            return
        recv = stream.recv
        assert recv is not None
        window = recv.window
        if recv.state is RecvState.RECV and window.consumed + window.window > window.limit:
            window.update_at = window.consumed
            self._control[(FrameType.MAX_STREAM_DATA, frame.stream_id)] = None

    def on_streams_blocked(self, frame: StreamsBlockedFrame) -> None:
        """STREAMS_BLOCKED (RFC 9000 §19.14): return stream credit now if any came back."""
        self._check_max_streams(BIDI if frame.bidi else UNI, force=True)

    def frame_handlers(self) -> dict[int, Callable[[Any], None]]:
        """Bound handlers keyed by frame type (all eight STREAM types included)."""
        return {
            frame_type: MethodType(handler, self)
            for frame_type, handler in STREAM_FRAME_HANDLERS.items()
        }

    # -- sending -------------------------------------------------------------------------------
    def _schedule(self, send: SendStream) -> None:
        if not send.scheduled:
            send.scheduled = True
            self._send_queue.append(send)

    def has_data_to_send(self) -> bool:
        """Cheap: would :meth:`write_frames` write anything (credit permitting)?"""
        if self._control or self._retransmit_queue:
            return True
        queue = self._send_queue
        if not queue:
            return False
        if self.connection_credit.used < self.connection_credit.limit:
            return True
        return any(send.has_sendable and not send.needs_credit for send in queue)

    def write_frames(self, sink: FrameSink, now: float) -> None:
        """Fill ``sink``: control frames, then lost data, then new data round-robin."""
        if self._control:
            self._write_control(sink, now)
        if self._retransmit_queue:
            self._write_retransmissions(sink)
        if self._send_queue:
            self._write_new_data(sink)

    def _write_retransmissions(self, sink: FrameSink) -> None:
        queue = self._retransmit_queue
        while queue:
            send = queue[0]
            if not send.write_retransmission(sink, self):
                return
            if send.has_retransmission:
                queue.rotate(-1)
            else:
                queue.popleft()
                send.retransmit_scheduled = False

    def _write_new_data(self, sink: FrameSink) -> None:
        queue = self._send_queue
        credit = self.connection_credit
        skipped = 0
        only = self.send_only
        while queue and skipped < len(queue) and sink.remaining >= _MIN_STREAM_FRAME:
            send = queue[0]
            if only is not None and send.stream_id not in only:
                queue.rotate(-1)  # not replay-safe: waits for the handshake
                skipped += 1
                continue
            available = credit.limit - credit.used
            if available <= 0 and send.needs_credit:
                # Connection-blocked (§4.1): only a FIN alone can still go.
                if credit.note_blocked():
                    self._control[(FrameType.DATA_BLOCKED, 0)] = None
                queue.rotate(-1)
                skipped += 1
                continue
            used = send.write_new(sink, available, self)
            if used == NO_ROOM:
                return
            credit.used += used
            if send.has_sendable:
                queue.rotate(-1)
                continue
            queue.popleft()
            send.scheduled = False
            if send.is_flow_blocked and send.credit.note_blocked():
                self._control[(FrameType.STREAM_DATA_BLOCKED, send.stream_id)] = None

    def _write_control(self, sink: FrameSink, now: float) -> None:
        control = self._control
        for key in list(control):
            kind, target = key
            built = BUILDERS[kind](self, target, now)
            if built is None:
                del control[key]
                continue
            frame, value = built
            data = encode_frame(frame)
            if len(data) > sink.remaining:
                return
            del control[key]
            sink.add(data, (self._control_acked, self._control_lost, (kind, target, value)))

    def _control_acked(self, kind: int, target: int, value: int) -> None:
        if kind == FrameType.MAX_DATA:
            self.connection_window.on_acked(value)
        elif kind == FrameType.MAX_STREAM_DATA:
            stream = self._streams.get(target)
            if stream is not None and stream.recv is not None:
                stream.recv.window.on_acked(value)
        elif kind in _MAX_STREAMS_TYPES:
            self.stream_counts.on_max_streams_acked(target, value)
        elif kind == FrameType.RESET_STREAM:
            stream = self._streams.get(target)
            if stream is not None and stream.send is not None:
                stream.send.on_reset_acked()
                self._maybe_release(stream)

    def _control_lost(self, kind: int, target: int, value: int) -> None:
        self._control[(kind, target)] = None  # rebuilt from the current state, if still needed

    def request_control(self, frame_type: int, target: int) -> None:
        """Queue a control frame, built when sent (:mod:`mstls.core.stream_control`)."""
        self._control[(frame_type, target)] = None


#: Frame type -> unbound handler ``handler(manager, frame)``, all eight STREAM types
#: included, for a connection's dispatch table (:meth:`StreamManager.frame_handlers`
#: gives the same, bound).
STREAM_FRAME_HANDLERS: Mapping[int, Callable[[StreamManager, Any], None]] = {
    **dict.fromkeys(range(FrameType.STREAM, FrameType.STREAM + 8), StreamManager.on_stream),
    FrameType.RESET_STREAM: StreamManager.on_reset_stream,
    FrameType.STOP_SENDING: StreamManager.on_stop_sending,
    FrameType.MAX_DATA: StreamManager.on_max_data,
    FrameType.MAX_STREAM_DATA: StreamManager.on_max_stream_data,
    FrameType.MAX_STREAMS_BIDI: StreamManager.on_max_streams,
    FrameType.MAX_STREAMS_UNI: StreamManager.on_max_streams,
    FrameType.DATA_BLOCKED: StreamManager.on_data_blocked,
    FrameType.STREAM_DATA_BLOCKED: StreamManager.on_stream_data_blocked,
    FrameType.STREAMS_BLOCKED_BIDI: StreamManager.on_streams_blocked,
    FrameType.STREAMS_BLOCKED_UNI: StreamManager.on_streams_blocked,
}
