"""The switch that turns UDP GSO and GRO off (issue 13): ``QuicConfig.udp_offload`` and
``MSTLS_NO_GSO=1``, for packet captures on ``lo`` where a GSO super-datagram shows as
one undecryptable packet.

Mock-free, on 127.0.0.1: a GSO send to a GRO receiver on loopback arrives as one
coalesced read (the kernel keeps the batch together), so a receiver that sees no
GRO batch proves the sender made one system call per datagram.
"""

from __future__ import annotations

import select
import socket
import sys
import time
from collections.abc import Iterator

import pytest

from mstls.io.udp import (
    NO_GSO_ENV,
    SOL_UDP,
    UDP_GRO,
    UDP_SEGMENT,
    UdpCapabilities,
    detect_capabilities,
    new_receive_buffer,
    open_udp_socket,
    receive_datagrams,
    send_datagrams,
)
from mstls.quic.connection import QuicConnection
from mstls.quic.endpoint import ServerEndpoint
from mstls.trio._udp import UdpClientDriver, UdpListenerDriver
from tests.quic.pair import client_config, server_config

pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="GSO/GRO are Linux-only"),
]

#: Equal-sized datagrams: with GSO they form one group (one sendmsg).
COUNT = 10
SIZE = 1200
#: Seconds: an upper bound for loopback delivery.
WAIT = 2.0


def receive_all(sock: socket.socket, caps: UdpCapabilities, expected: int) -> list[bytes]:
    """Receive until ``expected`` datagrams arrived or :data:`WAIT` ran out (copies)."""
    buffer = new_receive_buffer()
    got: list[bytes] = []
    deadline = time.monotonic() + WAIT
    while len(got) < expected and (remaining := deadline - time.monotonic()) > 0:
        select.select([sock], [], [], min(remaining, 0.05))
        got += [bytes(d) for d, _ in receive_datagrams(sock, 4096, caps, buffer)]
    return got


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A sender and a GRO-enabled receiver on 127.0.0.1."""
    tx = open_udp_socket("127.0.0.1", 0)
    rx = open_udp_socket("127.0.0.1", 0, gro=True)
    with tx, rx:
        yield tx, rx


def send_batch(tx: socket.socket, caps: UdpCapabilities, rx: socket.socket) -> UdpCapabilities:
    """Send :data:`COUNT` datagrams, receive them all; the receiver's capabilities."""
    rx_caps = detect_capabilities(rx)
    assert rx_caps.gro
    data = [bytes([i]) * SIZE for i in range(COUNT)]
    assert send_datagrams(tx, data, rx.getsockname(), caps) == COUNT
    got = receive_all(rx, rx_caps, COUNT)
    assert sorted(got) == data
    return rx_caps


def test_offload_on_batches(sockets: tuple[socket.socket, socket.socket]) -> None:
    """The control: with the offloads on, the batch leaves in one sendmsg."""
    tx, rx = sockets
    caps = detect_capabilities(tx)
    if not caps.gso:
        pytest.skip("this kernel has no UDP GSO")
    rx_caps = send_batch(tx, caps, rx)
    assert caps.counters.gso_batches == 1
    assert rx_caps.counters.gro_batches >= 1


def test_offload_off_sends_one_datagram_per_call(
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    tx, rx = sockets
    caps = detect_capabilities(tx, offload=False)
    assert not caps.gso and not caps.gro
    assert tx.getsockopt(SOL_UDP, UDP_GRO) == 0  # switched off on the socket too
    rx_caps = send_batch(tx, caps, rx)
    assert caps.counters.gso_batches == 0 and caps.counters.sent == COUNT
    assert rx_caps.counters.gro_batches == 0  # every datagram arrived on its own


def test_environment_variable_turns_offload_off(
    sockets: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    tx, rx = sockets
    monkeypatch.setenv(NO_GSO_ENV, "1")
    caps = detect_capabilities(tx)
    assert not caps.gso and not caps.gro
    monkeypatch.delenv(NO_GSO_ENV)  # the receiver keeps GRO, to see how the batch arrives
    rx_caps = send_batch(tx, caps, rx)
    assert caps.counters.gso_batches == 0 and rx_caps.counters.gro_batches == 0
    monkeypatch.setenv(NO_GSO_ENV, "0")  # "0" leaves the offloads on
    assert detect_capabilities(tx).gso == supports_gso(tx)


def supports_gso(sock: socket.socket) -> bool:
    try:
        sock.getsockopt(SOL_UDP, UDP_SEGMENT)
    except OSError:
        return False
    return True


def test_drivers_follow_the_config(sockets: tuple[socket.socket, socket.socket]) -> None:
    """Both trio drivers read ``udp_offload`` from the connection's configuration."""
    tx, rx = sockets
    conn = QuicConnection(
        client_config(udp_offload=False),
        is_client=True,
        now=0.0,
        peer_address=rx.getsockname(),
    )
    assert not UdpClientDriver(tx, conn).caps.gso
    endpoint = ServerEndpoint(server_config(udp_offload=False))
    listener = UdpListenerDriver(rx, endpoint)
    assert not listener.caps.gso and not listener.caps.gro
    assert rx.getsockopt(SOL_UDP, UDP_GRO) == 0
