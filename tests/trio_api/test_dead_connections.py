"""Dead connections are freed at once, and handshake state is bounded.

Under a flood of failed handshakes (issue 6) each dead connection stayed in a
reference cycle (a stored exception's traceback, the driver <-> core links)
until Python's full garbage collection ran, which is rare: hundreds of them,
megabytes of buffers, piled up and raised the process's memory high-water
mark for good.  With the cyclic collector disabled, nothing of a failed TCP
handshake may survive once its task ended.
"""

from __future__ import annotations

import gc
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
import trio

import mstls
import mstls.trio
from mstls.qmux.connection import QMuxConnection
from tests.certs import get_pki

GARBAGE_CONNECTIONS = 20


def live_qmux_connections() -> int:
    return sum(1 for obj in gc.get_objects() if isinstance(obj, QMuxConnection))


def send_garbage(port: int, count: int) -> None:
    for i in range(count):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as tcp:
            # An unknown record type, or a partial record ended by a FIN.
            tcp.sendall(b"\x50" + bytes(40) if i % 2 else b"\x16\x03\x01")
            tcp.shutdown(socket.SHUT_WR)


async def test_failed_tcp_handshakes_leave_nothing_behind() -> None:
    files = get_pki().files("server")
    config = mstls.ServerConfig(files.cert, files.key, alpn="mstls-test")
    gc.collect()
    gc.disable()
    try:
        listener = await mstls.trio.listen("127.0.0.1", 0, config, transport="tcp")
        before = live_qmux_connections()
        await trio.to_thread.run_sync(send_garbage, listener.address[1], GARBAGE_CONNECTIONS)
        with trio.fail_after(10):
            while listener.failed_handshakes < GARBAGE_CONNECTIONS:
                await trio.sleep(0.01)
        failures = listener.pop_handshake_failures()
        assert len(failures) == GARBAGE_CONNECTIONS
        assert all(isinstance(error, mstls.Error) for _, error in failures)
        await trio.sleep(0.05)  # let the connections' tasks finish
        assert live_qmux_connections() == before
        await listener.aclose()
    finally:
        gc.enable()


async def wait_until(predicate: Callable[[], bool]) -> None:
    with trio.fail_after(10):
        while not predicate():
            await trio.sleep(0.01)


async def test_tcp_handshakes_in_progress_are_capped() -> None:
    """Beyond ``max_tcp_handshakes`` connections wait in the kernel's accept queue:
    a flood cannot pile up handshake state (issue 6, a bounded amount of work)."""
    files = get_pki().files("server")
    # A long ClientHello deadline: on a loaded machine the 2 s default could close the
    # stalled sockets before the counts below are sampled (this test is about the cap).
    config = mstls.ServerConfig(
        files.cert, files.key, alpn="mstls-test", max_tcp_handshakes=2, client_hello_timeout=60
    )
    async with await mstls.trio.listen("127.0.0.1", 0, config, transport="tcp") as listener:
        driver: Any = listener._driver
        port = listener.address[1]
        stalled = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        try:
            await wait_until(lambda: len(driver.live) == 2)
            await trio.sleep(0.2)
            assert len(driver.live) == 2  # the third waits in the accept queue
            stalled.pop(0).close()  # one handshake ends (a premature close)...
            await wait_until(lambda: listener.failed_handshakes == 1)
            await wait_until(lambda: len(driver.live) == 2)  # ...the third is accepted
            for sock in stalled:
                sock.close()
            await wait_until(lambda: listener.failed_handshakes == 3)
            client = mstls.ClientConfig(
                alpn="mstls-test", cafile=get_pki().files("ca").cert, server_name="localhost"
            )
            conn = await mstls.trio.connect("127.0.0.1", port, client, transport="tcp", timeout=5)
            await conn.aclose()
        finally:
            for sock in stalled:
                sock.close()


def test_max_tcp_handshakes_is_checked() -> None:
    files = get_pki().files("server")
    config = mstls.ServerConfig(files.cert, files.key, alpn="x", max_tcp_handshakes=0)
    with pytest.raises(mstls.ConfigurationError, match="max_tcp_handshakes"):
        config.check_admission()


def test_blocking_tcp_handshakes_in_progress_are_capped() -> None:
    """The blocking listener stops reading its accept queue at the cap, too."""
    files = get_pki().files("server")
    # A long ClientHello deadline: on a loaded machine the 2 s default could close the
    # stalled sockets before the counts below are sampled (this test is about the cap).
    config = mstls.ServerConfig(
        files.cert, files.key, alpn="mstls-test", max_tcp_handshakes=2, client_hello_timeout=60
    )
    listener: Any = mstls.listen("127.0.0.1", 0, config, transport="tcp")
    handler = listener._tcp
    port = listener.address[1]
    stalled = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    try:
        blocking_wait(lambda: len(handler.handlers) == 2)
        time.sleep(0.2)
        assert len(handler.handlers) == 2  # the third waits in the accept queue
        stalled.pop(0).close()
        blocking_wait(lambda: len(handler.handlers) == 2 and handler.sock.fileno() >= 0)
        for sock in stalled:
            sock.close()
        blocking_wait(lambda: not handler.handlers)
        client = mstls.ClientConfig(
            alpn="mstls-test", cafile=get_pki().files("ca").cert, server_name="localhost"
        )
        with mstls.connect("127.0.0.1", port, client, transport="tcp", timeout=5):
            listener.accept(timeout=5).close()
    finally:
        for sock in stalled:
            sock.close()
        listener.close()


def blocking_wait(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in 10 s"
        time.sleep(0.01)
