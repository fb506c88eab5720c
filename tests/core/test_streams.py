"""Stream halves (RFC 9000 §2-§4): state tables, sending, reassembly, final size."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mstls.codes import TransportErrorCode
from mstls.core.flow_control import ReceiveWindow
from mstls.core.send_stream import _NULL_LISTENER, SendListener
from mstls.core.sending import ListSink, SentRecord
from mstls.core.streams import (
    NO_ROOM,
    PEER_EVENTS,
    RECV_TRANSITIONS,
    SEND_TRANSITIONS,
    SMALL_WRITE,
    RecvEvent,
    RecvState,
    RecvStream,
    SendEvent,
    SendState,
    SendStream,
    is_bidirectional,
    is_client_initiated,
    is_local,
    make_stream_id,
    stream_index,
    transition,
)
from mstls.exceptions import (
    ProtocolError,
    StreamResetError,
    StreamStateError,
    StreamStoppedError,
)
from mstls.wire.buffer import Reader
from mstls.wire.frames import StreamFrame, decode_frame


# -- stream IDs -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("stream_id", "client", "bidi"),
    [(0, True, True), (1, False, True), (2, True, False), (3, False, False), (4, True, True)],
)
def test_stream_id_bits(stream_id: int, client: bool, bidi: bool) -> None:
    # RFC 9000 §2.1, Table 1.
    assert is_client_initiated(stream_id) is client
    assert is_bidirectional(stream_id) is bidi
    assert is_local(stream_id, is_client=client)
    assert not is_local(stream_id, is_client=not client)
    assert make_stream_id(stream_index(stream_id), client=client, bidirectional=bidi) == stream_id


# -- state tables --------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(SendState)), st.sampled_from(list(SendEvent)))
def test_send_table_sweep(state: SendState, event: SendEvent) -> None:
    expected = SEND_TRANSITIONS.get((state, event))
    if expected is not None:
        assert transition(SEND_TRANSITIONS, state, event) is expected
        return
    error: type[Exception] = ProtocolError if event in PEER_EVENTS else StreamStateError
    with pytest.raises(error) as info:
        transition(SEND_TRANSITIONS, state, event, 4)
    if isinstance(info.value, ProtocolError):
        assert info.value.error_code == TransportErrorCode.STREAM_STATE_ERROR
        assert info.value.frame_type is not None


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(RecvState)), st.sampled_from(list(RecvEvent)))
def test_recv_table_sweep(state: RecvState, event: RecvEvent) -> None:
    expected = RECV_TRANSITIONS.get((state, event))
    if expected is not None:
        assert transition(RECV_TRANSITIONS, state, event) is expected
        return
    error: type[Exception] = ProtocolError if event in PEER_EVENTS else StreamStateError
    with pytest.raises(error) as info:
        transition(RECV_TRANSITIONS, state, event, 4, 0x0B)
    if isinstance(info.value, ProtocolError):
        assert info.value.error_code == TransportErrorCode.STREAM_STATE_ERROR
        assert info.value.frame_type == 0x0B


def test_recv_table_accepts_late_peer_frames_in_every_state() -> None:
    # §3.2: retransmitted STREAM / RESET_STREAM may arrive in any state.
    for state in RecvState:
        for event in (RecvEvent.RECV_DATA, RecvEvent.RECV_FIN, RecvEvent.RECV_RESET):
            assert (state, event) in RECV_TRANSITIONS, (state, event)


def test_terminal_states_only_loop() -> None:
    for (state, _), new_state in SEND_TRANSITIONS.items():
        if state in (SendState.DATA_RECVD, SendState.RESET_RECVD):
            assert new_state is state
    for (state, _), new_state in RECV_TRANSITIONS.items():
        if state in (RecvState.DATA_READ, RecvState.RESET_READ):
            assert new_state is state


# -- helpers ---------------------------------------------------------------------------------
class CaptureSink:
    """A sink that keeps the frames' parts as given (to check zero-copy)."""

    def __init__(self, capacity: int = 1200) -> None:
        self.remaining = capacity
        self.parts: list[tuple[bytes, Any, SentRecord | None]] = []

    def add(
        self, frame: Any, record: SentRecord | None = None, *, ack_eliciting: bool = True
    ) -> None:
        self.remaining -= len(frame)
        self.parts.append((bytes(frame), b"", record))

    def add_parts(self, header: bytes, payload: Any, record: SentRecord | None = None) -> None:
        self.remaining -= len(header) + len(payload)
        self.parts.append((header, payload, record))


