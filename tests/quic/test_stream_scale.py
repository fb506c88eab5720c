"""Issue 11: streams at scale on one connection (in-memory pair, virtual clock).

Per-stream state is freed once a stream is done on both sides, the stream-count
limit is a setting, stream credit comes back after resets, and a small request
stream goes out in as few datagrams as possible.
"""

from __future__ import annotations

import contextlib
import gc
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest

from mstls.core.stream_limits import DEFAULT_MAX_TRACKED_STREAMS, MAX_TRACKED_STREAMS_LIMIT
from mstls.exceptions import ConfigurationError, StreamReset, StreamStateError
from mstls.qmux.config import QMuxConfig
from mstls.quic.config import QuicConfig
from mstls.session import Session
from tests.qmux import pair as qmux_pair

from .pair import Pair, client_config, server_config

#: Streams opened one after another on one connection (issue 11 point 1).
CHURN = 10_000


# -- the stream-count limit is a setting (issue 11 point 2) -------------------------------------
def test_max_tracked_streams_is_a_checked_setting() -> None:
    assert client_config().max_tracked_streams == DEFAULT_MAX_TRACKED_STREAMS
    assert client_config(max_tracked_streams=MAX_TRACKED_STREAMS_LIMIT).max_tracked_streams
    for bad in (0, MAX_TRACKED_STREAMS_LIMIT + 1, True, "many"):
        with pytest.raises(ConfigurationError):
            client_config(max_tracked_streams=bad)
    assert QMuxConfig(tls=client_config().tls).max_tracked_streams == DEFAULT_MAX_TRACKED_STREAMS
    with pytest.raises(ConfigurationError):
        QMuxConfig(tls=client_config().tls, max_tracked_streams=0)
    assert isinstance(client_config(), QuicConfig)


def test_100k_idle_streams_open_at_once_with_the_limit_raised() -> None:
    """100,000 concurrently open streams on one connection: each carries one byte (so
    the server knows it) and none ends; both sides track all of them."""
    count = 100_000
    pair = Pair(
        client=client_config(max_tracked_streams=count),
        server=server_config(max_streams_bidi=count, max_tracked_streams=count),
    )
    pair.handshake()
    client = pair.client
    sids = [client.streams.open_stream() for _ in range(count)]
    for sid in sids:
        client.streams.write(sid, b"x")
    accepted: list[int] = []

    def all_open() -> bool:
        accepted.extend(pair.server.streams.accept_pending())
        pair.server_events.clear()
        return len(accepted) == count

    pair.run_until(all_open)
    assert client.streams.tracked == count
    assert pair.server.streams.tracked == count
    assert accepted == sids


# -- per-stream state is freed (issue 11 point 1) ------------------------------------------------
class _Sessions:
    """Sessions over both ends of a QUIC or QMux pair, pumped as a driver pumps them."""

    def __init__(self, transport: str, loss: float = 0.0, seed: int = 1, **server: Any) -> None:
        if transport == "udp":
            self.pair: Any = Pair(server=server_config(**server), loss=loss, seed=seed)
        else:
            self.pair = qmux_pair.Pair(server=qmux_pair.server_config(**server))
        self.pair.handshake()
        self.client = Session(self.pair.client, transport=transport)
        self.server = Session(self.pair.server, transport=transport)
        self.pair._collect = self.pump
        self.pump()

    def pump(self) -> None:
        self.client.pump_events()
        self.server.pump_events()

    def run_until(self, predicate: Callable[[], bool]) -> None:
        self.pair.run_until(predicate, max_time=30.0)


def _drain(session: Session, stream_id: int, into: bytearray) -> bool:
    """Read what is there; True at the end (FIN)."""
    while (data := session.read(stream_id, 1 << 16)) is not None:
        if not data:
            return True
        into.extend(data)
    return False


def _request(sessions: _Sessions, size: int = 1024) -> None:
    """One request/response stream: ``size`` bytes and FIN each way, both ends read."""
    client, server = sessions.client, sessions.server
    sid = client.open_stream(True)
    assert sid is not None
    assert client.write(sid, b"q" * size, fin=True) == size
    got = bytearray()
    answer = bytearray()

    def served() -> bool:
        if not server.accept_queue or not _drain(server, server.accept_queue[0], got):
            return False
        accepted = server.accept()
        assert accepted == sid
        server.write(accepted, b"r" * size, fin=True)
        return True

    sessions.run_until(served)
    sessions.run_until(lambda: _drain(client, sid, answer))
    assert len(got) == len(answer) == size
    assert client.read(sid, 10) == b""  # the end is reported again, nothing kept for it


