"""Blocking TCP listener, TLS slowloris (issue 11): with every ``max_tcp_handshakes``
slot held by a slow ClientHello sender, a newcomer evicts the oldest of them (its
ClientHello deadline cut to now) and is served; only one is evicted.  The deadline is
set far beyond the client's budget, so only eviction can let the newcomer in.
127.0.0.1 only."""

from __future__ import annotations

import socket
import threading
import time

import pytest

import mstls
from mstls.qmux.connection import QMuxConnection

from .helpers import TIMEOUT, client_config, server

pytestmark = pytest.mark.network

SLOTS = 4
LONG_HELLO = 60.0
#: The newcomer's own budget: far below the ClientHello deadline.
CLIENT_BUDGET = 8.0
#: Bound on waiting for the evicted sender to notice.
DROP_WAIT = 8.0


def _client_hello() -> bytes:
    conn = QMuxConnection(client_config().qmux_config("localhost"), is_client=True, now=0.0)
    conn.connect(0.0)
    return conn.data_to_send(0.0)


def _trickle(port: int, hello: bytes, stop: threading.Event, dropped: list[int]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        try:
            for byte in hello:
                if stop.is_set():
                    return
                sock.sendall(bytes([byte]))
                time.sleep(0.5)
        except OSError:
            dropped.append(1)


def test_a_newcomer_evicts_one_slow_sender() -> None:
    hello, stop, dropped = _client_hello(), threading.Event(), []
    with server(
        transport="tcp",
        max_tcp_handshakes=SLOTS,
        client_hello_timeout=LONG_HELLO,
        handshake_timeout=2 * LONG_HELLO,
    ) as (listener, _):
        port = listener.address[1]
        senders = [
            threading.Thread(target=_trickle, args=(port, hello, stop, dropped), daemon=True)
            for _ in range(SLOTS)
        ]
        for thread in senders:
            thread.start()
        time.sleep(1.0)  # every slot is held by a slow sender
        try:
            conn = mstls.connect(
                "127.0.0.1", port, client_config(), transport="tcp", timeout=CLIENT_BUDGET
            )
            with conn, conn.open_stream(timeout=TIMEOUT) as stream:
                stream.write(b"let in", timeout=TIMEOUT, end=True)
                assert stream.read_exactly(6, timeout=TIMEOUT) == b"let in"
            deadline = time.monotonic() + DROP_WAIT
            while not dropped and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.5)
            assert len(dropped) == 1
        finally:
            stop.set()
            for thread in senders:
                thread.join(TIMEOUT)
