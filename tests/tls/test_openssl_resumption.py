"""Session resumption against OpenSSL (Python's ``ssl``) over 127.0.0.1 TCP, both roles
(RFC 8446 §2.2, §4.6.1; issue 12).

Our client resumes with a ticket an OpenSSL server issued; an OpenSSL client
resumes (``SSLSocket.session_reused``) with a ticket ours issued.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

import pytest

from mstls.tls.tcp import TLSConnection
from mstls.tls.ticket_store import MemoryTicketStore
from mstls.tls.tickets import TicketKeyRing
from tests.certs import SERVER_NAME, TestPKI

from .driver import BlockingTLS, client_config, server_config
from .test_openssl_interop import (
    PAYLOAD,
    TIMEOUT,
    openssl_client_context,
    openssl_server_context,
    our_client,
    recv_until_eof,
    round_trip,
    serve_once,
)

pytestmark = pytest.mark.network

MESSAGE = b"resume me"


def test_our_client_resumes_with_an_openssl_ticket(pki: TestPKI) -> None:
    ctx = openssl_server_context(pki)  # one SSL_CTX: one ticket key for both connections
    store = MemoryTicketStore()
    resumed = []
    for _ in range(2):
        with serve_once(_openssl_echo_reporting_reuse(ctx)) as (port, result):
            client = our_client(port, client_config(pki, ticket_store=store))
            assert round_trip(client) == PAYLOAD
            resumed.append(client.conn.handshake.resumed)
        assert "error" not in result, result
        assert result["value"]["reused"] is resumed[-1]
    assert resumed == [False, True]


def _openssl_echo_reporting_reuse(ctx: ssl.SSLContext) -> Any:
    """An OpenSSL echo server (until close_notify) that reports ``session_reused``."""

    def handler(conn: socket.socket) -> dict[str, Any]:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(recv_until_eof(tls))
            reused = tls.session_reused
            tls.unwrap()
            return {"reused": reused}

    return handler


def test_openssl_client_resumes_with_our_ticket(pki: TestPKI) -> None:
    ring = TicketKeyRing([bytes(32)])
    ctx = openssl_client_context(pki)
    session = None
    outcomes = []
    for _ in range(2):
        with (
            serve_once(lambda conn: _our_echo_server(conn, pki, ring)) as (port, result),
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
            ctx.wrap_socket(raw, server_hostname=SERVER_NAME, session=session) as tls,
        ):
            tls.sendall(MESSAGE)
            assert tls.recv(len(MESSAGE)) == MESSAGE
            outcomes.append(tls.session_reused)
            session = tls.session
            tls.unwrap()
        assert "error" not in result, result
        assert result["value"] is outcomes[-1]
    assert outcomes == [False, True]


def _our_echo_server(conn: socket.socket, pki: TestPKI, ring: TicketKeyRing) -> bool:
    server = BlockingTLS(conn, TLSConnection(server_config(pki, ticket_keys=ring), is_client=False))
    server.handshake()
    server.send(server.recv_exactly(len(MESSAGE)))
    server.recv_until_close()
    server.close()
    return server.conn.handshake.resumed
