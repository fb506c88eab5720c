"""DATAGRAM (RFC 9221) interop with aioquic, both roles, sans-I/O on both sides.

aioquic's ``QuicConnection`` and ours exchange real QUIC datagrams in memory with a
virtual clock (no sockets, so nothing is lost and nothing is timing-sensitive):
aioquic's ``max_datagram_frame_size`` / ``send_datagram_frame`` /
``DatagramFrameReceived`` against our ``max_datagram_frame_size`` /
``send_datagram_frame`` / ``receive_datagram_frame``.
"""

from __future__ import annotations

from typing import Any

import pytest
from aioquic.quic import events as aioquic_events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection as AioquicConnection

import mstls
from mstls.codes import TransportErrorCode
from mstls.core.events import ConnectionTerminatedEvent
from mstls.quic.connection import QuicConnection
from mstls.quic.endpoint import ServerEndpoint
from mstls.wire.packet import parse_header
from tests.api.helpers import TIMEOUT
from tests.api.helpers import client_config as public_client_config
from tests.certs import get_pki
from tests.interop.aioquic_peer import AioquicServer
from tests.quic.pair import ALPN, client_config, server_config

CLIENT = ("127.0.0.1", 40000)
SERVER = ("127.0.0.1", 4433)
STEP = 0.002
MAX_STEPS = 5000


def aioquic_config(*, is_client: bool, max_datagram_frame_size: int | None) -> QuicConfiguration:
    config = QuicConfiguration(
        is_client=is_client,
        alpn_protocols=[ALPN],
        max_datagram_frame_size=max_datagram_frame_size,
    )
    pki = get_pki()
    if is_client:
        config.server_name = "localhost"
        config.load_verify_locations(cafile=str(pki.files("ca").cert))
    else:
        config.load_cert_chain(str(pki.files("server").cert), str(pki.files("server").key))
    return config


class Link:
    """An mstls side and an aioquic side joined in memory, with a virtual clock."""

    def __init__(self, ours_is_client: bool, ours: int, theirs: int | None) -> None:
        self.now = 1000.0
        self.ours_is_client = ours_is_client
        self.received: list[bytes] = []  # datagrams aioquic received
        self.aioquic_closed: aioquic_events.ConnectionTerminated | None = None
        self.endpoint: ServerEndpoint | None = None
        if ours_is_client:
            self.ours: Any = QuicConnection(
                client_config(max_datagram_frame_size=ours, versions=(0x00000001,)),
                is_client=True,
                now=self.now,
                peer_address=SERVER,
            )
            self.ours.connect(self.now)
            self.theirs: AioquicConnection | None = None
            self._their_config = aioquic_config(is_client=False, max_datagram_frame_size=theirs)
        else:
            self.endpoint = ServerEndpoint(server_config(max_datagram_frame_size=ours))
            self.ours = None
            self.theirs = AioquicConnection(
                configuration=aioquic_config(is_client=True, max_datagram_frame_size=theirs)
            )
            self.theirs.connect(SERVER, now=self.now)

    # -- plumbing ---------------------------------------------------------------------
    def _to_theirs(self, data: bytes) -> None:
        if self.theirs is None:  # aioquic server: created from our first Initial
            header = parse_header(data, 0, 8)
            self.theirs = AioquicConnection(
                configuration=self._their_config,
                original_destination_connection_id=bytes(header.dcid),
            )
        self.theirs.receive_datagram(data, CLIENT if self.ours_is_client else SERVER, now=self.now)

    def _ours_out(self) -> list[bytes]:
        if self.endpoint is not None:
            return [d for d, _ in self.endpoint.datagrams_to_send(self.now)]
        return list(self.ours.datagrams_to_send(self.now))

    def _to_ours(self, data: bytes) -> None:
        if self.endpoint is not None:
            self.endpoint.receive_datagram(data, CLIENT, self.now)
            if self.ours is None and self.endpoint.connections:
                self.ours = self.endpoint.connections[0]
        else:
            self.ours.receive_datagram(data, SERVER, self.now)

    def _drain_theirs(self) -> None:
        assert self.theirs is not None
        while (event := self.theirs.next_event()) is not None:
            if isinstance(event, aioquic_events.DatagramFrameReceived):
                self.received.append(event.data)
            elif isinstance(event, aioquic_events.ConnectionTerminated):
                self.aioquic_closed = event

    def step(self) -> None:
        for data in self._ours_out():
            self._to_theirs(data)
        if self.theirs is not None:
            self._drain_theirs()
            for data, _ in self.theirs.datagrams_to_send(now=self.now):
                self._to_ours(data)
        self.now += STEP
        if self.theirs is not None:
            timer = self.theirs.get_timer()
            if timer is not None and timer <= self.now:
                self.theirs.handle_timer(now=self.now)
        target = self.endpoint or self.ours
        timer = target.get_timer()
        if timer is not None and timer <= self.now:
            target.handle_timer(self.now)

    def run_until(self, predicate: Any) -> None:
        for _ in range(MAX_STEPS):
            if predicate():
                return
            self.step()
        raise AssertionError("condition not reached")

    def established(self) -> None:
        self.run_until(
            lambda: (
                self.ours is not None
                and self.ours.handshake_confirmed
                and self.theirs is not None
                and self.theirs._handshake_complete
            )
        )


