"""Issue 11: a server endpoint's work per event does not grow with its connections.

Counting tests: 2,000 idle connections (client keep-alive) on a virtual clock;
every call the endpoint makes into a server connection is counted.  Before the
deadline heap and the dirty set, each event asked all 2,000 for their timer and
their datagrams.  Correctness tests: with many connections the timers still
fire (keep-alive, idle timeout, PTO, closing period) and forgotten connections
leave no routes behind.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from mstls.quic.connection import QuicConnection
from mstls.quic.endpoint import ServerEndpoint
from tests.quic.many import Many

#: Idle connections of the counting tests (issue 11's acceptance scale / 5).
IDLE = 2000
#: Connections of the correctness tests.
MANY = 100
#: Calls into server connections allowed per endpoint event (receive or timer).
MAX_CALLS_PER_EVENT = 8
_COUNTED = ("get_timer", "handle_timer", "datagrams_to_send", "receive_datagram")


class Calls:
    """Counts the endpoint's calls into server connections, per method and connection."""

    def __init__(self) -> None:
        self.by_method: Counter[str] = Counter()
        self.connections: set[int] = set()

    def reset(self) -> None:
        self.by_method.clear()
        self.connections.clear()

    @property
    def total(self) -> int:
        return sum(self.by_method.values())


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    counter = Calls()
    for name in _COUNTED:
        original = getattr(QuicConnection, name)

        def counted(self: QuicConnection, *args: object, _o=original, _n=name) -> object:  # type: ignore[no-untyped-def]
            if not self.is_client:
                counter.by_method[_n] += 1
                counter.connections.add(id(self))
            return _o(self, *args)

        monkeypatch.setattr(QuicConnection, name, counted)
    return counter


@pytest.fixture(scope="module")
def idle() -> Iterator[Many]:
    """2,000 established connections, clients with a 5 s keep-alive (idle timeout 30 s)."""
    many = Many(client={"keepalive_interval": 5.0})
    many.connect(IDLE)
    many.run_for(1.0)  # handshake leftovers (HANDSHAKE_DONE acks, key discard) settle
    yield many


def _count_events(endpoint: ServerEndpoint) -> Counter[str]:
    events: Counter[str] = Counter()
    receive, timer = endpoint.receive_datagram, endpoint.handle_timer

    def counted_receive(*args: object) -> None:
        events["receive"] += 1
        receive(*args)  # type: ignore[arg-type]

    def counted_timer(now: float) -> None:
        events["timer"] += 1
        timer(now)

    endpoint.receive_datagram = counted_receive  # type: ignore[method-assign]
    endpoint.handle_timer = counted_timer  # type: ignore[method-assign]
    return events


def test_idle_connections_cost_o1_calls_per_event(idle: Many, calls: Calls) -> None:
    """Ten seconds of keep-alives on 2,000 idle connections: every event (a datagram
    in, a timer) makes a bounded number of calls into connections, not 2,000."""
    endpoint = idle.endpoint
    events = _count_events(endpoint)
    try:
        calls.reset()
        idle.run_for(10.0)
    finally:
        del endpoint.receive_datagram, endpoint.handle_timer
    assert events["receive"] >= IDLE  # every client pinged at least once
    per_event = calls.total / sum(events.values())
    assert per_event <= MAX_CALLS_PER_EVENT, (per_event, dict(calls.by_method), dict(events))
    assert len(endpoint.connections) == IDLE


