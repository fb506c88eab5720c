"""Issue 11: streams at scale on one connection (in-memory pair, virtual clock).

Per-stream state is freed once a stream is done on both sides, the stream-count
limit is a setting, stream credit comes back after resets, and a small request
stream goes out in as few datagrams as possible.
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest

from mstls.core.stream_limits import DEFAULT_MAX_TRACKED_STREAMS, MAX_TRACKED_STREAMS_LIMIT
from mstls.exceptions import ConfigurationError
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

    def __init__(self, transport: str, **server: Any) -> None:
        if transport == "udp":
            self.pair: Any = Pair(server=server_config(**server))
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
        server.write(server.accept(), b"r" * size, fin=True)
        return True

    sessions.run_until(served)
    sessions.run_until(lambda: _drain(client, sid, answer))
    assert len(got) == len(answer) == size
    assert client.read(sid, 10) == b""  # the end is reported again, nothing kept for it


def _held(obj: object) -> int:
    """Entries in every container attribute of ``obj`` (dicts, sets, lists, deques)."""
    return sum(
        len(value)
        for value in vars(obj).values()
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
