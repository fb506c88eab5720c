"""The trio TCP listener's two bounds (issue 11, TLS slowloris).

Connections still sending their ClientHello cost no TLS work: the listener holds up
to ``AWAITING_HELLO_PER_SLOT * max_tcp_handshakes`` of them, so the kernel's accept
queue stays short and a newcomer is accepted at once.  Handshakes past their
ClientHello are what ``max_tcp_handshakes`` bounds.  127.0.0.1 only.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
import trio

import mstls
import mstls.trio
from mstls.io.tcp import accept_queue_length
from mstls.qmux.connection import QMuxConnection
from mstls.trio._tcp import AWAITING_HELLO_PER_SLOT
from tests.certs import get_pki

pytestmark = pytest.mark.network

SLOTS = 2


def server_config() -> mstls.ServerConfig:
    files = get_pki().files("server")
    # Deadlines far beyond the test, so only the bounds decide.
    return mstls.ServerConfig(
        files.cert,
        files.key,
        alpn="mstls-test",
        max_tcp_handshakes=SLOTS,
        client_hello_timeout=60,
        handshake_timeout=120,
    )


def client_config() -> mstls.ClientConfig:
    return mstls.ClientConfig(
        alpn="mstls-test", cafile=get_pki().files("ca").cert, server_name="localhost"
    )


def client_hello() -> bytes:
    conn = QMuxConnection(client_config().qmux_config("localhost"), is_client=True, now=0.0)
    conn.connect(0.0)
    return conn.data_to_send(0.0)


async def wait_until(predicate: Callable[[], bool]) -> None:
    with trio.fail_after(10):
        while not predicate():
            await trio.sleep(0.01)


def test_accept_queue_length_counts_connections_not_yet_accepted() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(8)
        if accept_queue_length(listening) is None:
            pytest.skip("the system does not report its accept queue")
        assert accept_queue_length(listening) == 0
        clients = [socket.create_connection(listening.getsockname()) for _ in range(3)]
        try:
            assert accept_queue_length(listening) == 3
            listening.accept()[0].close()
            assert accept_queue_length(listening) == 2
        finally:
            for sock in clients:
                sock.close()
    with socket.socket() as unbound:
        assert accept_queue_length(unbound) is None  # not a listening socket


async def test_silent_connections_do_not_take_handshake_slots() -> None:
    async with await mstls.trio.listen(
        "127.0.0.1", 0, server_config(), transport="tcp"
    ) as listener:
        driver: Any = listener._driver
        port = listener.address[1]
        held = AWAITING_HELLO_PER_SLOT * SLOTS - 1
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(held)]
        try:
            await wait_until(lambda: len(driver.live) == held)  # beyond the slots
            conn = await mstls.trio.connect(
                "127.0.0.1", port, client_config(), transport="tcp", timeout=5
            )
            with trio.fail_after(5):
                served = await listener.accept()  # the server's side completed too
            assert listener.failed_handshakes == 0  # nobody was evicted for it
            await conn.aclose()
            await served.aclose()
        finally:
            for sock in silent:
                sock.close()


async def test_handshakes_past_their_client_hello_are_capped() -> None:
    hello = client_hello()
    async with await mstls.trio.listen(
        "127.0.0.1", 0, server_config(), transport="tcp"
    ) as listener:
        driver: Any = listener._driver
        port = listener.address[1]
        stalled: list[socket.socket] = []
        try:
            for count in range(1, SLOTS + 1):  # one at a time: each is past its hello
                sock = socket.create_connection(("127.0.0.1", port))
                stalled.append(sock)
                sock.sendall(hello)
                await wait_until(
                    lambda n=count: len(driver.live) == n and not driver._awaiting  # type: ignore[misc]
                )
            late = socket.create_connection(("127.0.0.1", port))
            stalled.append(late)
            late.sendall(hello)
            await trio.sleep(0.3)
            assert len(driver.live) == SLOTS  # the third waits in the accept queue
            stalled.pop(0).close()  # one handshake ends (a premature close)...
            await wait_until(lambda: listener.failed_handshakes == 1)
            await wait_until(lambda: len(driver.live) == SLOTS)  # ...the third is accepted
        finally:
            for sock in stalled:
                sock.close()
