"""QMux 0-RTT between our two engines (draft-ietf-quic-qmux "Using 0-RTT", RFC 9000 §7.4.1,
RFC 8446 §2.3, §8; issue 12), in memory with a virtual clock (:mod:`tests.qmux.pair`)."""

from __future__ import annotations

import time
from typing import Any

from mstls.core.events import ConnectionTerminatedEvent, HandshakeCompletedEvent, StreamOpened
from mstls.qmux.config import QMuxConfig
from mstls.qmux.connection import QMuxConnection
from mstls.qmux.early import early_data_limits
from mstls.tls.anti_replay import StrikeRegister
from mstls.tls.server import ServerHandshake
from mstls.tls.ticket_store import MemoryTicketStore
from mstls.tls.tickets import TicketKeyRing
from mstls.wire.transport_params import decode_transport_parameters
from tests.qmux.pair import Pair, client_config, server_config

REQUEST = b"GET /replay-safe\r\n"
MAX_EARLY = 4096


class Setup:
    """One client ticket store; one server ticket ring and strike register."""

    def __init__(self, **server: Any) -> None:
        self.store = MemoryTicketStore()
        self.ring = TicketKeyRing([bytes(32)])
        self.register = StrikeRegister(20_000)
        self.server_kw = server

    def client(self, **kw: Any) -> QMuxConfig:
        tls = {"ticket_store": self.store, "early_data": True} | kw.pop("tls", {})
        return client_config(tls=tls, **kw)

    def server(self, **kw: Any) -> QMuxConfig:
        tls = {
            "ticket_keys": self.ring,
            "max_early_data": MAX_EARLY,
            "strike_register": self.register,
        } | kw.pop("tls", {})
        return server_config(tls=tls, **(self.server_kw | kw))

    def first_connection(self) -> None:
        pair = Pair(client=self.client(), server=self.server())
        pair.handshake()
        pair.drain()
        assert len(self.store) == 2


def early_pair(setup: Setup, **server: Any) -> tuple[Pair, int, int]:
    """A resuming client that opened a replay-safe stream and a normal one."""
    pair = Pair(client=setup.client(), server=setup.server(**server))
    client: QMuxConnection = pair.client
    client.connect(pair.now)
    assert client.early_data_possible
    early = client.streams.open_stream()
    client.mark_early(early)
    client.streams.write(early, REQUEST, fin=True)
    late = client.streams.open_stream()
    client.streams.write(late, b"not replay-safe", fin=True)
    return pair, early, late


def server_read(pair: Pair, sid: int) -> bytes:
    data, _fin = pair.server.streams.read(sid, 1 << 16)
    return bytes(data)


def test_tickets_remember_the_servers_qmux_parameters() -> None:
    setup = Setup()
    setup.first_connection()
    ticket = setup.store.take(("localhost", "mstls-test", "tcp"), int(time.time() * 1000))
    assert ticket is not None and ticket.max_early_data == MAX_EARLY
    params = decode_transport_parameters(ticket.transport_parameters)
    assert params == setup.server().transport_parameters()


def test_server_reads_early_stream_before_the_handshake_ends() -> None:
    setup = Setup()
    setup.first_connection()
    pair, early, late = early_pair(setup)
    first_flight = pair.client.data_to_send(pair.now)
    pair.server.receive_data(first_flight, pair.now)
    # The server has the replay-safe stream's data after the first flight alone.
    assert not pair.server.handshake_complete
    assert pair.server.early_data_accepted is True
    assert server_read(pair, early) == REQUEST
    assert pair.server.streams.get_stream(late) is None  # nothing of the other stream
    opened = [e for e in iter(pair.server.next_event, None)]
    assert any(isinstance(e, StreamOpened) and e.stream_id == early for e in opened)
    assert not any(isinstance(e, HandshakeCompletedEvent) for e in opened)
    pair.handshake()
    pair.drain()
    assert pair.client.early_data_accepted is True
    assert pair.client.tls.resumed
    assert server_read(pair, late) == b"not replay-safe"


