"""The stream manager (RFC 9000 §2-§4, §19): limits, errors, scheduling, a simulated pair."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mstls.codes import TransportErrorCode
from mstls.core.events import (
    StopSendingReceived,
    StreamAcknowledged,
    StreamDataAvailable,
    StreamOpened,
    StreamReset,
    StreamsAvailable,
    StreamWritable,
)
from mstls.core.sending import ListSink
from mstls.core.stream_manager import STREAM_FRAME_HANDLERS, StreamManager
from mstls.core.streams import RecvState, SendState
from mstls.exceptions import (
    ConfigurationError,
    ProtocolError,
    StreamError,
    StreamLimitReached,
    StreamResetError,
    StreamStateError,
    StreamStoppedError,
)
from mstls.wire.buffer import Reader
from mstls.wire.frame_types import FrameType
from mstls.wire.frames import (
    DataBlockedFrame,
    Frame,
    MaxDataFrame,
    MaxStreamDataFrame,
    MaxStreamsFrame,
    ResetStreamFrame,
    StopSendingFrame,
    StreamDataBlockedFrame,
    StreamFrame,
    StreamsBlockedFrame,
    decode_frame,
)
from mstls.wire.transport_params import TransportParameters

KIB = 1024


def params(
    data: int = 1 << 20, stream: int = 256 * KIB, bidi: int = 16, uni: int = 16
) -> TransportParameters:
    return TransportParameters(
        initial_max_data=data,
        initial_max_stream_data_bidi_local=stream,
        initial_max_stream_data_bidi_remote=stream,
        initial_max_stream_data_uni=stream,
        initial_max_streams_bidi=bidi,
        initial_max_streams_uni=uni,
    )


def manager(
    is_client: bool = True,
    local: TransportParameters | None = None,
    peer: TransportParameters | None = None,
    **settings: Any,
) -> StreamManager:
    m = StreamManager(is_client, local or params(), **settings)
    if peer is not None:
        m.set_peer_parameters(peer)
    return m


def decoded(sink: ListSink) -> list[Frame]:
    return [decode_frame(Reader(raw)) for raw in sink.frames]


def send_once(m: StreamManager, capacity: int = 1200, now: float = 0.0) -> ListSink:
    sink = ListSink(capacity)
    m.write_frames(sink, now)
    return sink


def frames_of_type(frames: list[Frame], cls: type) -> list[Any]:
    return [f for f in frames if isinstance(f, cls)]


class Pair:
    """Two managers joined by an in-memory lossy link with a virtual clock."""

    def __init__(
        self,
        client_params: TransportParameters | None = None,
        server_params: TransportParameters | None = None,
        *,
        loss: float = 0.0,
        seed: int = 0,
        **settings: Any,
    ) -> None:
        cp = client_params or params()
        sp = server_params or params()
        self.client = manager(True, cp, sp, **settings)
        self.server = manager(False, sp, cp, **settings)
        self.loss = loss
        self.rng = random.Random(seed)
        self.now = 0.0
        self.sent: list[Frame] = []  # every frame delivered, both ways
        self.packets_lost = 0

    def step(self, capacity: int = 1200) -> bool:
        """One packet each way; True if anything was sent."""
        self.now += 0.001
        moved = False
        for src, dst in ((self.client, self.server), (self.server, self.client)):
            sink = send_once(src, capacity, self.now)
            if not sink.frames:
                continue
            moved = True
            if self.rng.random() < self.loss:
                self.packets_lost += 1
                sink.lose()
                continue
            handlers = dst.frame_handlers()
            for frame in decoded(sink):
                self.sent.append(frame)
                handlers[frame.frame_type](frame)
            sink.acknowledge()
        return moved


# -- opening streams and limits -------------------------------------------------------------
def test_stream_ids_for_each_role() -> None:
    client = manager(True, peer=params())
    server = manager(False, peer=params())
    assert [client.open_stream() for _ in range(2)] == [0, 4]
    assert client.open_stream(bidirectional=False) == 2
    assert [server.open_stream() for _ in range(2)] == [1, 5]
    assert server.open_stream(bidirectional=False) == 3


def test_no_streams_before_peer_parameters() -> None:
    m = manager()
    with pytest.raises(StreamLimitReached):
        m.open_stream()
    m.set_peer_parameters(params(bidi=1))
    assert StreamsAvailable(True) in m.pull_events()
    assert m.open_stream() == 0


def test_stream_limit_sends_streams_blocked_once() -> None:
    m = manager(peer=params(bidi=2))
    m.open_stream()
    m.open_stream()
    with pytest.raises(StreamLimitReached):
        m.open_stream()
    with pytest.raises(StreamLimitReached):
        m.open_stream()
    frames = decoded(send_once(m))
    assert frames == [StreamsBlockedFrame(2, True)]
    assert decoded(send_once(m)) == []
    m.on_max_streams(MaxStreamsFrame(3, True))
    assert StreamsAvailable(True) in m.pull_events()
    assert m.open_stream() == 8
    m.on_max_streams(MaxStreamsFrame(1, True))  # smaller: ignored (§19.11)
    assert m.pull_events() == []


def test_lost_streams_blocked_is_resent_only_while_blocked() -> None:
    m = manager(peer=params(uni=0))
    with pytest.raises(StreamLimitReached):
        m.open_stream(bidirectional=False)
    sink = send_once(m)
    assert decoded(sink) == [StreamsBlockedFrame(0, False)]
    sink.lose()
    assert decoded(send_once(m)) == [StreamsBlockedFrame(0, False)]
    send_once(m).lose()
    m.on_max_streams(MaxStreamsFrame(5, False))
    assert decoded(send_once(m)) == []


def test_peer_stream_beyond_our_limit() -> None:
    m = manager(False, local=params(bidi=2, uni=1), peer=params())
    m.on_stream(StreamFrame(4, 0, b"x"))  # index 1 < 2
    with pytest.raises(ProtocolError) as info:
        m.on_stream(StreamFrame(8, 0, b"x"))
    assert info.value.error_code == TransportErrorCode.STREAM_LIMIT_ERROR
    assert info.value.frame_type == 0x0A
    with pytest.raises(ProtocolError) as info:
        m.on_reset_stream(ResetStreamFrame(6, 0, 0))  # uni index 1 >= 1
    assert info.value.error_code == TransportErrorCode.STREAM_LIMIT_ERROR
    assert info.value.frame_type == FrameType.RESET_STREAM


def test_lower_peer_streams_open_implicitly() -> None:
    m = manager(False, peer=params())
    m.on_stream(StreamFrame(8, 0, b"x"))
    assert m.accept_pending() == [0, 4, 8]
    assert m.accept_pending() == []
    events = m.pull_events()
    assert [e for e in events if isinstance(e, StreamOpened)] == [
        StreamOpened(0),
        StreamOpened(4),
        StreamOpened(8),
    ]
    assert StreamDataAvailable(8) in events


@pytest.mark.parametrize(
    ("is_client", "frame", "frame_type"),
    [
        # a STREAM frame on our own unidirectional (send-only) stream (§19.8)
        (True, StreamFrame(2, 0, b"x"), 0x0A),
        # STREAM on a stream of ours not yet opened (§19.8)
        (True, StreamFrame(4, 5, b"x", fin=True), 0x0F),
        # RESET_STREAM for a send-only stream (§19.4)
        (True, ResetStreamFrame(2, 0, 0), FrameType.RESET_STREAM),
        # STOP_SENDING for a receive-only stream (§19.5)
        (True, StopSendingFrame(3, 0), FrameType.STOP_SENDING),
        # STOP_SENDING for a stream of ours not yet opened (§19.5)
        (False, StopSendingFrame(5, 0), FrameType.STOP_SENDING),
        # MAX_STREAM_DATA for a receive-only stream (§19.10)
        (False, MaxStreamDataFrame(2, 10), FrameType.MAX_STREAM_DATA),
        # MAX_STREAM_DATA for a stream of ours not yet opened (§19.10)
        (True, MaxStreamDataFrame(8, 10), FrameType.MAX_STREAM_DATA),
        # STREAM_DATA_BLOCKED for a send-only stream (§19.13)
        (False, StreamDataBlockedFrame(3, 10), FrameType.STREAM_DATA_BLOCKED),
    ],
)
def test_stream_state_errors(is_client: bool, frame: Frame, frame_type: int) -> None:
    m = manager(is_client, peer=params())
    m.open_stream()  # stream 0 (client) or 1 (server) exists
    m.open_stream(bidirectional=False)  # 2 or 3
    handler = m.frame_handlers()[frame.frame_type]
    with pytest.raises(ProtocolError) as info:
        handler(frame)
    assert info.value.error_code == TransportErrorCode.STREAM_STATE_ERROR
    assert info.value.frame_type == frame_type


def test_connection_flow_control_error() -> None:
    m = manager(False, local=params(data=1000, stream=800), peer=params())
    m.on_stream(StreamFrame(0, 0, b"x" * 800))
    m.on_stream(StreamFrame(4, 0, b"x" * 100))
    m.on_stream(StreamFrame(4, 199, b"x"))  # highest offset counts, not bytes (§4.1)
    with pytest.raises(ProtocolError) as info:
        m.on_stream(StreamFrame(8, 0, b"x", fin=True))
    assert info.value.error_code == TransportErrorCode.FLOW_CONTROL_ERROR
    assert info.value.frame_type == 0x0B
    with pytest.raises(ProtocolError) as info:
        m.on_reset_stream(ResetStreamFrame(8, 0, 1))
    assert info.value.error_code == TransportErrorCode.FLOW_CONTROL_ERROR
    assert info.value.frame_type == FrameType.RESET_STREAM


def test_stream_flow_control_and_final_size_errors_carry_the_frame_type() -> None:
    m = manager(False, local=params(stream=100), peer=params())
    with pytest.raises(ProtocolError) as info:
        m.on_stream(StreamFrame(0, 50, b"x" * 51))
    assert info.value.error_code == TransportErrorCode.FLOW_CONTROL_ERROR
    assert info.value.frame_type == 0x0E
    m.on_stream(StreamFrame(4, 0, b"abc", fin=True))
    with pytest.raises(ProtocolError) as info:
        m.on_stream(StreamFrame(4, 2, b"cd", fin=True))
    assert info.value.error_code == TransportErrorCode.FINAL_SIZE_ERROR
    assert info.value.frame_type == 0x0F
    with pytest.raises(ProtocolError) as info:
        m.on_reset_stream(ResetStreamFrame(4, 0, 2))
    assert info.value.error_code == TransportErrorCode.FINAL_SIZE_ERROR
    assert info.value.frame_type == FrameType.RESET_STREAM


# -- application calls -------------------------------------------------------------------------
def test_application_misuse_raises_stream_errors() -> None:
    m = manager(peer=params())
    with pytest.raises(StreamStateError):
        m.write(0, b"x")  # never opened
    uni = m.open_stream(bidirectional=False)
    with pytest.raises(StreamStateError):
        m.read(uni, 10)  # send-only
    m.on_stream(StreamFrame(3, 0, b"x"))  # the peer's uni stream
    with pytest.raises(StreamStateError):
        m.write(3, b"x")  # receive-only
    sid = m.open_stream()
    m.write(sid, b"x", fin=True)
    with pytest.raises(StreamStateError):
        m.write(sid, b"y")


def test_write_read_round_trip_and_acknowledgement() -> None:
    pair = Pair()
    sid = pair.client.open_stream()
    assert pair.client.write(sid, b"hello", fin=True) == 5
    assert pair.client.has_data_to_send()
    pair.step()
    assert pair.server.accept_pending() == [sid]
    assert pair.server.read(sid, 100) == (b"hello", True)
    assert StreamAcknowledged(sid) in pair.client.pull_events()
    assert pair.client.get_stream(sid).send.state is SendState.DATA_RECVD  # type: ignore[union-attr]
    assert not pair.client.has_data_to_send()


def test_retransmission_after_loss() -> None:
    client = manager(True, peer=params())
    server = manager(False, peer=params())
    sid = client.open_stream()
    client.write(sid, bytes(range(256)) * 10, fin=True)
    lost = send_once(client)
    lost.lose()
    second = send_once(client)
    frames = frames_of_type(decoded(second), StreamFrame)
    assert frames[0].offset == 0  # the lost data goes first
    for frame in frames:
        server.on_stream(frame)
    second.acknowledge()
    while (sink := send_once(client)).frames:
        for frame in decoded(sink):
            server.on_stream(frame)  # type: ignore[arg-type]
        sink.acknowledge()
    assert server.read(sid, 1 << 20) == (bytes(range(256)) * 10, True)
    assert StreamAcknowledged(sid) in client.pull_events()


def test_writable_event_when_buffer_space_returns() -> None:
    pair = Pair(send_buffer_size=4000)
    sid = pair.client.open_stream()
    assert pair.client.write(sid, b"x" * 10_000) == 4000
    for _ in range(10):
        pair.step()
    events = pair.client.pull_events()
    assert StreamWritable(sid) in events
    assert pair.client.write(sid, b"x" * 10_000) == 4000


def test_stop_sending_triggers_reset_with_the_peers_code() -> None:
    pair = Pair()
    sid = pair.client.open_stream()
    pair.client.write(sid, b"x" * 5000)
    pair.step()
    pair.server.stop_sending(sid, 77)
    pair.step()
    assert StopSendingReceived(sid, 77) in pair.client.pull_events()
    with pytest.raises(StreamStoppedError) as info:
        pair.client.write(sid, b"more")
    assert info.value.error_code == 77
    for _ in range(3):
        pair.step()
    resets = frames_of_type(pair.sent, ResetStreamFrame)
    assert resets and resets[0].error_code == 77
    assert pair.client.get_stream(sid).send.state is SendState.RESET_RECVD  # type: ignore[union-attr]
    with pytest.raises(StreamStateError):
        pair.server.read(sid, 10)  # we stopped reading
    pair.server.write(sid, b"answer", fin=True)  # E6: the other direction is unaffected
    pair.step()
    assert pair.client.read(sid, 100) == (b"answer", True)


def test_reset_by_peer_returns_delivered_data_then_fails_reads() -> None:
    """E6: the 15,000 bytes that arrived before RESET_STREAM are read first."""
    pair = Pair(server_params=params(data=20_000, stream=20_000))
    sid = pair.client.open_stream()
    pair.client.write(sid, b"x" * 15_000)
    for _ in range(20):
        pair.step()
    pair.client.reset_stream(sid, 5)
    pair.step()
    assert StreamReset(sid, 5, 15_000) in pair.server.pull_events()
    received = bytearray()
    while len(received) < 15_000:
        data, fin = pair.server.read(sid, 4000)
        assert data and not fin
        received += data
    assert received == b"x" * 15_000
    with pytest.raises(StreamResetError) as info:
        pair.server.read(sid, 100)
    assert info.value.error_code == 5
    window = pair.server.connection_window
    assert window.consumed == 15_000  # what was read is credited back
    pair.step()
    assert pair.client.connection_credit.limit > 20_000  # MAX_DATA followed


def test_reset_with_a_gap_credits_the_connection_and_forgets_the_stream() -> None:
    """Bytes beyond the first gap are undeliverable: credited at once (final size, §4.5);
    the readable prefix is credited when read; the stream is forgotten once the
    reset was reported."""
    m = manager(False, params(data=1000, stream=1000), params())
    sid = 2  # the client's first unidirectional stream: receive-only for us
    m.on_stream(StreamFrame(sid, 0, b"a" * 100))
    m.on_stream(StreamFrame(sid, 200, b"b" * 100))
    m.on_reset_stream(ResetStreamFrame(sid, 11, 600))
    window = m.connection_window
    assert window.received == 600 and window.consumed == 500
    assert m.read(sid, 1000) == (b"a" * 100, False)
    assert window.consumed == 600
    assert frames_of_type(decoded(send_once(m)), MaxDataFrame)  # half the window came back
    with pytest.raises(StreamResetError) as info:
        m.read(sid, 1000)
    assert info.value.error_code == 11
    assert m.get_stream(sid) is None  # memory released once reported
    with pytest.raises(StreamStateError):
        m.read(sid, 1000)


def test_read_discarded_after_local_reset_keeps_writes_working() -> None:
    pair = Pair()
    sid = pair.client.open_stream()
    pair.client.write(sid, b"ping")
    pair.step()
    pair.server.write(sid, b"pong")
    pair.server.reset_stream(sid, 1)  # the server abandons its sending part
    pair.step()
    with pytest.raises(StreamResetError):
        pair.client.read(sid, 10)
    assert pair.client.write(sid, b"still", fin=True) == 5  # E6: writes unaffected
    pair.step()
    assert pair.server.read(sid, 100) == (b"pingstill", True)


def test_stream_forgotten_when_both_parts_end() -> None:
    pair = Pair(client_params=params(bidi=2), server_params=params(bidi=2))
    for _ in range(5):  # more streams than the initial limit of 2: credit comes back
        sid = pair.client.open_stream()
        pair.client.write(sid, b"req", fin=True)
        pair.step()
        assert pair.server.read(sid, 10) == (b"req", True)
        pair.server.write(sid, b"resp", fin=True)
        for _ in range(3):
            pair.step()
        assert pair.client.read(sid, 10) == (b"resp", True)
        for _ in range(3):
            pair.step()
        assert pair.client.get_stream(sid) is None
        assert pair.server.get_stream(sid) is None
        # Read by its ID and forgotten: not offered for accepting any more (nothing is
        # kept per stream once it is done, issue 11).
        assert pair.server.accept_pending() == []
        pair.server.on_stream(StreamFrame(sid, 0, b"req", fin=True))  # late duplicate: ignored
        assert pair.server.accept_pending() == []
        with pytest.raises(StreamStateError):
            pair.client.read(sid, 10)  # closed
    assert max(f.maximum for f in frames_of_type(pair.sent, MaxStreamsFrame)) >= 5


def test_max_streams_keeps_the_peer_concurrency() -> None:
    server = manager(False, local=params(uni=4), peer=params())
    for sid in (2, 6, 10, 14):
        server.on_stream(StreamFrame(sid, 0, b"x", fin=True))
        assert server.read(sid, 10) == (b"x", True)
    frames = frames_of_type(decoded(send_once(server)), MaxStreamsFrame)
    assert frames == [MaxStreamsFrame(8, False)]  # 4 closed + 4 concurrent


# -- flow control in motion -------------------------------------------------------------------
def test_fast_reader_grows_windows_and_sender_is_never_blocked() -> None:
    small = params(data=64 * KIB, stream=32 * KIB)
    pair = Pair(server_params=small)
    pair.client.rtt = pair.server.rtt = 0.05
    sid = pair.client.open_stream()
    payload = b"z" * (2 << 20)
    written = 0
    received = 0
    while received < len(payload):
        written += pair.client.write(sid, memoryview(payload)[written:])
        pair.step()
        data, _ = pair.server.read(sid, 1 << 30)
        received += len(data)
    assert not frames_of_type(pair.sent, StreamDataBlockedFrame)
    assert not frames_of_type(pair.sent, DataBlockedFrame)
    assert frames_of_type(pair.sent, MaxStreamDataFrame)
    assert frames_of_type(pair.sent, MaxDataFrame)
    stream = pair.server.get_stream(sid)
    assert stream is not None and stream.recv is not None
    assert stream.recv.window.window > 32 * KIB  # auto-tuned
    assert pair.server.connection_window.window >= stream.recv.window.window


def test_slow_reader_blocks_sender_with_blocked_frames_once() -> None:
    pair = Pair(server_params=params(data=1 << 20, stream=4000))
    sid = pair.client.open_stream()
    pair.client.write(sid, b"x" * 10_000)
    for _ in range(10):
        pair.step()
    blocked = frames_of_type(pair.sent, StreamDataBlockedFrame)
    assert blocked == [StreamDataBlockedFrame(sid, 4000)]
    assert not pair.client.has_data_to_send()
    pair.server.read(sid, 4000)
    for _ in range(10):
        pair.step()
    assert pair.client.get_stream(sid).send.send_offset > 4000  # type: ignore[union-attr]


def test_connection_blocked_sends_data_blocked_but_fin_still_goes() -> None:
    pair = Pair(server_params=params(data=3000, stream=1 << 20))
    first = pair.client.open_stream()
    second = pair.client.open_stream()
    pair.client.write(first, b"x" * 3000)
    pair.client.write(second, b"x" * 10)  # no connection credit left for this
    for _ in range(6):
        pair.step()
    assert frames_of_type(pair.sent, DataBlockedFrame) == [DataBlockedFrame(3000)]
    third = pair.client.open_stream()
    pair.client.write(third, b"", fin=True)  # a FIN alone needs no credit
    pair.step()
    assert pair.server.read(third, 10) == (b"", True)


def test_lost_max_data_is_resent_with_the_current_limit() -> None:
    client = manager(True, peer=params(data=10_000, stream=10_000))
    server = manager(False, local=params(data=10_000, stream=10_000), peer=params())
    server.on_stream(StreamFrame(0, 0, b"x" * 8000))
    server.read(0, 6000)
    first = send_once(server)
    (lost,) = [f.maximum for f in frames_of_type(decoded(first), MaxDataFrame)]
    server.read(0, 2000)
    server.on_data_blocked(DataBlockedFrame(lost))  # the peer is blocked: update now
    first.lose()
    frames = decoded(send_once(server))
    resent = [f.maximum for f in frames_of_type(frames, MaxDataFrame)]
    assert resent == [server.connection_window.limit]  # one frame, the current limit
    assert resent[0] > lost
    client.open_stream()  # stream 0, as the data came from it
    for frame in frames:
        client.frame_handlers()[frame.frame_type](frame)
    assert client.connection_credit.limit == resent[0]


def test_acknowledged_update_is_not_resent() -> None:
    server = manager(False, local=params(data=10_000, stream=10_000), peer=params())
    server.on_stream(StreamFrame(0, 0, b"x" * 8000))
    server.read(0, 6000)
    first = send_once(server)
    second_copy = ListSink(1200)
    second_copy.records = list(first.records)
    first.acknowledge()
    second_copy.lose()  # a duplicate record of the same frame, declared lost later
    assert decoded(send_once(server)) == []


def test_round_robin_between_streams() -> None:
    m = manager(peer=params(data=1 << 30, stream=1 << 30))
    a = m.open_stream()
    b = m.open_stream()
    m.write(a, b"a" * 50_000)
    m.write(b, b"b" * 50_000)
    order = []
    for _ in range(20):
        sink = send_once(m, 1200)
        order += [f.stream_id for f in frames_of_type(decoded(sink), StreamFrame)]
        sink.acknowledge()
    assert order[:6] == [a, b, a, b, a, b]
    assert abs(order.count(a) - order.count(b)) <= 1


def test_small_frames_share_a_packet_fairly() -> None:
    m = manager(peer=params())
    ids = [m.open_stream() for _ in range(3)]
    for sid in ids:
        m.write(sid, b"q", fin=True)
    frames = frames_of_type(decoded(send_once(m)), StreamFrame)
    assert [f.stream_id for f in frames] == ids


# -- QMux ordered transport -------------------------------------------------------------------
def test_ordered_transport_rejects_a_gap() -> None:
    m = manager(False, peer=params(), ordered_transport=True)
    m.on_stream(StreamFrame(0, 0, b"abc"))
    m.on_stream(StreamFrame(0, 3, b"def"))
    with pytest.raises(ProtocolError) as info:
        m.on_stream(StreamFrame(0, 10, b"x"))
    assert info.value.error_code == TransportErrorCode.PROTOCOL_VIOLATION
    assert info.value.frame_type == 0x0E
    with pytest.raises(ProtocolError):
        m.on_stream(StreamFrame(0, 3, b"def"))  # a repeat is not in order either


def test_ordered_transport_with_immediate_acknowledgement() -> None:
    client = manager(True, peer=params(), ordered_transport=True)
    server = manager(False, peer=params(), ordered_transport=True)
    sid = client.open_stream()
    payload = random.Random(3).randbytes(300_000)
    written = 0
    out = bytearray()
    fin = False
    for _ in range(2000):
        if written < len(payload):
            written += client.write(sid, payload[written:], fin=True)
        for src, dst in ((client, server), (server, client)):
            sink = ListSink(16_000, acknowledge_immediately=True)
            src.write_frames(sink, 0.0)
            handlers = dst.frame_handlers()
            for frame in decoded(sink):
                handlers[frame.frame_type](frame)
        if server.get_stream(sid) is not None:
            data, fin = server.read(sid, 1 << 20)
            out += data
        if fin:
            break
    assert bytes(out) == payload
    assert StreamAcknowledged(sid) in client.pull_events()
    assert client.get_stream(sid).send.buffered == 0  # type: ignore[union-attr]


# -- the whole layer ---------------------------------------------------------------------------
def transfer(pair: Pair, sizes: list[int], rounds: int = 50_000) -> None:
    rng = random.Random(7)
    payloads = {}
    for size in sizes:
        sid = pair.client.open_stream()
        payloads[sid] = rng.randbytes(size)
    sent = dict.fromkeys(payloads, 0)
    for sid, payload in payloads.items():
        if not payload:
            pair.client.write(sid, b"", fin=True)
    received: dict[int, Callable[[], Any]] = {}
    digests = {sid: hashlib.sha256() for sid in payloads}
    done: set[int] = set()
    for _ in range(rounds):
        for sid, payload in payloads.items():
            if sent[sid] < len(payload):
                piece = payload[sent[sid] : sent[sid] + 100_000]
                sent[sid] += pair.client.write(
                    sid, piece, fin=sent[sid] + len(piece) == len(payload)
                )
        pair.step()
        for sid in pair.server.accept_pending():
            received[sid] = digests[sid].hexdigest
        for sid in list(received):
            if sid in done:
                continue
            data, fin = pair.server.read(sid, 1 << 20)
            digests[sid].update(data)
            if fin:
                done.add(sid)
        pair.server.pull_events()
        pair.client.pull_events()
        if len(done) == len(payloads):
            break
    assert done == set(payloads)
    for sid, payload in payloads.items():
        assert digests[sid].hexdigest() == hashlib.sha256(payload).hexdigest()


def test_transfer_several_streams_with_loss() -> None:
    pair = Pair(
        client_params=params(data=256 * KIB, stream=64 * KIB),
        server_params=params(data=256 * KIB, stream=64 * KIB),
        loss=0.1,
        seed=11,
    )
    pair.client.rtt = pair.server.rtt = 0.01
    transfer(pair, [1 << 20, 1 << 20, 512 * KIB, 1, 0])
    for _ in range(50):
        pair.step()
    assert not pair.client.has_data_to_send()
    for sid in (0, 4, 8, 12):  # the server never ended its parts, so the streams stay
        stream = pair.client.get_stream(sid)
        assert stream is not None and stream.send is not None
        assert stream.send.state is SendState.DATA_RECVD
    assert pair.packets_lost > 100


def test_server_receive_states_after_transfer() -> None:
    pair = Pair(loss=0.05, seed=5)
    transfer(pair, [200 * KIB])
    stream = pair.server.get_stream(0)
    assert stream is not None and stream.recv is not None
    assert stream.recv.state is RecvState.DATA_READ


def test_lost_data_blocked_not_resent_once_unblocked() -> None:
    m = manager(peer=params(data=1000))
    sid = m.open_stream()
    m.write(sid, b"x" * 2000)
    send_once(m).acknowledge()  # 1000 bytes, then the credit is gone
    sink = send_once(m)
    assert decoded(sink) == [DataBlockedFrame(1000)]
    assert not m.has_data_to_send()
    m.on_max_data(MaxDataFrame(5000))
    sink.lose()
    assert frames_of_type(decoded(send_once(m)), DataBlockedFrame) == []


# -- robustness: any peer frames give progress or a clean protocol error -----------------------
stream_ids = st.integers(0, 20)
sizes = st.integers(0, 3000)
codes = st.integers(0, 2**62 - 1)
peer_frames = st.one_of(
    st.builds(
        StreamFrame,
        stream_ids,
        st.integers(0, 5000),
        st.binary(max_size=200),
        st.booleans(),
    ),
    st.builds(ResetStreamFrame, stream_ids, codes, sizes),
    st.builds(StopSendingFrame, stream_ids, codes),
    st.builds(MaxDataFrame, st.integers(0, 1 << 20)),
    st.builds(MaxStreamDataFrame, stream_ids, st.integers(0, 1 << 20)),
    st.builds(MaxStreamsFrame, st.integers(0, 100), st.booleans()),
    st.builds(DataBlockedFrame, sizes),
    st.builds(StreamDataBlockedFrame, stream_ids, sizes),
    st.builds(StreamsBlockedFrame, st.integers(0, 100), st.booleans()),
)
app_calls = st.tuples(
    st.sampled_from(["open", "open_uni", "write", "read", "reset", "stop", "send"]),
    stream_ids,
    st.integers(0, 3000),
)


@settings(max_examples=300, deadline=None)
@given(
    is_client=st.booleans(),
    actions=st.lists(st.one_of(peer_frames, app_calls), max_size=40),
)
def test_random_frames_and_calls_never_break_the_manager(
    is_client: bool, actions: list[Any]
) -> None:
    m = manager(is_client, local=params(data=4000, stream=1500, bidi=3, uni=2), peer=params())
    handlers = m.frame_handlers()
    for action in actions:
        try:
            if isinstance(action, tuple):
                run_app_call(m, *action)
            else:
                handlers[action.frame_type](action)
        except ProtocolError:
            return  # the connection would close here
        except StreamError:
            pass
        check_invariants(m)


def run_app_call(m: StreamManager, name: str, stream_id: int, size: int) -> None:
    if name == "open":
        m.open_stream()
    elif name == "open_uni":
        m.open_stream(bidirectional=False)
    elif name == "write":
        m.write(stream_id, b"w" * size, fin=size % 3 == 0)
    elif name == "read":
        m.read(stream_id, size)
    elif name == "reset":
        m.reset_stream(stream_id, size)
    elif name == "stop":
        m.stop_sending(stream_id, size)
    else:
        sink = send_once(m, max(size, 50))
        decoded(sink)  # everything written is a valid frame
        (sink.acknowledge if size % 2 else sink.lose)()
        m.pull_events()


def check_invariants(m: StreamManager) -> None:
    window = m.connection_window
    assert window.consumed <= window.received <= window.limit
    for stream in list(m._streams.values()):
        recv = stream.recv
        if recv is not None:
            w = recv.window
            assert w.consumed <= recv.frontier <= max(w.received, recv.frontier)
            assert len(recv._buffer) <= w.limit - w.consumed  # memory bounded by the window
        send = stream.send
        if send is not None:
            assert send.acked_offset <= send.send_offset <= send.write_offset
            assert send.buffered <= send.buffer_size


def test_zero_stream_credit_is_signalled_at_once() -> None:
    m = manager(peer=params(stream=0))
    sid = m.open_stream()
    assert m.write(sid, b"data") == 4  # buffered, but the peer gave no credit
    assert decoded(send_once(m)) == [StreamDataBlockedFrame(sid, 0)]
    assert m.get_stream(sid).send.state is SendState.SEND  # type: ignore[union-attr]
    m.on_max_stream_data(MaxStreamDataFrame(sid, 10))
    (frame,) = decoded(send_once(m))
    assert frame == StreamFrame(sid, 0, b"data")


def test_unbound_handler_table_matches_bound_handlers() -> None:
    m = manager(False, peer=params())
    table = STREAM_FRAME_HANDLERS
    assert set(table) == set(m.frame_handlers()) == {*range(0x04, 0x06), *range(0x08, 0x18)}
    table[0x0B](m, StreamFrame(0, 0, b"hi", fin=True))
    assert m.read(0, 10) == (b"hi", True)


def test_stream_limits_beyond_what_we_track_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        StreamManager(True, params(bidi=5000), max_tracked_streams=4096)
