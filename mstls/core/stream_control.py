"""Control frames of the stream layer, built from the current state when sent.

Theory of operation
-------------------
:class:`~mstls.core.stream_manager.StreamManager` never queues a built control
frame.  It queues an *intent* ``(frame type, target)`` — the target is a stream ID,
a stream kind (MAX_STREAMS, STREAMS_BLOCKED) or 0 (MAX_DATA, DATA_BLOCKED) — and
when there is room to send, the builder for that frame type in :data:`BUILDERS`
makes the frame from the state *then*, or answers None when it is no longer
needed.  So a lost MAX_DATA is resent with the current limit, a lost
STREAM_DATA_BLOCKED only while still blocked, a lost RESET_STREAM until
acknowledged, and a STOP_SENDING not at all once everything arrived (RFC 9000 §13.3).

A builder returns the frame and one value remembered in its sent record (the limit
it advertised, or 0), which the manager's acknowledgement callback receives.
Building a frame is a promise to send it: window builders advance the window they
advertise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ..wire.frame_types import FrameType
from ..wire.frames import (
    DataBlockedFrame,
    Frame,
    MaxDataFrame,
    MaxStreamDataFrame,
    MaxStreamsFrame,
    StopSendingFrame,
    StreamDataBlockedFrame,
    StreamsBlockedFrame,
)
from .stream_limits import BIDI
from .streams import RecvState, SendState

if TYPE_CHECKING:
    from .stream_manager import StreamManager

__all__ = ["BUILDERS", "CONNECTION_WINDOW_RATIO", "Built", "ControlKey"]

#: The connection window is kept at least this multiple of the largest stream window.
CONNECTION_WINDOW_RATIO = 1.5

ControlKey = tuple[int, int]  # (frame type, stream ID or stream kind)
Built = tuple[Frame, int] | None  # the frame and a value remembered for its record


def _build_max_data(manager: StreamManager, target: int, now: float) -> Built:
    window = manager.connection_window
    if window.wants_update:
        window.advance(now, manager.rtt)
    elif window.acked_limit >= window.limit:
        return None
    return MaxDataFrame(window.limit), window.limit


def _build_max_stream_data(manager: StreamManager, stream_id: int, now: float) -> Built:
    stream = manager.get_stream(stream_id)
    recv = None if stream is None else stream.recv
    if recv is None or recv.state is not RecvState.RECV or recv.stop_code is not None:
        return None
    window = recv.window
    if window.wants_update:
        window.advance(now, manager.rtt)
        connection = manager.connection_window
        connection.grow(int(window.window * CONNECTION_WINDOW_RATIO))
        if connection.wants_update:
            manager.request_control(FrameType.MAX_DATA, 0)
    elif window.acked_limit >= window.limit:
        return None
    return MaxStreamDataFrame(stream_id, window.limit), window.limit


def _build_max_streams(manager: StreamManager, kind: int, now: float) -> Built:
    limit = manager.stream_counts.max_streams_to_send(kind)
    if limit is None:
        return None
    return MaxStreamsFrame(limit, kind == BIDI), limit


def _build_data_blocked(manager: StreamManager, target: int, now: float) -> Built:
    credit = manager.connection_credit
    if not credit.blocked:
        return None
    return DataBlockedFrame(credit.limit), credit.limit


def _build_stream_data_blocked(manager: StreamManager, stream_id: int, now: float) -> Built:
    stream = manager.get_stream(stream_id)
    send = None if stream is None else stream.send
    if send is None or not send.is_flow_blocked:
        return None
    send.on_blocked_sent()
    return StreamDataBlockedFrame(stream_id, send.credit.limit), send.credit.limit


def _build_streams_blocked(manager: StreamManager, kind: int, now: float) -> Built:
    limit = manager.stream_counts.streams_blocked_limit(kind)
    if limit is None:
        return None
    return StreamsBlockedFrame(limit, kind == BIDI), limit


def _build_reset_stream(manager: StreamManager, stream_id: int, now: float) -> Built:
    stream = manager.get_stream(stream_id)
    send = None if stream is None else stream.send
    if send is None or send.state is not SendState.RESET_SENT:
        return None
    return send.reset_frame(), 0


def _build_stop_sending(manager: StreamManager, stream_id: int, now: float) -> Built:
    stream = manager.get_stream(stream_id)
    recv = None if stream is None else stream.recv
    if recv is None or recv.stop_code is None:
        return None
    if recv.state is not RecvState.RECV and recv.state is not RecvState.SIZE_KNOWN:
        return None  # everything arrived or the peer reset: no need (§3.5)
    return StopSendingFrame(stream_id, recv.stop_code), 0


Builder = Callable[["StreamManager", int, float], Built]
#: Control frame type -> builder ``(manager, target, now)`` (RFC 9000 §19.4-§19.14).
BUILDERS: Mapping[int, Builder] = {
    FrameType.MAX_DATA: _build_max_data,
    FrameType.MAX_STREAM_DATA: _build_max_stream_data,
    FrameType.MAX_STREAMS_BIDI: _build_max_streams,
    FrameType.MAX_STREAMS_UNI: _build_max_streams,
    FrameType.DATA_BLOCKED: _build_data_blocked,
    FrameType.STREAM_DATA_BLOCKED: _build_stream_data_blocked,
    FrameType.STREAMS_BLOCKED_BIDI: _build_streams_blocked,
    FrameType.STREAMS_BLOCKED_UNI: _build_streams_blocked,
    FrameType.RESET_STREAM: _build_reset_stream,
    FrameType.STOP_SENDING: _build_stop_sending,
}
