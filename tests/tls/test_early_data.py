"""0-RTT over TLS/TCP between our two engines (RFC 8446 §2.3, §4.2.10, §4.5, §8; issue 12).

In-memory :class:`~mstls.tls.tcp.TLSConnection` pairs: a first handshake stores a
ticket that allows early data, the second sends early data with its ClientHello.
"""

from __future__ import annotations

from typing import Any

import pytest

from mstls.codes import AlertDescription
from mstls.exceptions import TLSError
from mstls.tls.anti_replay import StrikeRegister
from mstls.tls.extensions import ExtensionType
from mstls.tls.groups import NamedGroup
from mstls.tls.tcp import ApplicationData, TLSConnection
from mstls.tls.ticket_store import MemoryTicketStore
from mstls.tls.tickets import TicketKeyRing
from tests.certs import get_pki
from tests.tls.driver import EnginePair, client_config, drain, memory_pair, pump, server_config

MAX_EARLY = 1024
EARLY = b"GET /replay-safe"


class Setup:
    """One client store and one server ticket ring + strike register."""

    def __init__(self, **server: Any) -> None:
        self.store = MemoryTicketStore()
        self.ring = TicketKeyRing([bytes(32)])
        self.register = StrikeRegister(20_000)
        self.server_options: dict[str, Any] = {
            "max_early_data": MAX_EARLY,
            "strike_register": self.register,
            **server,
        }

    def client(self, **kw: Any) -> Any:
        return client_config(get_pki(), ticket_store=self.store, early_data=True, **kw)

    def server(self, **kw: Any) -> Any:
        options = {"ticket_keys": self.ring, **self.server_options, **kw}
        return server_config(get_pki(), **options)

    def first_connection(self) -> None:
        client, server = memory_pair(self.client(), self.server())
        pump(client, server)
        assert client.handshake_complete and len(self.store) == 2


def start_early(setup: Setup, **client: Any) -> tuple[TLSConnection, bytes]:
    """A client that sent its ClientHello and :data:`EARLY`; its first flight."""
    conn = TLSConnection(setup.client(**client), is_client=True)
    conn.start()
    assert conn.send_early(EARLY) == len(EARLY)
    return conn, conn.data_to_send()


def application_data(server: TLSConnection) -> list[ApplicationData]:
    return [e for e in drain(server) if isinstance(e, ApplicationData)]


def test_early_data_is_read_before_the_handshake_ends() -> None:
    setup = Setup()
    setup.first_connection()
    client, flight = start_early(setup)
    server = TLSConnection(setup.server(), is_client=False)
    server.start()
    server.receive_data(flight)
    assert not server.handshake_complete
    assert application_data(server) == [ApplicationData(EARLY, early=True)]
    pump(client, server)
    assert client.handshake_complete and server.handshake_complete
    assert client.early_data_accepted is True and server.early_data_accepted is True
    assert server.handshake.resumed
    client.send(b"after")
    pump(client, server)
    assert application_data(server) == [ApplicationData(b"after")]


def test_a_replayed_first_flight_gets_no_early_data() -> None:
    """RFC 8446 §8: the strike register admits a ticket's early data once."""
    setup = Setup()
    setup.first_connection()
    _, flight = start_early(setup)
    original = TLSConnection(setup.server(), is_client=False)
    original.start()
    original.receive_data(flight)
    assert application_data(original) == [ApplicationData(EARLY, early=True)]
    replayed = TLSConnection(setup.server(), is_client=False)  # same keys, same register
    replayed.start()
    replayed.receive_data(flight)  # no error: the early record is skipped
    assert application_data(replayed) == []
    assert replayed.handshake.resumed and not replayed.early_data_accepted
    assert replayed.data_to_send()  # it answers with a 1-RTT ServerHello flight


def test_rejected_early_data_is_sent_again_after_the_handshake() -> None:
    setup = Setup()
    setup.first_connection()
    client, flight = start_early(setup)
    server = TLSConnection(setup.server(max_early_data=0), is_client=False)
    server.start()
    server.receive_data(flight)
    assert application_data(server) == []
    pump(client, server)
    assert client.handshake_complete and server.handshake.resumed
    assert client.early_data_accepted is False
    assert application_data(server) == [ApplicationData(EARLY)]


def test_an_unresumable_ticket_skips_the_early_data_into_a_full_handshake() -> None:
    setup = Setup()
    setup.first_connection()
    client, flight = start_early(setup)
    other_key = TicketKeyRing([bytes(range(32))])
    server = TLSConnection(setup.server(ticket_keys=other_key), is_client=False)
    server.start()
    server.receive_data(flight)
    pump(client, server)
    assert client.handshake_complete and not client.handshake.resumed
    assert client.early_data_accepted is False
    assert application_data(server) == [ApplicationData(EARLY)]


