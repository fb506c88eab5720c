"""Pending QUIC handshakes beyond ``max_pending_handshakes`` on real sockets (127.0.0.1):
the oldest is shed and counted as a refused, failed handshake (trio and blocking)."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
import trio

import mstls
import mstls.trio
from mstls.core.admission import SHED
from mstls.exceptions import HandshakeRefused
from mstls.quic.connection import QuicConnection
from tests.trio_api.test_admission import TIMEOUT, client_config, server_config

pytestmark = pytest.mark.network


def shed_failures(failures: list[tuple[Any, Exception]]) -> list[Any]:
    """The addresses of shed handshakes (a client that closes right after its
    handshake may add a failure of its own)."""
    return [a for a, e in failures if isinstance(e, HandshakeRefused) and e.cause == SHED]


def stuck_client(port: int) -> socket.socket:
    """A socket that sent a client's first flight and will never answer (left open)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    now = time.monotonic()
    conn = QuicConnection(
        client_config().quic_config("localhost"),
        is_client=True,
        now=now,
        peer_address=("127.0.0.1", port),
    )
    conn.connect(now)
    for data in conn.datagrams_to_send(now):
        sock.sendto(data, ("127.0.0.1", port))
    return sock


async def test_trio_listener_sheds_the_oldest_pending_handshake() -> None:
    config = server_config(max_pending_handshakes=1)
    async with await mstls.trio.listen("127.0.0.1", 0, config) as listener:
        port = listener.address[1]
        with stuck_client(port) as stuck:
            with trio.fail_after(TIMEOUT):
                while listener._driver.endpoint.handshakes_in_progress == 0:  # type: ignore[attr-defined]
                    await trio.sleep(0.01)
            conn = await mstls.trio.connect("127.0.0.1", port, client_config(), timeout=TIMEOUT)
            await conn.aclose()
            with trio.fail_after(TIMEOUT):
                while listener.failed_handshakes == 0:
                    await trio.sleep(0.01)
            assert shed_failures(listener.pop_handshake_failures()) == [stuck.getsockname()]
            assert listener.refused_handshakes == 1


def test_blocking_listener_sheds_the_oldest_pending_handshake() -> None:
    listener = mstls.listen("127.0.0.1", 0, server_config(max_pending_handshakes=1))
    try:
        port = listener.address[1]
        with stuck_client(port) as stuck:
            deadline = time.monotonic() + TIMEOUT
            while listener._handler.endpoint.handshakes_in_progress == 0:  # type: ignore[attr-defined]
                assert time.monotonic() < deadline
                time.sleep(0.01)
            mstls.connect("127.0.0.1", port, client_config(), timeout=TIMEOUT).close()
            while listener.failed_handshakes == 0:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert shed_failures(listener.pop_handshake_failures()) == [stuck.getsockname()]
            assert listener.refused_handshakes == 1
    finally:
        listener.close()
