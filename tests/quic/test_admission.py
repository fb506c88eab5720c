"""Handshake admission at the QUIC server endpoint: per-source rate and Retry under load.

A small loss-free network with a virtual clock joins real client connections
to one :class:`ServerEndpoint`, delivering each reply to the client at its
address; "stuck" clients send their first Initial and never hear back, so
their server connections stay in the handshake.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from mstls.core.admission import MAX_TRACKED_SOURCES, RATE_LIMITED, SourceRateLimiter
from mstls.quic import endpoint as endpoint_module
from mstls.quic.connection import QuicConnection
from mstls.quic.endpoint import ServerEndpoint
from mstls.wire.packet import PacketType, encode_long_header, parse_header
from tests.quic.pair import SERVER_ADDR, client_config, server_config

T0 = 1000.0
#: Exchange rounds before the network gives up (a bug never hangs a test).
MAX_ROUNDS = 50


class Net:
    """Clients by address and one endpoint; every datagram is delivered at once."""

    def __init__(self, endpoint: ServerEndpoint) -> None:
        self.endpoint = endpoint
        self.now = T0
        self.clients: dict[Any, QuicConnection] = {}

    def client(self, addr: Any) -> QuicConnection:
        conn = QuicConnection(
            client_config(), is_client=True, now=self.now, peer_address=SERVER_ADDR
        )
        conn.connect(self.now)
        self.clients[addr] = conn
        return conn

    def stuck(self, addr: Any) -> list[bytes]:
        """A client whose first flight reaches the endpoint and whose replies are lost."""
        conn = QuicConnection(
            client_config(), is_client=True, now=self.now, peer_address=SERVER_ADDR
        )
        conn.connect(self.now)
        flight = conn.datagrams_to_send(self.now)
        for data in flight:
            self.endpoint.receive_datagram(data, addr, self.now)
        self.endpoint.datagrams_to_send(self.now)  # lost
        return flight

    def pump(self) -> None:
        """Deliver datagrams both ways until nobody has anything to send."""
        for _ in range(MAX_ROUNDS):
            moved = False
            for addr, conn in self.clients.items():
                for data in conn.datagrams_to_send(self.now):
                    self.endpoint.receive_datagram(data, addr, self.now)
                    moved = True
            for data, addr in self.endpoint.datagrams_to_send(self.now):
                target = self.clients.get(addr)
                if target is not None:
                    target.receive_datagram(data, SERVER_ADDR, self.now)
                    moved = True
            if not moved:
                return


def established(conn: QuicConnection) -> bool:
    return bool(conn.is_established and conn.handshake_confirmed)


def limited(rate: float, burst: int, **kw: Any) -> ServerEndpoint:
    return ServerEndpoint(server_config(), rate_limiter=SourceRateLimiter(rate, burst), **kw)


def test_one_source_beyond_its_burst_is_refused_while_another_is_served() -> None:
    net = Net(limited(1.0, 2))
    endpoint = net.endpoint
    for port in (1, 2):
        net.stuck(("192.0.2.1", port))
    assert len(endpoint.connections) == 2
    refused = net.stuck(("192.0.2.1", 3))  # a third handshake at once: over the burst
    assert len(endpoint.connections) == 2
    # Every Initial datagram of the flight (the ClientHello may need two) is refused.
    assert endpoint.refused_initials == len(refused) >= 1
    assert list(endpoint.refusals) == [(("192.0.2.1", 3), RATE_LIMITED)] * len(refused)
    assert endpoint.dropped_initials == 0

    other = net.client(("198.51.100.7", 1))  # another source is served meanwhile
    net.pump()
    assert established(other)
    assert endpoint.refused_initials == len(refused)

    net.now += 1.0  # one token back: the retransmitted Initial gets in
    for data in refused:
        endpoint.receive_datagram(data, ("192.0.2.1", 3), net.now)
    assert len(endpoint.connections) == 4
    assert endpoint.refused_initials == len(refused)


def test_retry_threshold_sends_a_retry_from_the_n_plus_first_handshake() -> None:
    threshold = 3
    net = Net(ServerEndpoint(server_config(), retry_threshold=threshold))
    endpoint = net.endpoint
    for i in range(threshold):
        net.stuck((f"192.0.2.{i + 1}", 1000))
    assert endpoint.handshakes_in_progress == threshold
    assert endpoint.retries_sent == 0  # below the threshold: plain handshakes

    late = net.client(("203.0.113.9", 4433))
    net.pump()
    assert endpoint.retries_sent >= 1  # one per Initial datagram; the client takes the first
    assert late.retry_source_cid is not None  # the client followed the Retry
    assert established(late)
    server = endpoint.connections[-1]
    assert server.address_validated  # its token proved the address
    assert server.original_dcid == late.original_dcid

    # Load gone (the stuck handshakes time out): new clients get no Retry.
    net.now += 60.0
    for _ in range(10):
        endpoint.handle_timer(net.now)
        net.now += 5.0
    assert endpoint.handshakes_in_progress == 0
    retries = endpoint.retries_sent
    fresh = net.client(("203.0.113.10", 4433))
    net.pump()
    assert established(fresh)
    assert fresh.retry_source_cid is None
    assert endpoint.retries_sent == retries


def test_retry_is_never_charged_and_a_validated_source_is() -> None:
    """The order of RFC 9000 §8.1: token, Retry, then the source's bucket."""
    net = Net(limited(0.001, 1, retry=True))
    endpoint = net.endpoint
    limiter = endpoint.rate_limiter
    assert limiter is not None
    first = net.client(("192.0.2.5", 1))
    first_flight = first.datagrams_to_send(net.now)
    for data in first_flight:  # the Retry costs the source nothing
        endpoint.receive_datagram(data, ("192.0.2.5", 1), net.now)
    assert endpoint.retries_sent == len(first_flight) and len(limiter) == 0
    for data, _ in endpoint.datagrams_to_send(net.now):
        first.receive_datagram(data, SERVER_ADDR, net.now)
    net.pump()
    assert established(first)  # its validated Initial took the one token
    assert limiter.available(("192.0.2.5", 9), net.now) < 1

    retries = endpoint.retries_sent
    second = net.client(("192.0.2.5", 2))
    net.pump()
    assert endpoint.retries_sent > retries  # retried, then refused with a valid token
    assert endpoint.refused_initials >= 1
    assert second.retry_source_cid is not None
    assert not second.is_established
    assert len(endpoint.connections) == 1


