"""QUIC 0-RTT between our two engines (RFC 9001 §4.6, §4.9.3; RFC 9000 §7.4.1, §12.3,
§17.2.3; issue 12), in memory with a virtual clock (:mod:`tests.quic.pair`)."""

from __future__ import annotations

import time
from typing import Any

from mstls.exceptions import StreamStateError
from mstls.quic.config import QuicConfig
from mstls.quic.connection import QuicConnection
from mstls.tls.anti_replay import StrikeRegister
from mstls.tls.resumption import QUIC_MAX_EARLY_DATA
from mstls.tls.ticket_store import MemoryTicketStore
from mstls.tls.tickets import TicketKeyRing
from mstls.wire.packet import PacketType, parse_header
from mstls.wire.transport_params import decode_transport_parameters
from tests.quic.pair import Pair, client_config, server_config

REQUEST = b"GET /replay-safe\r\n"


class Setup:
    """One client ticket store; one server ticket ring and strike register."""

    def __init__(self) -> None:
        self.store = MemoryTicketStore()
        self.ring = TicketKeyRing([bytes(32)])
        self.register = StrikeRegister(20_000)

    def client(self, **tls: Any) -> QuicConfig:
        return client_config(tls={"ticket_store": self.store, "early_data": True} | tls)

    def server(self, quic: dict[str, Any] | None = None, **tls: Any) -> QuicConfig:
        kw = {"ticket_keys": self.ring, "max_early_data": 1, "strike_register": self.register}
        return server_config(tls=kw | tls, **(quic or {}))

    def first_connection(self) -> None:
        pair = Pair(client=self.client(), server=self.server())
        pair.handshake()
        pair.run_until(lambda: len(self.store) >= 2)


def zero_rtt_types(datagram: bytes) -> list[PacketType]:
    """The long-header packet types coalesced in ``datagram``."""
    types, pos = [], 0
    while pos < len(datagram):
        header = parse_header(memoryview(datagram), pos, 8)
        types.append(header.packet_type)
        pos = header.packet_end
    return types


def early_pair(setup: Setup, **server: Any) -> tuple[Pair, int, int, list[list[PacketType]]]:
    """A resuming client with a replay-safe stream and a normal one; the packet
    types of every client datagram are recorded."""
    sent: list[list[PacketType]] = []

    def record(data: bytes, to_server: bool) -> bytes:
        if to_server:
            sent.append(zero_rtt_types(data))
        return data

    pair = Pair(client=setup.client(), server=setup.server(**server), tamper=record)
    client = pair.client
    client.connect(pair.now)
    assert client.early_data_possible
    early = client.streams.open_stream()
    client.mark_early(early)
    client.streams.write(early, REQUEST, fin=True)
    late = client.streams.open_stream()
    client.streams.write(late, b"not replay-safe", fin=True)
    return pair, early, late, sent


def server_read(conn: QuicConnection, sid: int) -> bytes:
    """What the server's application can read of ``sid`` now (b"": nothing yet)."""
    try:
        data, _fin = conn.streams.read(sid, 1 << 16)
    except StreamStateError:
        return b""  # not opened by the peer yet
    return bytes(data)


def test_quic_tickets_allow_0rtt_and_remember_limits() -> None:
    setup = Setup()
    setup.first_connection()
    ticket = setup.store.take(("localhost", "mstls-test", "quic"), int(time.time() * 1000))
    assert ticket is not None and ticket.max_early_data == QUIC_MAX_EARLY_DATA
    params = decode_transport_parameters(ticket.transport_parameters)
    ours = setup.server().transport_parameters(b"x")
    assert params.initial_max_data == ours.initial_max_data
    assert params.initial_max_streams_bidi == ours.initial_max_streams_bidi
    assert params.initial_source_connection_id is None  # only §7.4.1's parameters


def test_server_reads_0rtt_stream_before_the_handshake_completes() -> None:
    setup = Setup()
    setup.first_connection()
    pair, early, late, sent = early_pair(setup)
    pair.run_until(lambda: bool(pair.endpoint.connections))
    server = pair.server
    assert not server.handshake_complete
    assert server.early_data_accepted
    assert server_read(server, early) == REQUEST
    assert server_read(server, late) == b""  # not replay-safe: waits for 1-RTT
    pair.run_until(lambda: pair.client.handshake_confirmed)
    assert pair.client.early_data_accepted is True
    pair.run_until(lambda: server_read(pair.server, late) == b"not replay-safe")
    # The 0-RTT packets were acknowledged (in 1-RTT ACKs): nothing left in flight.
    pair.run_until(lambda: pair.client.recovery.bytes_in_flight == 0)
    assert any(PacketType.ZERO_RTT in d for d in sent)