def _attributes(obj: object) -> list[object]:
    """The attribute values of ``obj``: its ``__dict__``, or for a class compiled by mypyc
    (the compiled build, issue 15: no ``__dict__``) the attributes it declares."""
    if hasattr(obj, "__dict__"):
        return list(vars(obj).values())
    names = {n for cls in type(obj).__mro__ for n in getattr(cls, "__mypyc_attrs__", ())}
    return [getattr(obj, name) for name in sorted(names) if hasattr(obj, name)]


def _held(obj: object) -> int:
    """Entries in every container attribute of ``obj`` (dicts, sets, lists, deques)."""
    return sum(
        len(value)
        for value in _attributes(obj)
        if isinstance(value, dict | set | list | deque | frozenset)
    )


def _per_stream_state(sessions: _Sessions) -> dict[str, int]:
    """What could grow with the number of streams seen: the stream tables, every
    container of the sessions, connections and stream managers, all gc objects."""
    gc.collect()
    counts = {"gc objects": len(gc.get_objects())}
    for name, session in (("client", sessions.client), ("server", sessions.server)):
        counts[f"{name} streams"] = len(session.conn.streams._streams)
        for part in (session, session.conn, session.conn.streams):
            counts[f"{name} {type(part).__name__}"] = _held(part)
    return counts


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sequential_streams_leave_no_state_behind(transport: str) -> None:
    """Streams opened and closed one after another on one connection: the stream
    tables, every per-stream container and all objects allocated come back to a small
    constant (counted, not RSS)."""
    sessions = _Sessions(transport)
    for _ in range(200):
        _request(sessions)
    sessions.run_until(lambda: not sessions.pair.server.streams._streams)
    before = _per_stream_state(sessions)
    for _ in range(CHURN):
        _request(sessions)
    sessions.run_until(lambda: not sessions.pair.server.streams._streams)
    after = _per_stream_state(sessions)
    assert after["client streams"] == after["server streams"] == 0
    grown = {name: after[name] - before[name] for name in after}
    assert {name: n for name, n in grown.items() if n >= 64} == {}
    assert sessions.client.tracked_streams == sessions.server.tracked_streams == 0


# -- stream credit comes back after resets (issue 11 point 3) -------------------------------------
LIMIT = 20
ROUNDS = 5


def _opened(session: Session, into: list[int]) -> bool:
    sid = session.open_stream(True)
    if sid is None:
        return False
    into.append(sid)
    return True


def _client_abandons(client: Session, sid: int, how: int) -> None:
    """Leave stream ``sid`` in one of several ways involving a reset or STOP_SENDING."""
    if how == 0:  # data, then reset and stop at once (an aborted close)
        client.write(sid, b"a" * 3000)
        client.reset(sid, 1)
        client.stop_sending(sid, 1)
    elif how == 1:  # nothing written: the RESET_STREAM alone opens it at the server
        client.reset(sid, 2)
        client.stop_sending(sid, 2)
    elif how == 2:  # a whole request, then STOP_SENDING for the answer
        client.write(sid, b"b" * 500, fin=True)
        client.stop_sending(sid, 3)
    elif how == 3:  # STOP_SENDING alone opens it, then the request ends with FIN
        client.stop_sending(sid, 4)
        client.write(sid, b"c" * 10, fin=True)
    elif how == 4:  # data, reset, the answer read to its end
        client.write(sid, b"d" * 100)
        client.reset(sid, 5)
    else:  # a request the server answers without reading on to the reset that follows
        client.write(sid, b"e" * 100)
        client.reset(sid, 6)


def _server_serves(server: Session, done: set[int]) -> None:
    """Accept, read to the end or the reset, answer with a FIN (as an echo server does)."""
    while (sid := server.accept()) is not None:
        done.discard(sid)
        server.pending.add(sid)  # type: ignore[attr-defined]
    for sid in list(server.pending):  # type: ignore[attr-defined]
        if sid // 4 % 6 == 5:  # answer, close: the reset is never read
            if server.conn.streams.get_stream(sid).recv.reset_code is None:
                continue
            server.conclude(sid)
            server.forget(sid)
            server.pending.discard(sid)  # type: ignore[attr-defined]
            done.add(sid)
            continue
        try:
            while (data := server.read(sid, 1 << 16)) is not None and data:
                pass
            if data is None:
                continue
        except StreamReset:
            pass
        server.conclude(sid)
        server.pending.discard(sid)  # type: ignore[attr-defined]
        done.add(sid)