def frames_of(sink: ListSink) -> list[StreamFrame]:
    frames = []
    for raw in sink.frames:
        frame = decode_frame(Reader(raw))
        assert isinstance(frame, StreamFrame)
        frames.append(frame)
    return frames


def drain(
    stream: SendStream,
    capacity: int = 1200,
    credit: int = 1 << 40,
    listener: SendListener = _NULL_LISTENER,
) -> ListSink:
    """Send everything sendable (retransmissions first) in one big sink; ``listener``
    goes into each frame's record."""
    sink = ListSink(1 << 30)
    while True:
        packet = ListSink(capacity)
        while stream.has_retransmission:
            if not stream.write_retransmission(packet, listener):
                break
        while stream.has_sendable and stream.write_new(packet, credit, listener) > 0:
            pass
        if stream.has_sendable and not packet.frames:
            stream.write_new(packet, credit, listener)  # a FIN alone
        if not packet.frames:
            return sink
        sink.frames += packet.frames
        sink.records += packet.records


def recv_stream(limit: int = 1 << 20, connection: ReceiveWindow | None = None) -> RecvStream:
    return RecvStream(4, ReceiveWindow(limit, limit), connection)


# -- sending part ---------------------------------------------------------------------------
def test_write_is_bounded_by_the_buffer() -> None:
    stream = SendStream(0, limit=1 << 20, buffer_size=10_000)
    assert stream.write(b"x" * 6000) == 6000
    assert stream.write(b"y" * 6000) == 4000  # the rest does not fit
    assert stream.free_space == 0
    assert stream.write(b"z", fin=True) == 0
    assert not stream.fin_requested  # FIN only with all the data


def test_write_after_fin_or_reset_or_stop() -> None:
    stream = SendStream(0)
    stream.write(b"a", fin=True)
    with pytest.raises(StreamStateError):
        stream.write(b"b")
    stream = SendStream(0)
    stream.reset(7)
    with pytest.raises(StreamStateError):
        stream.write(b"b")
    stream = SendStream(0)
    stream.on_stop_sending(9)
    with pytest.raises(StreamStoppedError) as info:
        stream.write(b"b")
    assert info.value.error_code == 9
    assert stream.state is SendState.RESET_SENT  # §3.5: answered with RESET_STREAM
    assert stream.reset_frame().error_code == 9


def test_frames_ack_and_states() -> None:
    data = bytes(range(256)) * 20
    stream = SendStream(0, limit=1 << 20)
    assert stream.state is SendState.READY
    stream.write(data, fin=True)
    sink = drain(stream)
    frames = frames_of(sink)
    assert b"".join(bytes(f.data) for f in frames) == data
    assert frames[-1].fin and not any(f.fin for f in frames[:-1])
    assert stream.state is SendState.DATA_SENT
    assert not stream.all_acknowledged
    sink.acknowledge()
    assert stream.all_acknowledged
    assert stream.state is SendState.DATA_RECVD
    assert stream.buffered == 0


def test_peer_credit_limits_new_data() -> None:
    stream = SendStream(0, limit=1000)
    stream.write(b"x" * 5000)
    frames = frames_of(drain(stream))
    assert sum(len(f.data) for f in frames) == 1000
    assert stream.is_flow_blocked
    assert stream.credit.note_blocked()
    stream.credit.raise_limit(3000)
    frames = frames_of(drain(stream))
    assert frames[0].offset == 1000 and sum(len(f.data) for f in frames) == 2000


