"""QUIC 0-RTT with aioquic on 127.0.0.1, both roles (RFC 9001 §4.6; issue 12).

A: our client (public blocking API) resumes with a ticket aioquic's server issued
and sends its request on a replay-safe stream as 0-RTT; aioquic accepts it.
B: aioquic's client resumes with a ticket our server issued and sends its stream
data before the handshake completes (0-RTT); our server accepts it.
"""

from __future__ import annotations

import time

import pytest
from aioquic import tls

import mstls
from tests.api.helpers import TIMEOUT, server
from tests.certs import get_pki

from .aioquic_client import ClientHandle, run_aioquic_client
from .aioquic_peer import AioquicServer
from .protocol import ALPN, Command, command_line

pytestmark = pytest.mark.network


def test_a_our_client_sends_0rtt_to_aioquic() -> None:
    files = get_pki().files("server")
    store = mstls.MemoryTicketStore()
    config = mstls.ClientConfig(
        alpn=ALPN,
        cafile=get_pki().files("ca").cert,
        server_name="localhost",
        ticket_store=store,
        early_data=True,
    )
    accepted, early_packets = [], []
    with AioquicServer(files.cert, files.key, session_tickets=True) as peer:
        for _ in range(2):
            with mstls.connect("127.0.0.1", peer.port, config, timeout=TIMEOUT, lazy=True) as conn:
                stream = conn.open_stream(early=True, timeout=TIMEOUT)
                stream.write(command_line(Command.ECHO) + b"hello", timeout=TIMEOUT)
                stream.conclude()
                assert stream.read_exactly(5, timeout=TIMEOUT) == b"hello"
                accepted.append(conn.early_data_accepted)
                early_packets.append(conn.sans_io.zero_rtt_sent)
        # aioquic may echo 0-RTT data before our Finished reached it: wait for it.
        deadline = time.monotonic() + TIMEOUT
        while len(peer.resumed) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert peer.resumed == [False, True]
    assert accepted == [False, True]
    assert early_packets == [False, True]


def test_b_aioquic_client_sends_0rtt_to_us() -> None:
    tickets: list[tls.SessionTicket] = []

    async def scenario(handle: ClientHandle) -> tuple[bool, bool]:
        stream_id = handle.open_stream()
        handle.send(stream_id, b"hello", end=True)
        assert await handle.read_to_end(stream_id) == b"hello"
        return bool(handle.quic.tls.session_resumed), bool(handle.quic.tls.early_data_accepted)

    cafile = get_pki().files("ca").cert
    with server(transport="udp", max_early_data=1) as (listener, connections):
        port = listener.address[1]
        first = run_aioquic_client("127.0.0.1", port, cafile, scenario,
                                   session_ticket_handler=tickets.append)  # fmt: skip
        assert tickets and tickets[-1].max_early_data_size == 0xFFFFFFFF
        second = run_aioquic_client("127.0.0.1", port, cafile, scenario,
                                    session_ticket=tickets[-1], wait_connected=False)  # fmt: skip
        assert [c.early_data_accepted for c in connections] == [False, True]
    assert (first, second) == ((False, False), (True, True))
