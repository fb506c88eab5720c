"""Blocking API stream semantics on both transports: ``wait_acknowledged`` waits for
every byte written so far (issue 17 point 5), and a peer's reset leaves the data
delivered before it readable (point 11, rule E6)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import mstls
from mstls import errors

from .helpers import TIMEOUT, client_config, server

pytestmark = pytest.mark.network

TRANSPORTS = ["udp", "tcp"]
#: More than the peer's initial stream window (256 KiB on both transports), less than
#: our send buffer: the write returns, and what does not fit the window cannot be
#: sent, so cannot be acknowledged, until the peer reads.
BEYOND_WINDOW = 600 * 1024
#: How long an unacknowledgeable wait is given before it must time out.
SHORT = 0.5


def connect(port: int, transport: str) -> mstls.Connection:
    return mstls.connect("127.0.0.1", port, client_config(), transport=transport, timeout=TIMEOUT)


def wait_for(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wait_acknowledged_waits_for_data_written_after_an_acknowledged_write(
    transport: str,
) -> None:
    go = threading.Event()
    received: list[int] = []

    def reader_after_go(stream: mstls.Stream) -> None:
        go.wait(TIMEOUT)
        total = 0
        try:
            while data := stream.read(timeout=TIMEOUT):
                total += len(data)
        except mstls.Error:
            pass
        received.append(total)

    with (
        server(reader_after_go, transport=transport) as (listener, _),
        connect(listener.address[1], transport) as conn,
    ):
        stream = conn.open_stream()
        stream.write(b"a" * 1000, timeout=TIMEOUT)
        stream.wait_acknowledged(timeout=TIMEOUT)  # within the window: acknowledged
        stream.write(b"b" * BEYOND_WINDOW, timeout=TIMEOUT)
        errors.clear_error()
        with pytest.raises(mstls.Timeout):
            stream.wait_acknowledged(timeout=SHORT)  # used to return at once
        errors.clear_error()
        go.set()  # the peer reads: credit flows, the rest is sent and acknowledged
        stream.wait_acknowledged(timeout=TIMEOUT)
        stream.conclude()
        stream.wait_acknowledged(timeout=TIMEOUT)  # the FIN too
        wait_for(lambda: bool(received))
        assert received == [1000 + BEYOND_WINDOW]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wait_acknowledged_fails_after_stop_sending(transport: str) -> None:
    """E6: STOP_SENDING fails the write side, so a wait that can never end fails."""

    def stop_at_once(stream: mstls.Stream) -> None:
        stream.stop_sending(0x21)

    with (
        server(stop_at_once, transport=transport) as (listener, _),
        connect(listener.address[1], transport) as conn,
    ):
        stream = conn.open_stream()
        stream.write(b"c" * BEYOND_WINDOW, timeout=TIMEOUT)
        errors.clear_error()
        with pytest.raises(mstls.StreamStopped) as info:
            stream.wait_acknowledged(timeout=TIMEOUT)
        assert info.value.code == 0x21
        errors.clear_error()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_read_returns_data_delivered_before_the_reset(transport: str) -> None:
    payload = bytes(range(256)) * 400  # 100 KiB, within the window
    outcome: dict[str, Any] = {}
    reset_sent = threading.Event()

    def read_after_reset(stream: mstls.Stream) -> None:
        try:
            reset_sent.wait(TIMEOUT)
            conn = outcome["server"]
            recv = conn.sans_io.streams.get_stream(stream.stream_id).recv
            wait_for(lambda: recv.reset_code is not None)  # the reset arrived first
            outcome["data"] = stream.read_exactly(len(payload), timeout=TIMEOUT)
            try:
                stream.read(timeout=TIMEOUT)
            except mstls.StreamReset as exc:
                outcome["code"] = exc.code
            stream.write(b"reply", timeout=TIMEOUT)  # E6: the other direction works
            stream.conclude()
        except BaseException as exc:  # reported by the test thread
            outcome["error"] = exc

    def on_connection(conn: mstls.Connection) -> None:
        outcome["server"] = conn
        read_after_reset(conn.accept_stream(timeout=TIMEOUT))

    with (
        server(transport=transport, on_connection=on_connection) as (listener, _),
        connect(listener.address[1], transport) as conn,
    ):
        stream = conn.open_stream()
        stream.write(payload, timeout=TIMEOUT)
        stream.wait_acknowledged(timeout=TIMEOUT)  # the peer's transport holds it all
        stream.reset(0x77)
        reset_sent.set()
        assert stream.read_exactly(5, timeout=TIMEOUT) == b"reply"
        assert stream.read(timeout=TIMEOUT) == b""
    assert "error" not in outcome, outcome.get("error")
    assert outcome["data"] == payload  # used to raise StreamReset at once
    assert outcome["code"] == 0x77


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wait_acknowledged_is_woken_by_the_connection_closing(transport: str) -> None:
    """C2: a wait for data the peer never takes ends when the connection does."""

    def on_connection(conn: mstls.Connection) -> None:
        conn.accept_stream(timeout=TIMEOUT)  # and never read
        time.sleep(SHORT)  # let the wait start first
        conn.close()

    with (
        server(transport=transport, on_connection=on_connection) as (listener, _),
        connect(listener.address[1], transport) as conn,
    ):
        stream = conn.open_stream()
        stream.write(b"d" * BEYOND_WINDOW, timeout=TIMEOUT)
        errors.clear_error()
        with pytest.raises(mstls.ConnectionTerminated):
            stream.wait_acknowledged(timeout=TIMEOUT)
        errors.clear_error()
