"""Stream semantics the public API promises, on the in-memory QUIC and QMux pairs.

What :class:`~mstls.session.Session` (behind the blocking and trio APIs) reports,
with a virtual clock: "acknowledged" for ``wait_acknowledged`` (RFC 9000 §3.1 on
QUIC, a QX_PING round trip on QMux) is recomputed for every new write, and a
peer's RESET_STREAM leaves the data delivered before it readable (rule E6).
"""

from __future__ import annotations

from typing import Any

import pytest

from mstls import errors
from mstls.exceptions import StreamReset, StreamStateError, StreamStopped
from mstls.session import Session
from tests.qmux import pair as qmux_pair
from tests.quic import pair as quic_pair

TRANSPORTS = ["udp", "tcp"]


class _Sessions:
    """Sessions over both ends of a pair; the pair's own event collection is
    replaced by the sessions' :meth:`Session.pump_events` (as a driver does)."""

    def __init__(self, transport: str) -> None:
        self.transport = transport
        if transport == "udp":
            self.pair: Any = quic_pair.Pair()
        else:
            self.pair = qmux_pair.Pair()
        self.pair.handshake()
        self.client = Session(self.pair.client, transport=transport)
        self.server = Session(self.pair.server, transport=transport)
        self.woken: set[int] = set()
        self.pair._collect = self._pump
        self._pump()

    def _pump(self) -> None:
        self.woken |= self.client.pump_events().streams
        self.server.pump_events()

    def flush(self) -> None:
        """Let the client send what it has, delivering nothing."""
        if self.transport == "udp":
            self.pair._flush()
        else:
            self.pair.flush()
        self._pump()

    def run_until(self, predicate: Any) -> None:
        self.pair.run_until(predicate, max_time=10.0)

    def acked(self, stream_id: int) -> bool:
        """All acknowledged; the check may queue a QX_PING the next step sends."""
        return self.client.all_acknowledged(stream_id)


@pytest.fixture(params=TRANSPORTS)
def sessions(request: pytest.FixtureRequest) -> _Sessions:
    return _Sessions(str(request.param))


# -- wait_acknowledged (issue 17 point 5) -------------------------------------------------
def test_acknowledged_is_recomputed_for_every_new_write(sessions: _Sessions) -> None:
    """An earlier write's acknowledgement says nothing about data written since."""
    sid = sessions.client.open_stream(True)
    assert sid is not None
    sessions.client.write(sid, b"a" * 1000)
    sessions.run_until(lambda: sessions.acked(sid))
    sessions.client.write(sid, b"b" * 1000)
    assert not sessions.acked(sid)  # written, not even sent
    sessions.flush()
    assert not sessions.acked(sid)  # sent (QMux: framed into a TLS record), not acknowledged
    sessions.run_until(lambda: sessions.acked(sid))
    sessions.client.conclude(sid)
    assert not sessions.acked(sid)  # the FIN is not acknowledged yet
    sessions.run_until(lambda: sessions.acked(sid))


def test_qmux_acknowledged_means_a_qx_ping_round_trip() -> None:
    """QMux: data framed is not acknowledged until a QX_PING sent after it comes back."""
    sessions = _Sessions("tcp")
    client = sessions.pair.client
    sid = sessions.client.open_stream(True)
    assert sid is not None
    sessions.client.write(sid, b"x" * 5000)
    sessions.flush()
    assert client.streams.get_stream(sid).send.all_acknowledged  # framed: the sink's "ack"
    before = client.ping_state.largest_acknowledged
    assert not sessions.acked(sid)  # queues the QX_PING
    sessions.woken.clear()
    sessions.flush()  # the request leaves behind the data
    assert client.ping_state.largest_sent > before
    assert not sessions.acked(sid)  # no new QX_PING while one is outstanding
    sessions.run_until(lambda: client.ping_state.largest_acknowledged > before)
    assert sid in sessions.woken  # the answer wakes the stream's waiters
    assert sessions.acked(sid)
    server_stream = sessions.pair.server.streams.get_stream(sid)
    assert server_stream.recv.frontier == 5000  # the peer's stream layer holds all of it


def test_qmux_acknowledged_after_the_stream_is_forgotten() -> None:
    """A stream forgotten right after its FIN was framed still waits for the round trip."""
    sessions = _Sessions("tcp")
    client = sessions.pair.client
    sid = sessions.client.open_stream(False)  # unidirectional: forgotten once framed
    assert sid is not None
    sessions.client.write(sid, b"y" * 100, fin=True)
    sessions.flush()
    assert client.streams.get_stream(sid) is None
    assert not sessions.acked(sid)
    sessions.run_until(lambda: sessions.acked(sid))


def test_acknowledged_fails_after_stop_sending_and_local_reset(sessions: _Sessions) -> None:
    """E6: STOP_SENDING fails the write side, wait_acknowledged included; after our own
    reset the data is abandoned and can never be acknowledged."""
    client, server, pair = sessions.client, sessions.server, sessions.pair
    sid = client.open_stream(True)
    assert sid is not None
    client.write(sid, b"q" * 100)
    sessions.run_until(lambda: list(server.accept_queue) == [sid])
    server.stop_sending(sid, 9)
    send = pair.client.streams.get_stream(sid).send
    sessions.run_until(lambda: send.stop_code is not None)
    errors.clear_error()
    with pytest.raises(StreamStopped) as stopped:
        sessions.acked(sid)
    assert stopped.value.code == 9
    other = client.open_stream(True)
    assert other is not None
    client.write(other, b"r" * 100)
    client.reset(other, 4)
    with pytest.raises(StreamStateError):
        sessions.acked(other)
    assert errors.peek_last_error() is not None
    errors.clear_error()
    pair.step()


# -- reads after RESET_STREAM (issue 17 point 11) ----------------------------------------------
def test_read_returns_delivered_data_before_the_reset(sessions: _Sessions) -> None:
    client, server = sessions.client, sessions.server
    sid = client.open_stream(True)
    assert sid is not None
    payload = bytes(range(256)) * 40
    client.write(sid, payload)
    sessions.run_until(
        lambda: (
            list(server.accept_queue) == [sid]
            and sessions.pair.server.streams.get_stream(sid).recv.frontier == len(payload)
        )
    )
    client.reset(sid, 0x1234)
    stream = sessions.pair.server.streams.get_stream(sid)
    sessions.run_until(lambda: stream.recv.reset_code is not None)
    received = bytearray()
    while len(received) < len(payload):
        data = server.read(sid, 1000)
        assert data, "delivered data must be read before the reset is reported"
        received += data
    assert received == payload
    errors.clear_error()
    for _ in range(2):  # reported, and again on a later read
        with pytest.raises(StreamReset) as info:
            server.read(sid, 1000)
        assert info.value.code == 0x1234
    assert errors.peek_last_error() is not None  # in the caller's queue (E5)
    errors.clear_error()
    # Memory and credit: the stream's buffer is gone and every byte was credited.
    assert len(stream.recv._buffer) == 0
    window = sessions.pair.server.streams.connection_window
    assert window.consumed == window.received
    # E6: the reset of one direction leaves the other one working.
    server.write(sid, b"reply", fin=True)
    sessions.run_until(lambda: client.read(sid, 100) == b"reply")


def test_nothing_written_is_acknowledged_at_once(sessions: _Sessions) -> None:
    sid = sessions.client.open_stream(True)
    assert sid is not None
    assert sessions.acked(sid)
    assert not sessions.client._ack_pings  # QMux: no round trip needed
