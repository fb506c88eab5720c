"""Dead connections are freed at once, not left for the cycle collector.

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