@pytest.mark.parametrize(
    ("transport", "loss", "seed"),
    [("udp", 0, 1), ("tcp", 0, 1), *[("udp", 0.1, s) for s in range(20)]],
)
def test_stream_credit_comes_back_after_resets(transport: str, loss: float, seed: int) -> None:
    """The peer resets or stops streams in various states; once each is done on both
    sides the server re-issues MAX_STREAMS, so ``LIMIT`` more streams open at once."""
    sessions = _Sessions(transport, loss, seed, max_streams_bidi=LIMIT)
    client, server = sessions.client, sessions.server
    server.pending = set()  # type: ignore[attr-defined]
    done: set[int] = set()
    for _ in range(ROUNDS):
        sids: list[int] = []
        for _ in range(LIMIT):  # as the APIs open: wait for credit when none is left
            sessions.run_until(lambda into=sids: _opened(client, into))  # type: ignore[misc]
            _client_abandons(client, sids[-1], sids[-1] // 4 % 6)

        def all_done(sids: list[int] = sids) -> bool:
            _server_serves(server, done)
            for sid in sids:  # the client reads what it did not stop, to the end
                with contextlib.suppress(StreamStateError, StreamReset):
                    _drain(client, sid, bytearray())
            return done >= set(sids)

        sessions.run_until(all_done)
    sessions.run_until(lambda: _opened(client, []))


# -- coalescing (issue 11 point 4) ----------------------------------------------------------------
def test_small_request_response_is_one_datagram_each_way() -> None:
    """Data and FIN handed over together go in one packet, and the ACK of the previous
    answer rides in the next request's packet (it is delayed, RFC 9000 §13.2.1):
    sequential 1 KiB request/response streams cost one datagram each way."""
    sessions = _Sessions("udp")
    pair = sessions.pair
    sent: list[bool] = []
    send = pair._send

    def counting(data: bytes, to_server: bool, address: object = None) -> None:
        sent.append(to_server)
        send(data, to_server, address)

    pair._send = counting
    _request(sessions)  # the first answer's ACK waits for the second request
    sent.clear()
    for _ in range(50):
        _request(sessions)
    assert sent.count(True) == 50  # from the client: data + FIN + the previous ACK
    assert sent.count(False) == 50


def test_a_reset_read_before_its_event_is_pumped_is_not_taken_for_an_end() -> None:
    """E5: once read, a reset is raised on every later read, also after the stream is
    forgotten and even if the StreamReset event was never pumped into the session."""
    sessions = _Sessions("udp")
    client, server = sessions.client, sessions.server
    sessions.pair._collect = client.pump_events  # the server's events stay queued
    sid = client.open_stream(True)
    assert sid is not None
    client.write(sid, b"x")
    client.reset(sid, 7)
    streams = sessions.pair.server.streams
    sessions.run_until(lambda: streams.get_stream(sid) is not None)
    sessions.run_until(lambda: streams.get_stream(sid).recv.reset_code is not None)
    with pytest.raises(StreamReset):
        server.read(sid, 10)
    server.conclude(sid)
    sessions.run_until(lambda: streams.get_stream(sid) is None)  # done on both sides
    with pytest.raises(StreamReset):
        server.read(sid, 10)


def test_the_end_stays_the_end_after_a_late_stop_sending() -> None:
    """STOP_SENDING after the FIN was read changes nothing: reads still say FIN, also
    once the stream is forgotten; reading a stream we stopped earlier raises."""
    sessions = _Sessions("udp")
    client = sessions.client
    _request(sessions)
    sid = client.open_stream(True)
    assert sid is not None
    client.write(sid, b"q", fin=True)
    server = sessions.server
    sessions.run_until(lambda: bool(server.accept_queue) and _drain(server, sid, bytearray()))
    assert server.accept() == sid
    server.stop_sending(sid, 1)  # after the end: no effect
    server.conclude(sid)
    sessions.run_until(lambda: sessions.pair.server.streams.get_stream(sid) is None)
    assert server.read(sid, 10) == b""
    stopped = client.open_stream(True)
    assert stopped is not None
    client.write(stopped, b"q", fin=True)
    sessions.run_until(lambda: bool(server.accept_queue))
    assert server.accept() == stopped
    server.stop_sending(stopped, 2)
    server.conclude(stopped)
    sessions.run_until(lambda: sessions.pair.server.streams.get_stream(stopped) is None)
    with pytest.raises(StreamStateError):
        server.read(stopped, 10)