def test_rejected_0rtt_data_arrives_in_1rtt() -> None:
    setup = Setup()
    setup.first_connection()
    pair, early, _late, sent = early_pair(setup, max_early_data=0)  # 0-RTT off on the server
    pair.run_until(lambda: pair.client.handshake_confirmed)
    assert pair.client.early_data_accepted is False
    assert any(PacketType.ZERO_RTT in d for d in sent)
    pair.run_until(lambda: server_read(pair.server, early) == REQUEST)
    # The 0-RTT packets were forgotten at once, not left to loss detection (no
    # congestion signal): nothing counted lost, nothing left in flight.
    pair.run_until(lambda: pair.client.recovery.bytes_in_flight == 0)
    assert pair.client.recovery.packets_lost == 0


def test_other_ticket_key_rejects_0rtt() -> None:
    setup = Setup()
    setup.first_connection()
    setup.ring = TicketKeyRing([bytes(range(32))])
    pair, early, _late, _sent = early_pair(setup)
    pair.run_until(lambda: pair.client.handshake_confirmed)
    assert pair.client.early_data_accepted is False
    pair.run_until(lambda: server_read(pair.server, early) == REQUEST)


def test_replayed_first_flight_is_refused_early_data() -> None:
    setup = Setup()
    setup.first_connection()
    flight: list[bytes] = []
    answered: list[bool] = []

    def record(data: bytes, to_server: bool) -> bytes:
        if not to_server:
            answered.append(True)
        elif not answered:
            flight.append(data)  # the client's first flight: before any answer
        return data

    pair, early, _late, _sent = early_pair(setup)
    pair.tamper = record
    pair.run_until(lambda: pair.client.handshake_confirmed)
    assert pair.server.early_data_accepted
    assert any(PacketType.ZERO_RTT in zero_rtt_types(d) for d in flight)
    # An attacker replays the first flight to a second server sharing the register.
    replay = Pair(client=setup.client(), server=setup.server())
    for datagram in flight:
        replay.endpoint.receive_datagram(datagram, ("127.0.0.1", 40001), replay.now)
    conn = replay.endpoint.connections[0]
    assert conn.early_data_accepted is False
    assert server_read(conn, early) == b""


def test_0rtt_after_retry_is_sent_again_and_accepted() -> None:
    """RFC 9000 §17.2.5.3: the 0-RTT packets before a Retry were dropped by the
    server; they go again at once (not left to loss detection)."""
    setup = Setup()
    setup.first_connection()
    pair, early, _late, sent = early_pair(setup)
    pair.endpoint.retry = True
    pair.run_until(lambda: pair.client.retry_source_cid is not None)
    pair.run_until(
        lambda: bool(pair.endpoint.connections) and server_read(pair.server, early) == REQUEST
    )
    assert not pair.server.handshake_complete  # the data came in 0-RTT after the Retry
    assert sum(PacketType.ZERO_RTT in d for d in sent) >= 2  # before and after the Retry
    pair.run_until(lambda: pair.client.handshake_confirmed)
    assert pair.client.early_data_accepted is True


def test_rejecting_server_with_lower_stream_limits_is_a_protocol_violation() -> None:
    """RFC 9000 §7.4.1: the resent 0-RTT frames were written against the remembered
    limits; a rejecting server below them cannot take them."""
    setup = Setup()
    setup.first_connection()
    pair, _early, _late, _sent = early_pair(
        setup, max_early_data=0, quic={"initial_max_stream_data": 4}
    )
    pair.run_until(lambda: pair.client.is_terminated or pair.client.state.name == "CLOSING")
    info = pair.client.close_info
    assert info is not None and "initial_max_stream_data_bidi_remote" in info.reason
    assert info.error_code == 0x0A  # PROTOCOL_VIOLATION


def test_0rtt_with_qlog_on(tmp_path: Any) -> None:
    """qlog names 0-RTT packets on both ends (quic-events PacketType "0RTT")."""
    setup = Setup()
    setup.first_connection()
    pair = Pair(
        client=client_config(
            tls={"ticket_store": setup.store, "early_data": True}, qlog_dir=str(tmp_path)
        ),
        server=server_config(
            tls={"ticket_keys": setup.ring, "max_early_data": 1, "strike_register": setup.register},
            qlog_dir=str(tmp_path),
        ),
    )
    pair.client.connect(pair.now)
    sid = pair.client.streams.open_stream()
    pair.client.mark_early(sid)
    pair.client.streams.write(sid, REQUEST, fin=True)
    pair.run_until(lambda: pair.client.handshake_confirmed)
    assert pair.client.early_data_accepted is True
    logs = "".join(p.read_text() for p in tmp_path.iterdir())
    assert '"0RTT"' in logs