def test_replayed_first_flight_gets_no_early_data() -> None:
    setup = Setup()
    setup.first_connection()
    pair, early, _late = early_pair(setup)
    first_flight = pair.client.data_to_send(pair.now)
    pair.server.receive_data(first_flight, pair.now)
    assert server_read(pair, early) == REQUEST
    # An attacker sends the captured bytes to the server again, on a new connection.
    replay = QMuxConnection(setup.server(), is_client=False, now=pair.now)
    replay.receive_data(first_flight, pair.now)
    assert replay.early_data_accepted is False
    assert replay.streams.get_stream(early) is None
    assert not [e for e in iter(replay.next_event, None) if isinstance(e, StreamOpened)]
    assert not replay.is_terminated  # a 1-RTT handshake the attacker cannot finish


def test_rejected_early_data_is_resent_after_the_handshake() -> None:
    setup = Setup()
    setup.first_connection()
    # A server with other ticket keys cannot resume the ticket: 0-RTT is rejected.
    pair, early, late = early_pair(setup, tls={"ticket_keys": TicketKeyRing([bytes([1]) * 32])})
    pair.handshake()
    pair.drain()
    assert pair.client.early_data_accepted is False
    assert pair.server.early_data_accepted is False
    assert not pair.client.tls.resumed
    assert server_read(pair, early) == REQUEST
    assert server_read(pair, late) == b"not replay-safe"


def test_no_early_data_without_the_client_option() -> None:
    setup = Setup()
    setup.first_connection()
    pair = Pair(client=setup.client(tls={"early_data": False}), server=setup.server())
    pair.client.connect(pair.now)
    assert not pair.client.early_data_possible
    assert pair.client.early_data_accepted is None
    pair.handshake()
    assert pair.client.early_data_accepted is False and pair.client.tls.resumed


def test_server_reducing_remembered_limits_while_accepting_is_an_error() -> None:
    """The client's own check of RFC 9000 §7.4.1, against a server that breaks it:
    one that seals and checks the old limits while sending lower ones."""
    setup = Setup()
    setup.first_connection()
    pair, _early, _late = early_pair(setup, initial_max_data=1 << 10)
    assert isinstance(pair.server.tls, ServerHandshake)
    pair.server.tls.early_data_limits = early_data_limits(setup.server().transport_parameters())
    pair.start()
    pair.run_until(lambda: pair.client.is_terminated)
    closed = [e for e in pair.client_events if isinstance(e, ConnectionTerminatedEvent)]
    assert closed and "initial_max_data" in closed[0].reason and "§7.4.1" in closed[0].reason


def test_rejection_with_another_application_protocol_fails_the_connection() -> None:
    setup = Setup()
    alpns = {"alpn_protocols": ["first", "second"]}
    pair = Pair(client=setup.client(tls=alpns), server=setup.server(tls=alpns))
    pair.handshake()
    pair.drain()
    assert pair.client.tls.alpn_protocol == "first"
    # Another server (other keys: 0-RTT rejected) prefers the other protocol.
    other = {"alpn_protocols": ["second", "first"], "ticket_keys": TicketKeyRing([bytes([2]) * 32])}
    pair = Pair(client=setup.client(tls=alpns), server=setup.server(tls=other))
    pair.client.connect(pair.now)
    sid = pair.client.streams.open_stream()
    pair.client.mark_early(sid)
    pair.client.streams.write(sid, REQUEST, fin=True)
    pair.start()
    pair.run_until(lambda: pair.client.is_terminated)
    assert pair.client.early_data_accepted is False
    reason = pair.terminated("client").reason
    assert "rejected 0-RTT" in reason and "'second'" in reason and "'first'" in reason


def test_lowered_server_limit_rejects_tickets_that_promised_more() -> None:
    setup = Setup()
    setup.first_connection()  # tickets promise MAX_EARLY bytes
    pair, early, _late = early_pair(setup, tls={"max_early_data": MAX_EARLY // 2})
    pair.handshake()
    pair.drain()
    # Rejected (not a connection error for early data the ticket allowed), then resent.
    assert pair.client.early_data_accepted is False and pair.client.tls.resumed
    assert not pair.client.is_terminated and not pair.server.is_terminated
    assert server_read(pair, early) == REQUEST