@pytest.mark.parametrize("ours_is_client", [True, False], ids=["mstls-client", "mstls-server"])
def test_datagrams_both_ways_with_aioquic(ours_is_client: bool) -> None:
    link = Link(ours_is_client, ours=65535, theirs=65535)
    link.established()
    size = link.ours.max_datagram_size
    for i in range(5):
        link.ours.send_datagram_frame(b"from mstls %d" % i)
    link.ours.send_datagram_frame(bytes(size))  # the largest we claim fits
    link.run_until(lambda: len(link.received) == 6)
    assert link.received == [b"from mstls %d" % i for i in range(5)] + [bytes(size)]
    assert link.theirs is not None
    for i in range(5):
        link.theirs.send_datagram_frame(b"from aioquic %d" % i)
    link.run_until(lambda: link.ours.datagrams.pending == 5)
    got = [link.ours.receive_datagram_frame() for _ in range(5)]
    assert got == [b"from aioquic %d" % i for i in range(5)]
    assert link.aioquic_closed is None


@pytest.mark.parametrize("ours_is_client", [True, False], ids=["mstls-client", "mstls-server"])
def test_aioquic_limit_is_honoured(ours_is_client: bool) -> None:
    link = Link(ours_is_client, ours=65535, theirs=200)
    link.established()
    size = link.ours.max_datagram_size
    assert 1 + 2 + size == 200
    link.ours.send_datagram_frame(bytes(size))  # exactly aioquic's limit: accepted
    link.run_until(lambda: len(link.received) == 1)
    assert link.aioquic_closed is None


def test_aioquic_datagram_without_our_parameter_is_protocol_violation() -> None:
    link = Link(True, ours=0, theirs=65535)
    link.established()
    assert link.ours.max_datagram_size == 0
    assert link.theirs is not None
    link.theirs.send_datagram_frame(b"uninvited")  # aioquic does not check our parameter
    link.run_until(lambda: link.aioquic_closed is not None)
    assert link.aioquic_closed.error_code == TransportErrorCode.PROTOCOL_VIOLATION
    events = []
    while (event := link.ours.next_event()) is not None:
        events.append(event)
    closes = [e for e in events if isinstance(e, ConnectionTerminatedEvent)]
    assert closes and closes[0].error_code == TransportErrorCode.PROTOCOL_VIOLATION


def _echo_of(conn: mstls.Connection, payload: bytes, tries: int = 40) -> bytes | None:
    """Send ``payload`` until its echo comes back (UDP may lose one; loopback rarely)."""
    for _ in range(tries):
        conn.send_datagram(payload)
        try:
            answer = conn.receive_datagram(timeout=0.5)
        except mstls.Timeout:
            continue
        if answer == payload:
            return answer
    return None


@pytest.mark.network
def test_blocking_client_exchanges_datagrams_with_an_aioquic_server_over_udp() -> None:
    """The public API over real UDP sockets: aioquic echoes each datagram."""
    files = get_pki().files("server")
    with AioquicServer(files.cert, files.key, datagrams=True) as server:
        config = public_client_config(datagrams=True)
        with mstls.connect("127.0.0.1", server.port, config, timeout=TIMEOUT) as conn:
            for i in range(5):
                assert _echo_of(conn, b"datagram %d" % i) == b"datagram %d" % i
            size = conn.max_datagram_size
            assert size > 1100
            assert _echo_of(conn, bytes(size)) == bytes(size)  # the largest fits aioquic too
            assert conn.stats().datagrams_received >= 6