def test_connection_credit_limits_new_data() -> None:
    stream = SendStream(0, limit=1 << 20)
    stream.write(b"x" * 5000)
    sink = ListSink(1200)
    assert stream.write_new(sink, 100) == 100
    assert stream.write_new(sink, 0) == 0


def test_lost_data_is_resent_before_new_data() -> None:
    stream = SendStream(0, limit=1 << 20)
    stream.write(b"a" * 3000)
    first = drain(stream)
    first.lose()
    stream.write(b"b" * 1000, fin=True)
    frames = frames_of(drain(stream))
    offsets = [f.offset for f in frames]
    assert offsets[: len(offsets) - 1] == sorted(offsets[: len(offsets) - 1])
    assert bytes(frames[0].data[:1]) == b"a"  # retransmission first
    assert offsets[0] == 0


def test_fin_alone_lost_and_resent() -> None:
    stream = SendStream(0, limit=1 << 20)
    stream.write(b"abc")
    drain(stream).acknowledge()
    stream.write(b"", fin=True)
    sink = drain(stream)
    (frame,) = frames_of(sink)
    assert frame.fin and frame.offset == 3 and not frame.data
    sink.lose()
    assert stream.has_retransmission
    sink = drain(stream)
    (frame,) = frames_of(sink)
    assert frame.fin and frame.offset == 3
    sink.acknowledge()
    assert stream.state is SendState.DATA_RECVD


def test_large_bytes_writes_are_not_copied() -> None:
    data = bytes(range(256)) * 40
    assert len(data) >= SMALL_WRITE
    stream = SendStream(0, limit=1 << 20)
    stream.write(data)
    sink = CaptureSink()
    stream.write_new(sink, 1 << 20)
    payload = sink.parts[0][1]
    assert isinstance(payload, memoryview) and payload.obj is data


def test_small_writes_are_coalesced() -> None:
    stream = SendStream(0, limit=1 << 20)
    for _ in range(100):
        stream.write(b"0123456789")
    frames = frames_of(drain(stream))
    assert len(frames) == 1 and len(frames[0].data) == 1000


def test_reset_stops_everything_and_is_idempotent() -> None:
    stream = SendStream(0, limit=1 << 20)
    stream.write(b"x" * 5000)
    sink = ListSink(1200)
    stream.write_new(sink, 1 << 20)
    sent = stream.send_offset
    assert stream.reset(3)
    assert not stream.reset(4)
    assert stream.reset_frame().final_size == sent  # §4.5: final size = bytes sent
    assert stream.reset_frame().error_code == 3
    assert not stream.has_sendable
    sink.lose()  # late loss of data is ignored after a reset
    assert not stream.has_retransmission
    stream.on_reset_acked()
    assert stream.state is SendState.RESET_RECVD
    stream.on_reset_acked()  # a second acknowledgement of a resent RESET_STREAM
    assert stream.is_terminal


def test_listener_is_told_about_progress() -> None:
    calls: list[tuple[str, bool, bool]] = []

    class Listener:
        def on_send_lost(self, stream: SendStream) -> None:
            calls.append(("lost", False, False))

        def on_send_progress(self, stream: SendStream, writable: bool, acknowledged: bool) -> None:
            calls.append(("progress", writable, acknowledged))

    listener = Listener()
    stream = SendStream(0, limit=1 << 20, buffer_size=4000)
    assert stream.write(b"x" * 5000) == 4000
    sink = drain(stream, listener=listener)
    sink.records[0][1](*sink.records[0][2])  # lose the first frame
    assert calls == [("lost", False, False)]
    drain(stream, listener=listener)
    for on_acked, _, args in sink.records:
        on_acked(*args)
    assert ("progress", True, False) in calls or ("progress", True, True) in calls
    assert calls[-1][2]  # everything written is acknowledged


