"""ECN on real loopback sockets (RFC 9000 §13.4): the socket layer, then mstls <-> mstls.

The kernel carries the TOS byte on loopback, so a datagram sent ECT(0) or CE
arrives so marked, through every GSO/GRO combination.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import mstls
from mstls.core.ecn import ECT0, EcnState
from mstls.core.recovery import PacketNumberSpace
from mstls.io.udp import (
    detect_capabilities,
    enable_ecn,
    new_receive_buffer,
    open_udp_socket,
    receive_datagrams,
    send_datagrams,
    set_ecn_codepoint,
)
from tests.api.helpers import client_config, server_config

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="IP_RECVTOS is Linux's")

APP = PacketNumberSpace.APPLICATION
TIMEOUT = 20.0
CE = 0b11


def _receive(sock: object, caps: object, expected: int) -> list[int]:
    buffer = new_receive_buffer()
    codepoints: list[int] = []
    deadline = time.monotonic() + 5.0
    while len(codepoints) < expected and time.monotonic() < deadline:
        ecn: list[int] = []
        batch = receive_datagrams(sock, 4096, caps, buffer, ecn)  # type: ignore[arg-type]
        assert len(ecn) == len(batch)
        codepoints += ecn
        if not batch:
            time.sleep(0.01)
    return codepoints


@pytest.mark.parametrize(
    ("gso", "gro"), [(True, True), (True, False), (False, True), (False, False)]
)
def test_codepoints_survive_every_batching_path(gso: bool, gro: bool) -> None:
    rx = open_udp_socket("127.0.0.1", 0, gro=gro)
    tx = open_udp_socket("127.0.0.1", 0, gro=False)
    with rx, tx:
        tx_caps, rx_caps = detect_capabilities(tx), detect_capabilities(rx)
        tx_caps.gso = tx_caps.gso and gso
        assert enable_ecn(rx, rx_caps)
        for codepoint in (ECT0, 0, CE):
            assert set_ecn_codepoint(tx, tx_caps, codepoint)
            datagrams = [bytes([i]) * 1200 for i in range(8)]
            assert send_datagrams(tx, datagrams, rx.getsockname(), tx_caps) == 8
            assert _receive(rx, rx_caps, 8) == [codepoint] * 8


@pytest.fixture
def upload_server() -> Iterator[tuple[int, list[mstls.Connection]]]:
    listener = mstls.listen("127.0.0.1", 0, server_config(), transport="udp")
    accepted: list[mstls.Connection] = []

    def serve() -> None:
        try:
            conn = listener.accept(timeout=TIMEOUT)
            accepted.append(conn)
            stream = conn.accept_stream(timeout=TIMEOUT)
            digest = hashlib.sha256()
            while data := stream.read(1 << 20, timeout=TIMEOUT):
                digest.update(data)
            stream.write(digest.hexdigest().encode(), timeout=TIMEOUT)
            stream.conclude()
        except mstls.Error:
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.address[1], accepted
    finally:
        thread.join(TIMEOUT)
        listener.close()


def _quic(conn: mstls.Connection) -> object:
    return conn._core.conn  # the sans-I/O QuicConnection behind the public object


def _under_lock(conn: mstls.Connection, read: Callable[[], object]) -> object:
    with conn._core.handler.lock:
        return read()


def test_receiver_counts_match_the_senders_view(
    upload_server: tuple[int, list[mstls.Connection]],
) -> None:
    port, accepted = upload_server
    payload = bytes(i % 251 for i in range(1 << 20))
    with mstls.connect("127.0.0.1", port, client_config(), transport="udp") as conn:
        stream = conn.open_stream()
        stream.write(payload, timeout=TIMEOUT)
        stream.conclude()
        answer = stream.read_exactly(64, timeout=TIMEOUT).decode()
        assert answer == hashlib.sha256(payload).hexdigest()
        client: object = _quic(conn)
        server: object = _quic(accepted[0])
        # Quiet: nothing in flight either way, so the last ACK_ECN reflects the counts.
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and _under_lock(
            conn,
            lambda: client.recovery.bytes_in_flight or server.recovery.bytes_in_flight,  # type: ignore[attr-defined]
        ):
            time.sleep(0.02)
        time.sleep(0.1)
        reported, state, marked = _under_lock(
            conn,
            lambda: (
                client.recovery.ecn.peer_counts(APP),  # type: ignore[attr-defined]
                client.recovery.ecn.state,  # type: ignore[attr-defined]
                client.recovery.ecn.marked_sent,  # type: ignore[attr-defined]
            ),
        )
        counted = _under_lock(accepted[0], lambda: server.spaces[APP].acks.ecn_counts)  # type: ignore[attr-defined]
        assert state is EcnState.CAPABLE
        # The whole upload went marked (PMTU discovery makes its packets large).
        assert counted.ect0 > len(payload) // client.mtu.current  # type: ignore[attr-defined]
        assert counted.ce == reported.ce == 0  # type: ignore[attr-defined]
        # Every 1-RTT packet the server acknowledged is in the client's view; the
        # server also counted the client's last ACK-only packets, never acknowledged.
        assert 0 <= counted.ect0 - reported.ect0 <= 2  # type: ignore[attr-defined]
        assert reported.ect0 <= marked  # type: ignore[attr-defined]
        stats = conn.stats()
        assert stats.ecn_state == "capable"
        assert stats.ecn_ect0_reported == reported.ect0  # type: ignore[attr-defined]
        assert accepted[0].stats().ecn_ect0_received == counted.ect0  # type: ignore[attr-defined]