def test_after_a_hello_retry_request_early_data_is_rejected_and_resent() -> None:
    setup = Setup()
    setup.first_connection()
    client, flight = start_early(setup, key_share_groups=[NamedGroup.x25519])
    server = TLSConnection(setup.server(groups=[NamedGroup.secp256r1]), is_client=False)
    server.start()
    server.receive_data(flight)
    pump(client, server)
    assert client.handshake_complete and client.early_data_accepted is False
    assert application_data(server) == [ApplicationData(EARLY)]


def test_early_data_beyond_the_ticket_limit_waits_for_the_handshake() -> None:
    setup = Setup()
    setup.first_connection()
    client = TLSConnection(setup.client(), is_client=True)
    client.start()
    data = bytes(MAX_EARLY + 100)
    assert client.send_early(data) == MAX_EARLY
    server = TLSConnection(setup.server(), is_client=False)
    server.start()
    pump(client, server)
    received = application_data(server)
    assert [len(e.data) for e in received if e.early] == [MAX_EARLY]
    assert b"".join(e.data for e in received) == data


def test_too_much_early_data_is_unexpected_message() -> None:
    """The server's limit is enforced even against a client that ignores it (§4.2.10)."""
    setup = Setup()
    setup.first_connection()
    client = TLSConnection(setup.client(), is_client=True)
    client.start()
    client.handshake.max_early_data = 4 * MAX_EARLY  # type: ignore[attr-defined]  # ignores it
    assert client.send_early(bytes(2 * MAX_EARLY)) == 2 * MAX_EARLY
    flight = client.data_to_send()
    server = TLSConnection(setup.server(), is_client=False)
    server.start()
    with pytest.raises(TLSError) as info:
        server.receive_data(flight)
    assert info.value.alert == AlertDescription.unexpected_message


def test_a_lowered_limit_rejects_tickets_that_promised_more() -> None:
    """A server whose max_early_data went below a ticket's promise rejects that
    ticket's early data (skipped, then resent) instead of failing (§4.2.10)."""
    setup = Setup()
    setup.first_connection()
    _, flight = start_early(setup)
    server = TLSConnection(setup.server(max_early_data=4), is_client=False)
    server.start()
    server.receive_data(flight)
    assert server.early_data_accepted is False


def test_no_early_data_unless_both_sides_enable_it() -> None:
    setup = Setup()
    setup.first_connection()
    client = TLSConnection(client_config(get_pki(), ticket_store=setup.store), is_client=True)
    client.start()
    assert client.send_early(EARLY) == 0  # queued for after the handshake instead
    assert client.early_data_accepted is None
    # a server without a strike register issues tickets without early data
    plain = Setup(strike_register=None)
    plain.first_connection()
    assert all(t.max_early_data == 0 for ts in plain.store._tickets.values() for t in ts)


def test_quic_handshakes_offer_early_data_without_end_of_early_data() -> None:
    """QUIC tickets carry max_early_data 0xffffffff (RFC 9001 §4.6.1); early data is
    offered and accepted, and no EndOfEarlyData is sent (RFC 9001 §8.3)."""
    setup = Setup()
    pair = EnginePair(setup.client(), setup.server(), transport_parameters=(b"\x01", b"\x02"))
    pair.run()
    tickets = [t for ts in setup.store._tickets.values() for t in ts]
    assert tickets and all(t.max_early_data == 0xFFFFFFFF for t in tickets)
    second = EnginePair(setup.client(), setup.server(), transport_parameters=(b"\x01", b"\x02"))
    assert second.client._hello is not None  # type: ignore[attr-defined]
    assert ExtensionType.early_data in second.client._hello.extensions  # type: ignore[attr-defined]
    second.run()
    assert second.client.resumed
    assert second.client.early_data_accepted and second.server.early_data_accepted


def test_strike_register_forgets_after_its_window_and_is_bounded() -> None:
    register = StrikeRegister(window_ms=1000, max_entries=2)
    assert register.admit(b"a", 0) and not register.admit(b"a", 999)
    assert register.admit(b"a", 1000)  # the window passed
    assert register.admit(b"b", 1000) and not register.admit(b"c", 1000)  # full: refuse


def test_the_client_keeps_no_copy_of_accepted_early_data() -> None:
    setup = Setup()
    setup.first_connection()
    client, flight = start_early(setup)
    server = TLSConnection(setup.server(), is_client=False)
    server.start()
    server.receive_data(flight)
    pump(client, server)
    assert client.early_data_accepted is True
    assert not client._early.sent