@settings(max_examples=150, deadline=None)
@given(
    writes=st.lists(st.integers(0, 9000), min_size=1, max_size=12),
    capacity=st.integers(30, 1500),
    seed=st.integers(0, 2**32 - 1),
)
def test_send_with_random_loss_delivers_everything(
    writes: list[int], capacity: int, seed: int
) -> None:
    rng = random.Random(seed)
    source = bytes(rng.getrandbits(8) for _ in range(sum(writes)))
    stream = SendStream(0, limit=1 << 40, buffer_size=1 << 30)
    receiver = recv_stream(1 << 40)
    position = 0
    for index, size in enumerate(writes):
        piece = source[position : position + size]
        assert stream.write(piece, fin=index == len(writes) - 1) == size
        position += size
    for _ in range(10_000):
        sink = drain(stream, capacity)
        if not sink.frames:
            break
        for raw, record in zip(sink.frames, sink.records, strict=True):
            if rng.random() < 0.3:
                record[1](*record[2])  # lost
            else:
                frame = decode_frame(Reader(raw))
                assert isinstance(frame, StreamFrame)
                receiver.on_data(frame.offset, frame.data, frame.fin)
                record[0](*record[2])
    assert stream.state is SendState.DATA_RECVD
    data, fin = receiver.read(1 << 40)
    assert data == source and fin


# -- receiving part ---------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(0, 5000),
    cuts=st.lists(st.integers(0, 5000), max_size=20),
    seed=st.integers(0, 2**32 - 1),
    duplicates=st.integers(0, 10),
)
def test_reassembly_with_any_order_and_duplicates(
    size: int, cuts: list[int], seed: int, duplicates: int
) -> None:
    rng = random.Random(seed)
    source = bytes(rng.getrandbits(8) for _ in range(size))
    bounds = sorted({0, size, *(c % (size + 1) for c in cuts)})
    pieces = list(itertools.pairwise(bounds)) or [(0, 0)]
    pieces += [rng.choice(pieces) for _ in range(duplicates)]
    # overlapping retransmissions of a different segmentation
    if size:
        start = rng.randrange(size)
        pieces.append((start, rng.randint(start, size)))
    rng.shuffle(pieces)
    stream = recv_stream(1 << 16)
    out = bytearray()
    for start, end in pieces:
        stream.on_data(start, memoryview(source)[start:end], end == size)
        assert len(stream._buffer) <= stream.window.limit - stream.window.consumed
        if rng.random() < 0.5:
            data, _ = stream.read(rng.randint(0, 3000))
            out += data
    data, fin = stream.read(1 << 20)
    out += data
    assert bytes(out) == source
    assert fin
    assert stream.state is RecvState.DATA_READ


def test_read_in_pieces_and_fin() -> None:
    stream = recv_stream()
    stream.on_data(0, b"hello ", False)
    stream.on_data(6, b"world", True)
    assert stream.state is RecvState.DATA_RECVD
    assert stream.read(3) == (b"hel", False)
    assert stream.read(100) == (b"lo world", True)
    assert stream.state is RecvState.DATA_READ
    assert stream.read(100) == (b"", True)


def test_out_of_order_data_is_not_readable_before_the_gap_fills() -> None:
    stream = recv_stream()
    stream.on_data(5, b"world", True)
    assert stream.state is RecvState.SIZE_KNOWN
    assert stream.read(100) == (b"", False)
    assert not stream.notify
    stream.on_data(0, b"hello", False)
    assert stream.notify
    assert stream.read(100) == (b"helloworld", True)


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([(0, b"abc", True), (0, b"abcd", True)], "final size changed"),
        ([(0, b"abc", True), (3, b"d", False)], "beyond final size"),
        ([(0, b"abcdef", False), (0, b"abc", True)], "below data already received"),
        ([(5, b"x", False), (0, b"abc", True)], "below data already received"),
    ],
)
def test_final_size_errors(frames: list[tuple[int, bytes, bool]], reason: str) -> None:
    stream = recv_stream()
    *good, bad = frames
    for offset, data, fin in good:
        stream.on_data(offset, data, fin)
    with pytest.raises(ProtocolError) as info:
        stream.on_data(*bad)
    assert info.value.error_code == TransportErrorCode.FINAL_SIZE_ERROR
    assert reason in info.value.reason