def test_one_datagram_touches_one_connection(idle: Many, calls: Calls) -> None:
    """A datagram for one connection, then the driver's send and timer steps: only
    that connection is called."""
    idle.run_for(0.1)
    client = idle.clients[IDLE // 2]
    client.streams.write(client.streams.open_stream(), b"ping", fin=True)
    datagrams = client.datagrams_to_send(idle.now)
    assert datagrams
    endpoint = idle.endpoint
    calls.reset()
    for data in datagrams:
        endpoint.receive_datagram(data, idle._client_addr(client), idle.now)
    endpoint.get_timer()
    endpoint.datagrams_to_send(idle.now)  # the ACK may be delayed (RFC 9000 §13.2.1)
    endpoint.get_timer()
    assert len(calls.connections) == 1, dict(calls.by_method)
    assert calls.total <= MAX_CALLS_PER_EVENT


def test_timer_serves_only_the_due_connections(idle: Many, calls: Calls) -> None:
    """handle_timer at the earliest deadline calls the due connections only."""
    endpoint = idle.endpoint
    idle.run_for(0.1)
    when = endpoint.get_timer()
    assert when is not None
    due = {id(c) for c in endpoint.connections if (t := c.get_timer()) is not None and t <= when}
    assert 1 <= len(due) < 10  # connections were opened 1 ms apart
    calls.reset()
    assert endpoint.get_timer() == when
    endpoint.handle_timer(when)
    endpoint.datagrams_to_send(when)
    endpoint.get_timer()
    assert calls.connections == due, dict(calls.by_method)


# -- correctness with many connections --------------------------------------------------------


def test_keepalive_keeps_many_connections_open() -> None:
    """Client keep-alive 5 s, idle timeout 30 s: after 90 s all are still open."""
    many = Many(client={"keepalive_interval": 5.0})
    many.connect(MANY)
    received = [c.stats(many.now).packets_received for c in many.endpoint.connections]
    many.run_for(90.0)
    servers = many.endpoint.connections
    assert len(servers) == MANY and not many.endpoint.terminated
    assert all(c.is_established for c in many.clients)
    after = [c.stats(many.now).packets_received for c in servers]
    # 90 s / 5 s: at least 15 keep-alives reached each server connection.
    assert all(b - a >= 15 for a, b in zip(received, after, strict=True))


def test_idle_timeout_fires_for_many_and_forgets_their_routes() -> None:
    """Without keep-alive, every server connection times out (RFC 9000 §10.1) and
    is forgotten with its routes."""
    many = Many(server={"idle_timeout": 10.0}, client={"idle_timeout": 10.0})
    many.connect(MANY)
    many.drain_server_events()
    many.blackhole = True
    many.run_for(40.0)
    endpoint = many.endpoint
    assert endpoint.connections == []
    assert len(endpoint.terminated) == MANY
    assert all(c.is_terminated for c in endpoint.terminated)
    assert not endpoint._routes and not endpoint._initial_routes and not endpoint._cids
    assert endpoint.get_timer() is None
    assert not endpoint._timers


def test_pto_fires_for_many_connections() -> None:
    """Server data into a silent path: each connection's probe timeout fires
    (RFC 9002 §6.2) and, once the path is back, the data arrives."""
    many = Many()
    many.connect(MANY)
    endpoint = many.endpoint
    many.blackhole = True
    sids = {}
    for conn in endpoint.connections:
        sid = conn.streams.open_stream()
        conn.streams.write(sid, b"x" * 100, fin=True)
        endpoint.touch(conn)
        sids[id(conn)] = sid
    many.run_for(2.0)
    assert all(c.stats(many.now).probe_timeouts >= 1 for c in endpoint.connections)
    many.blackhole = False
    many.run_for(5.0)
    got = Counter[int]()
    for client in many.clients:
        for sid in client.streams.accept_pending():
            data, fin = client.streams.read(sid, 1000)
            got[len(data)] += 1
            assert fin
    assert got == Counter({100: MANY})


def test_closing_period_ends_for_many_connections() -> None:
    """The application closes every connection: CONNECTION_CLOSE reaches each peer
    and each closing period ends (RFC 9000 §10.2), then the endpoint forgets it."""
    many = Many()
    many.connect(MANY)
    endpoint = many.endpoint
    for conn in endpoint.connections:
        conn.close(0, "bye", now=many.now)
        endpoint.touch(conn)
    many.run_for(5.0)
    assert endpoint.connections == [] and len(endpoint.terminated) == MANY
    assert not endpoint._routes and not endpoint._cids
    assert all(c.is_terminated or c.state.name == "DRAINING" for c in many.clients)


def test_untouched_application_write_waits_for_the_next_call() -> None:
    """The contract: a direct write reaches the wire once the connection is touched."""
    many = Many()
    many.connect(3)
    endpoint = many.endpoint
    conn = endpoint.connections[1]
    sid = conn.streams.open_stream()
    conn.streams.write(sid, b"hello", fin=True)
    assert endpoint.datagrams_to_send(many.now) == []  # not dirty: not asked
    endpoint.touch(conn)
    out = endpoint.datagrams_to_send(many.now)
    assert out and {addr for _, addr in out} == {conn.peer_address}
