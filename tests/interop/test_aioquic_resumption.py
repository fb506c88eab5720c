"""Session resumption with aioquic over QUIC on 127.0.0.1, both roles (issue 12).

A: our client (public blocking API, :class:`mstls.MemoryTicketStore`) resumes with a
ticket aioquic's server issued.  B: aioquic's client resumes with a ticket our server
issued.  Both check the second handshake resumed on both ends (no certificate sent).
"""

from __future__ import annotations

import pytest
from aioquic import tls

import mstls
from tests.api.helpers import TIMEOUT, server
from tests.certs import get_pki

from .aioquic_client import ClientHandle, run_aioquic_client
from .aioquic_peer import AioquicServer
from .protocol import ALPN, Command, command_line

pytestmark = pytest.mark.network


def test_a_our_client_resumes_with_an_aioquic_ticket() -> None:
    files = get_pki().files("server")
    store = mstls.MemoryTicketStore()
    config = mstls.ClientConfig(
        alpn=ALPN, cafile=get_pki().files("ca").cert, server_name="localhost", ticket_store=store
    )
    ours = []
    with AioquicServer(files.cert, files.key, session_tickets=True) as peer:
        for _ in range(2):
            with mstls.connect("127.0.0.1", peer.port, config, timeout=TIMEOUT) as conn:
                stream = conn.open_stream(timeout=TIMEOUT)
                stream.write(command_line(Command.ECHO) + b"hello", timeout=TIMEOUT)
                stream.conclude()
                assert stream.read_exactly(5, timeout=TIMEOUT) == b"hello"
                ours.append(conn.resumed)
        assert peer.resumed == [False, True]
    assert ours == [False, True]


def test_b_aioquic_client_resumes_with_our_ticket() -> None:
    tickets: list[tls.SessionTicket] = []

    async def scenario(handle: ClientHandle) -> bool:
        stream_id = handle.open_stream()
        handle.send(stream_id, b"hello", end=True)
        assert await handle.read_to_end(stream_id) == b"hello"
        return bool(handle.quic.tls.session_resumed)

    cafile = get_pki().files("ca").cert
    with server(transport="udp") as (listener, connections):
        port = listener.address[1]
        first = run_aioquic_client("127.0.0.1", port, cafile, scenario,
                                   session_ticket_handler=tickets.append)  # fmt: skip
        assert tickets, "our server sent no NewSessionTicket"
        second = run_aioquic_client("127.0.0.1", port, cafile, scenario,
                                    session_ticket=tickets[-1])  # fmt: skip
        assert [c.resumed for c in connections] == [False, True]
    assert (first, second) == (False, True)