def test_final_size_checked_even_after_everything_was_read() -> None:
    stream = recv_stream()
    stream.on_data(0, b"abc", True)
    stream.read(10)
    stream.on_data(0, b"abc", True)  # a duplicate is fine
    with pytest.raises(ProtocolError) as info:
        stream.on_data(3, b"d", False)
    assert info.value.error_code == TransportErrorCode.FINAL_SIZE_ERROR


def test_reset_final_size_errors() -> None:
    stream = recv_stream()
    stream.on_data(0, b"abc", True)
    with pytest.raises(ProtocolError) as info:
        stream.on_reset(1, 4)
    assert info.value.error_code == TransportErrorCode.FINAL_SIZE_ERROR
    assert info.value.frame_type == 0x04
    stream = recv_stream()
    stream.on_data(0, b"abcdef", False)
    with pytest.raises(ProtocolError) as info:
        stream.on_reset(1, 3)
    assert info.value.error_code == TransportErrorCode.FINAL_SIZE_ERROR


def test_stream_and_connection_flow_control_errors() -> None:
    stream = recv_stream(100)
    stream.on_data(0, b"x" * 100, False)
    with pytest.raises(ProtocolError) as info:
        stream.on_data(100, b"x", False)
    assert info.value.error_code == TransportErrorCode.FLOW_CONTROL_ERROR
    with pytest.raises(ProtocolError) as info:
        recv_stream(100).on_reset(0, 101)
    assert info.value.error_code == TransportErrorCode.FLOW_CONTROL_ERROR

    connection = ReceiveWindow(150, 150)
    first = RecvStream(0, ReceiveWindow(100, 100), connection)
    second = RecvStream(4, ReceiveWindow(100, 100), connection)
    first.on_data(0, b"x" * 100, False)
    second.on_data(40, b"x" * 10, False)  # counts up to offset 50
    with pytest.raises(ProtocolError) as info:
        second.on_data(50, b"x", False)
    assert info.value.error_code == TransportErrorCode.FLOW_CONTROL_ERROR
    assert connection.received == 150


def test_reset_returns_delivered_data_then_fails_reads() -> None:
    """E6 / RFC 9000 §3.2: what arrived in order before RESET_STREAM is read first."""
    connection = ReceiveWindow(1000, 1000)
    stream = RecvStream(1, ReceiveWindow(1000, 1000), connection)
    stream.on_data(0, b"abcdef", False)
    assert stream.read(2) == (b"ab", False)
    assert stream.on_reset(42, 10)
    assert stream.state is RecvState.RESET_RECVD
    # Credit for what can never be read (offsets 6-10) is returned at once.
    assert connection.received == 10 and connection.consumed == 6
    assert stream.read(3) == (b"cde", False)
    assert stream.read(100) == (b"f", False)
    assert connection.consumed == 10  # all credit returned once read
    with pytest.raises(StreamResetError) as info:
        stream.read(100)
    assert info.value.error_code == 42
    assert stream.state is RecvState.RESET_READ
    with pytest.raises(StreamResetError):
        stream.read(100)  # the reset stays reported
    assert not stream.on_reset(42, 10)  # a late duplicate changes nothing
    stream.on_data(0, b"abcdef", False)  # late data within the final size: ignored
    assert connection.consumed == 10 and stream.readable == 0


