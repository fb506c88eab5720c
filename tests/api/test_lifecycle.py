"""Lifecycle of the blocking API (issue 17 points 4, 9, 12): closing a listener under
its waiters, a handler's failure inside the assist thread, configurations checked
before any socket, and connections closed cleanly at interpreter exit."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import trio

import mstls
import mstls.trio
from mstls.codes import TransportErrorCode
from tests.certs import get_pki

from .helpers import TIMEOUT, client_config, server, server_config

pytestmark = pytest.mark.network

TRANSPORTS = ["udp", "tcp"]
#: Threads blocked in Listener.accept() when the listener is closed.
ACCEPT_WAITERS = 4


def wait_for(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def accept_condition(listener: mstls.Listener) -> threading.Condition:
    handler = getattr(listener, "_tcp", None) or listener._handler
    cond = handler.accept_cond
    assert isinstance(cond, threading.Condition)
    return cond


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_close_from_another_thread_wakes_every_accept_waiter(transport: str) -> None:
    """Issue 17 point 4 (brief C2): each thread blocked in accept() wakes with
    ListenerClosed as soon as another thread closes the listener."""
    listener = mstls.listen("127.0.0.1", 0, server_config(), transport=transport)
    outcomes: list[BaseException | None] = []

    def waiter() -> None:
        try:
            listener.accept(timeout=TIMEOUT * 6)  # far longer than the joins below
        except BaseException as exc:  # recorded for the assertion
            outcomes.append(exc)
        else:
            outcomes.append(None)

    threads = [threading.Thread(target=waiter, daemon=True) for _ in range(ACCEPT_WAITERS)]
    for thread in threads:
        thread.start()
    cond = accept_condition(listener)
    # Every waiter is inside Condition.wait (CPython keeps them in _waiters).
    wait_for(lambda: len(cond._waiters) == ACCEPT_WAITERS)  # type: ignore[attr-defined]
    listener.close()
    deadline = time.monotonic() + TIMEOUT  # one bound for all the joins together
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "a waiter was not woken"
    assert len(outcomes) == ACCEPT_WAITERS
    assert all(isinstance(exc, mstls.ListenerClosed) for exc in outcomes), outcomes


# -- a handler's exception inside the assist thread (issue 17 point 9) ---------------------------
class Injected(RuntimeError):
    """The fault a test plants in one connection's input path."""


def plant_fault(conn: mstls.Connection) -> None:
    """Make the next input the assist thread feeds ``conn`` raise :class:`Injected`."""
    sans_io = conn._core.conn

    def broken(*args: object, **kwargs: object) -> None:
        raise Injected("planted in one connection's input")

    name = "receive_datagram" if conn.transport == "udp" else "receive_data"
    setattr(sans_io, name, broken)


def blocked_reader(stream: mstls.Stream) -> tuple[threading.Thread, list[BaseException]]:
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            stream.read(timeout=TIMEOUT)
        except BaseException as exc:  # recorded for the assertion
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def assert_still_echoes(conn: mstls.Connection) -> None:
    with conn.open_stream(timeout=TIMEOUT) as stream:
        stream.write(b"still alive", timeout=TIMEOUT)
        stream.conclude()
        assert stream.read_exactly(11, timeout=TIMEOUT) == b"still alive"


def assert_failed_with_the_fault(exc: BaseException | None) -> None:
    assert isinstance(exc, mstls.ConnectionTerminated), repr(exc)
    assert exc.code == TransportErrorCode.INTERNAL_ERROR
    assert isinstance(exc.__cause__, Injected), repr(exc.__cause__)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_client_connection_fault_fails_it_alone(transport: str) -> None:
    """The assist thread raises while feeding one client connection: that connection
    fails with the error (its blocked reader wakes with it, later calls raise it, E3);
    a second connection of the process goes on."""
    with server(transport=transport) as (listener, _):
        port = listener.address[1]
        config = client_config()
        faulty = mstls.connect("127.0.0.1", port, config, transport=transport, timeout=TIMEOUT)
        healthy = mstls.connect("127.0.0.1", port, config, transport=transport, timeout=TIMEOUT)
        stream = faulty.open_stream(timeout=TIMEOUT)
        plant_fault(faulty)
        thread, outcome = blocked_reader(stream)
        stream.write(b"echo me", timeout=TIMEOUT)  # the echo is the input that raises
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "the blocked reader was not woken"
        assert_failed_with_the_fault(outcome[0])
        with pytest.raises(mstls.ConnectionTerminated) as later:
            faulty.open_stream(timeout=TIMEOUT)
        assert_failed_with_the_fault(later.value)
        assert_still_echoes(healthy)
        healthy.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_server_connection_fault_fails_it_alone(transport: str) -> None:
    """The same on the server side, where one UDP socket serves every connection:
    only the connection whose input raised fails."""
    with server(transport=transport) as (listener, server_conns):
        port = listener.address[1]
        config = client_config()
        first = mstls.connect("127.0.0.1", port, config, transport=transport, timeout=TIMEOUT)
        wait_for(lambda: len(server_conns) == 1)
        second = mstls.connect("127.0.0.1", port, config, transport=transport, timeout=TIMEOUT)
        wait_for(lambda: len(server_conns) == 2)
        victim = server_conns[0]
        plant_fault(victim)
        stream = first.open_stream(timeout=TIMEOUT)
        with pytest.raises(mstls.ConnectionTerminated):
            stream.write(b"x", timeout=TIMEOUT)
            stream.read(timeout=TIMEOUT)  # the server's CONNECTION_CLOSE
        with pytest.raises(mstls.ConnectionTerminated) as info:
            victim.accept_stream(timeout=TIMEOUT)
        assert_failed_with_the_fault(info.value)
        assert_still_echoes(second)
        second.close()


