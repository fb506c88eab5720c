"""Bad input against a running daemon: it stays up and keeps serving a normal client.

A bounded version of the issue's acceptance test (100,000 datagrams, 1,000 garbage TCP
connections): random datagrams, mutations of a real client Initial, and garbage TCP
connections, then an echo round trip on both transports.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest
import trio

import mstls
import mstls.trio
from daemon.state import dev_pki_paths
from tests.daemon.support import client_config, daemon_process, exchange, free_port

pytestmark = pytest.mark.network

DATAGRAMS = 4000
TCP_CONNECTIONS = 200


async def capture_initial(ca: Path) -> bytes:
    """The first datagram a real client sends (its Initial), caught on a socket of ours."""
    sink = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sink.bind(("127.0.0.1", 0))
    port = sink.getsockname()[1]
    async with trio.open_nursery() as nursery:

        async def client() -> None:
            with pytest.raises(mstls.Error):
                await mstls.trio.connect("127.0.0.1", port, client_config(ca), timeout=0.5)

        nursery.start_soon(client)
        data, _ = await sink.recvfrom(65536)
    sink.close()
    return bytes(data)


def mutate(rng: random.Random, packet: bytes) -> bytes:
    data = bytearray(packet)
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    if rng.random() < 0.2:
        data = data[: rng.randrange(1, len(data))]
    return bytes(data)


async def test_garbage_does_not_hurt(tmp_path: Path) -> None:
    port = free_port()
    with daemon_process(["--listen-port", str(port)], tmp_path) as daemon:
        ca = dev_pki_paths(tmp_path).ca_cert
        initial = await capture_initial(ca)
        rng = random.Random(1234)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for i in range(DATAGRAMS):
                if i % 2:
                    datagram = mutate(rng, initial)
                else:
                    datagram = rng.randbytes(rng.choice((1, 20, 43, 100, 1200, 1500)))
                udp.sendto(datagram, ("127.0.0.1", port))
                if i % 500 == 0:
                    await trio.sleep(0.01)  # let the daemon read; the point is not to fill buffers
        for i in range(TCP_CONNECTIONS):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as tcp:
                tcp.sendall(rng.randbytes(rng.randint(1, 2000)))
                if i % 2:
                    tcp.shutdown(socket.SHUT_WR)
        for transport in ("udp", "tcp"):
            conn = await mstls.trio.connect(
                "127.0.0.1", port, client_config(ca), transport=transport, timeout=5
            )
            async with conn:
                assert await exchange(conn, "echo", b"still serving") == b"still serving"
        assert daemon.proc.poll() is None
        assert await trio.to_thread.run_sync(daemon.stop) == 0
        assert "Traceback" not in daemon.log()