def test_threshold_zero_is_retry_always() -> None:
    net = Net(ServerEndpoint(server_config(), retry_threshold=0))
    conn = net.client(("192.0.2.8", 1))
    net.pump()
    assert established(conn) and conn.retry_source_cid is not None
    assert net.endpoint.retries_sent >= 1


class _Unauthenticated:
    """A stand-in connection that authenticates nothing (cheap, so the flood runs fast)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.spaces = [SimpleNamespace(acks=SimpleNamespace(largest_received=-1))]

    def receive_datagram(self, data: bytes, addr: Any, now: float, ecn: int = 0) -> None:
        """Nothing authenticates."""


def spoofed_initial() -> bytes:
    header = encode_long_header(PacketType.INITIAL, bytes(range(8)), b"\x01" * 8, 0, 1, length=1200)
    data = header + bytes(1200)
    assert parse_header(data, 0, 8).packet_type is PacketType.INITIAL
    return data


def test_table_stays_bounded_under_100k_spoofed_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    # Initial keys are public: an attacker's Initials authenticate (the stand-in
    # connection then authenticates nothing, so the flood runs fast).
    monkeypatch.setattr(endpoint_module, "_authenticates", lambda data, header: True)
    monkeypatch.setattr(endpoint_module, "QuicConnection", _Unauthenticated)
    endpoint = limited(1.0, 1)
    limiter = endpoint.rate_limiter
    assert limiter is not None
    data = spoofed_initial()
    victim = ("192.0.2.200", 1)
    assert limiter.admit(victim, T0)  # a real source, now out of tokens
    count = 100_000
    for i in range(count):
        if i % 2:
            addr: tuple[Any, ...] = (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 1)
        else:
            addr = (f"2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::1", 1, 0, 0)
        endpoint.receive_datagram(data, addr, T0 + i * 1e-6)
    assert len(limiter) <= MAX_TRACKED_SOURCES
    assert limiter.evicted == count + 1 - MAX_TRACKED_SOURCES
    assert endpoint.dropped_initials == count and not endpoint.connections


def test_garbage_initials_cost_no_token_and_no_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without Retry, an Initial whose packet does not authenticate is dropped
    (RFC 9001 §5.2): the source's bucket is untouched, no connection is built.
    With Retry it gets a Retry before any authentication (step 3 of the endpoint's
    documentation): stateless, uncharged, and smaller than the datagram."""
    built: list[Any] = []

    class Recording(QuicConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            built.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(endpoint_module, "QuicConnection", Recording)
    for retry in (False, True):
        endpoint = ServerEndpoint(
            server_config(),
            retry=retry,
            rate_limiter=SourceRateLimiter(1.0, 1),
        )
        source = ("192.0.2.77", 4433)
        garbage = spoofed_initial()
        for _ in range(10):
            endpoint.receive_datagram(garbage, source, T0)
        answers = endpoint.datagrams_to_send(T0)
        if retry:
            assert endpoint.dropped_initials == 0 and endpoint.retries_sent == 10
            assert len(answers) == 10
            assert all(len(data) < len(garbage) // 4 and to == source for data, to in answers)
        else:
            assert endpoint.dropped_initials == 10
            assert endpoint.retries_sent == 0 and not answers
        assert endpoint.rate_limiter is not None
        assert endpoint.rate_limiter.available(source, T0) == 1
        assert not built and not endpoint.connections


def test_under_load_a_retry_costs_no_initial_key_derivation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 11: once the threshold is reached, token-less Initials are answered with
    a Retry without deriving Initial keys (the expensive part of authentication)."""
    derived: list[bytes] = []
    real = endpoint_module.initial_receive_protection

    def counting(dcid: bytes, **kwargs: Any) -> Any:
        derived.append(dcid)
        return real(dcid, **kwargs)

    monkeypatch.setattr(endpoint_module, "initial_receive_protection", counting)
    threshold = 2
    net = Net(ServerEndpoint(server_config(), retry_threshold=threshold))
    endpoint = net.endpoint
    for i in range(threshold):
        net.stuck((f"192.0.2.{i + 1}", 1000))
    assert len(derived) == threshold  # below the threshold: authenticated, then state
    for i in range(50):
        client = net.client((f"198.51.100.{i + 1}", 1000))
        for data in client.datagrams_to_send(net.now):
            endpoint.receive_datagram(data, (f"198.51.100.{i + 1}", 1000), net.now)
    assert endpoint.retries_sent >= 50
    assert len(derived) == threshold
    assert endpoint.handshakes_in_progress == threshold
