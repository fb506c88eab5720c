"""The daemon's echo answers a small request in one packet: its data and FIN
together when the client's FIN came with the request (issue 11).

Counted, not timed: the QUIC packets the client received (the daemon's sends, on
loopback) for sequential 1 KiB request/response streams.  An echo that sends the
data and then a separate FIN costs 2 packets per stream.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import mstls
import mstls.trio
from mstlsd.preamble import encode_preamble
from mstlsd.state import dev_pki_paths
from tests.daemon.support import client_config, config_from, port_of, running_daemon

pytestmark = pytest.mark.network

CONFIG = """
[[listeners]]
transport = "udp"
port = 0
[services.echo]
type = "echo"
"""
STREAMS = 100
SIZE = 1024
#: Packets per stream allowed from the daemon: 1 when answer and FIN coalesce, a
#: few lone ACKs when a loaded machine delays a turn past the ACK delay; 2 without.
MAX_PACKETS_PER_STREAM = 1.6
TIMEOUT = 20


async def _echo(conn: mstls.trio.Connection, payload: bytes) -> bytes:
    stream = await conn.open_stream()
    async with stream:
        await stream.send_all(encode_preamble("echo") + payload, end=True)
        reply = bytearray()
        while chunk := await stream.receive_some():
            reply += chunk
        return bytes(reply)


async def test_echo_answer_and_fin_in_one_packet(tmp_path: Path) -> None:
    config = config_from(CONFIG, tmp_path)
    async with running_daemon(config, tmp_path / "state") as daemon:
        ca = dev_pki_paths(tmp_path / "state").ca_cert
        with trio.fail_after(TIMEOUT):
            conn = await mstls.trio.connect(
                "127.0.0.1", port_of(daemon, "udp"), client_config(ca), transport="udp"
            )
            async with conn:
                assert await _echo(conn, b"warm-up") == b"warm-up"
                await trio.sleep(0.2)  # handshake leftovers (tickets, ACKs) are in
                before = conn.stats().packets_received
                for index in range(STREAMS):
                    request = bytes([index % 256]) * SIZE
                    assert await _echo(conn, request) == request
                received = conn.stats().packets_received - before
    assert received <= MAX_PACKETS_PER_STREAM * STREAMS, received