def test_reset_drops_bytes_beyond_a_gap_and_credits_them() -> None:
    """Only the contiguous prefix is deliverable; out-of-order bytes are dropped (§4.5)."""
    connection = ReceiveWindow(1000, 1000)
    stream = RecvStream(1, ReceiveWindow(1000, 1000), connection)
    stream.on_data(0, b"abc", False)
    stream.on_data(10, b"x" * 90, False)  # a gap at 3-10
    assert connection.received == 100
    assert stream.on_reset(7, 200)
    assert connection.received == 200
    assert connection.consumed == 200 - 3  # everything but the readable prefix
    assert len(stream._buffer) == 3  # the out-of-order bytes are freed now
    assert stream.read(100) == (b"abc", False)
    assert connection.consumed == 200
    with pytest.raises(StreamResetError):
        stream.read(100)
    assert len(stream._buffer) == 0 and stream.is_terminal


def test_reset_with_nothing_delivered_fails_the_first_read() -> None:
    connection = ReceiveWindow(1000, 1000)
    stream = RecvStream(1, ReceiveWindow(1000, 1000), connection)
    stream.on_data(5, b"late", False)  # never contiguous
    assert stream.on_reset(3, 9)
    assert connection.consumed == 9 and len(stream._buffer) == 0
    with pytest.raises(StreamResetError) as info:
        stream.read(10)
    assert info.value.error_code == 3


def test_stop_after_reset_credits_each_byte_once() -> None:
    connection = ReceiveWindow(1000, 1000)
    stream = RecvStream(1, ReceiveWindow(1000, 1000), connection)
    stream.on_data(0, b"abcdef", False)
    stream.on_data(20, b"zz", False)
    assert stream.on_reset(1, 30)
    assert connection.consumed == 24
    assert not stream.stop(9)  # the peer reset: no STOP_SENDING needed
    assert connection.consumed == 30 and stream.is_terminal
    assert len(stream._buffer) == 0


def test_reset_after_all_data_keeps_the_data() -> None:
    stream = recv_stream()
    stream.on_data(0, b"abc", True)
    assert not stream.on_reset(1, 3)
    assert stream.read(10) == (b"abc", True)


def test_stop_discards_and_returns_credit() -> None:
    connection = ReceiveWindow(1000, 1000)
    stream = RecvStream(1, ReceiveWindow(1000, 1000), connection)
    stream.on_data(0, b"abc", False)
    stream.on_data(10, b"xyz", False)
    assert stream.stop(5)
    assert not stream.stop(5)
    assert connection.consumed == 13
    stream.on_data(13, b"more", True)  # still arriving: discarded, credited
    assert connection.consumed == 17
    assert stream.state is RecvState.DATA_READ
    with pytest.raises(StreamStateError):
        stream.read(10)


def test_stop_after_everything_arrived_needs_no_frame() -> None:
    stream = recv_stream()
    stream.on_data(0, b"abc", True)
    assert not stream.stop(5)
    assert stream.is_terminal


def test_too_many_gaps() -> None:
    stream = RecvStream(0, ReceiveWindow(1 << 20, 1 << 20), max_gaps=10)
    for i in range(10):
        stream.on_data(10 + 2 * i, b"x", False)
    with pytest.raises(ProtocolError):
        stream.on_data(100, b"x", False)


def test_window_update_wanted_after_half_the_window() -> None:
    stream = recv_stream(1000)
    stream.on_data(0, b"x" * 600, False)
    stream.read(400)
    assert not stream.wants_window_update
    stream.read(200)
    assert stream.wants_window_update
    stream.on_data(600, b"", True)
    assert not stream.wants_window_update  # Size Known: no more credit needed (§3.2)


def test_write_frame_prefers_retransmission() -> None:
    stream = SendStream(0, limit=1 << 20)
    stream.write(b"a" * 2000)
    first = ListSink(1200)
    assert stream.write_frame(first, 1 << 20) > 0
    first.lose()
    second = ListSink(1200)
    assert stream.write_frame(second, 1 << 20) == 0  # a retransmission uses no new credit
    (frame,) = frames_of(second)
    assert frame.offset == 0
    assert stream.write_frame(ListSink(1), 1 << 20) == NO_ROOM