def test_the_issue_configuration_error_in_the_assist_thread() -> None:
    """Issue 17 point 9 as reported: a stream limit above max_tracked_streams made the
    first Initial raise ConfigurationError inside the assist thread, which died, and
    every connection of the process hung.  Planted past listen()'s own check, the new
    handshake fails alone (it times out) and an established connection goes on."""
    with server(transport="udp") as (listener, _):
        port = listener.address[1]
        healthy = mstls.connect("127.0.0.1", port, client_config(), timeout=TIMEOUT)
        listener._handler.endpoint.config.max_streams_bidi = 100_016
        with pytest.raises(mstls.ConnectionTerminated):
            mstls.connect("127.0.0.1", port, client_config(handshake_timeout=1.0), timeout=TIMEOUT)
        assert_still_echoes(healthy)
        healthy.close()


# -- configurations checked at listen() / connect() (issue 17 point 9a) ---------------------------
BAD_EXTRA = [{"max_streams_bidi": 100_016}, {"max_streams_uni": 5000}, {"no_such_setting": 1}]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("extra", BAD_EXTRA)
def test_listen_and_connect_check_the_configuration_before_a_socket(extra: dict[str, Any]) -> None:
    before = open_fds()
    with pytest.raises(mstls.ConfigurationError):
        mstls.listen("127.0.0.1", 0, server_config(extra=extra))
    with pytest.raises(mstls.ConfigurationError):
        mstls.connect("127.0.0.1", 9, client_config(extra=extra), timeout=TIMEOUT)
    assert open_fds() == before


@pytest.mark.parametrize("extra", BAD_EXTRA)
def test_trio_listen_and_connect_check_the_configuration(extra: dict[str, Any]) -> None:
    async def main() -> None:
        with pytest.raises(mstls.ConfigurationError):
            await mstls.trio.listen("127.0.0.1", 0, server_config(extra=extra))
        with pytest.raises(mstls.ConfigurationError):
            await mstls.trio.connect("127.0.0.1", 9, client_config(extra=extra), timeout=TIMEOUT)

    trio.run(main)


# -- interpreter exit closes what is open (issue 17 point 12) --------------------------------------
#: A client that connects, writes on a stream and exits without closing anything.
EXITING_CLIENT = """
import sys
import mstls

port, transport, cafile = int(sys.argv[1]), sys.argv[2], sys.argv[3]
config = mstls.ClientConfig(alpn="mstls-test", cafile=cafile, server_name="localhost")
conn = mstls.connect("127.0.0.1", port, config, transport=transport, timeout=10)
stream = conn.open_stream()
stream.write(b"hello")
stream.read_exactly(5, timeout=10)  # the server has the stream: exit now, open
print("exiting", flush=True)
"""


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_interpreter_exit_closes_open_connections(transport: str) -> None:
    """The peer of a process that exits with a connection open sees a clean close by
    the peer with code 0 (not an idle timeout on UDP, not a premature close on TCP)."""
    seen: list[BaseException] = []

    def watch(stream: mstls.Stream) -> None:
        try:
            while data := stream.read(timeout=TIMEOUT * 3):
                stream.write(data, timeout=TIMEOUT)
        except BaseException as exc:  # recorded for the assertion
            seen.append(exc)

    # The idle timeout is far longer than the test waits: only a close ends it in time.
    with server(watch, transport=transport, idle_timeout=TIMEOUT * 6) as (listener, _):
        cafile = str(get_pki().files("ca").cert)
        args = [sys.executable, "-c", EXITING_CLIENT, str(listener.address[1]), transport, cafile]
        done = subprocess.run(args, check=False, capture_output=True, timeout=TIMEOUT * 3)
        assert done.returncode == 0, done.stderr.decode()
        assert done.stdout.strip() == b"exiting"
        wait_for(lambda: bool(seen))
    exc = seen[0]
    assert isinstance(exc, mstls.ConnectionTerminated), repr(exc)
    assert not isinstance(exc, mstls.PrematureClose), repr(exc)
    assert (exc.by_peer, exc.is_application, exc.code) == (True, True, 0), repr(exc)
