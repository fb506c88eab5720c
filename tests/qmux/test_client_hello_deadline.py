"""The server's ClientHello deadline (issue 11, TLS slowloris): a new QMux connection
must deliver its whole ClientHello within ``client_hello_timeout`` (2 s by default),
far below ``handshake_timeout``, which applies once the ClientHello is in.  Virtual
clock, no sockets."""

from __future__ import annotations

import pytest

from mstls.core.events import ConnectionTerminatedEvent
from mstls.exceptions import ConfigurationError
from mstls.qmux.config import DEFAULT_CLIENT_HELLO_TIMEOUT
from mstls.qmux.connection import QMuxConnection
from tests.api.helpers import server_config as api_server_config
from tests.qmux.pair import client_config, server_config

START = 100.0


def _hello() -> bytes:
    client = QMuxConnection(client_config(), is_client=True, now=START)
    client.connect(START)
    hello = client.data_to_send(START)
    assert len(hello) > 200
    return hello


def _reason(conn: QMuxConnection) -> str:
    while (event := conn.next_event()) is not None:
        if isinstance(event, ConnectionTerminatedEvent):
            return event.reason
    raise AssertionError("no termination event")


def test_a_client_hello_at_one_byte_per_second_fails_at_the_hello_deadline() -> None:
    server = QMuxConnection(server_config(), is_client=False, now=START)
    assert server.get_timer() == START + DEFAULT_CLIENT_HELLO_TIMEOUT
    hello, now = _hello(), START
    for byte in hello:
        timer = server.get_timer()
        assert timer is not None
        if now >= timer:
            server.handle_timer(now)
            break
        server.receive_data(bytes([byte]), now)
        now += 1.0
    assert server.is_terminated
    assert now == START + DEFAULT_CLIENT_HELLO_TIMEOUT
    assert "no complete ClientHello within 2 s" in _reason(server)


def test_once_the_hello_is_in_the_handshake_timeout_applies() -> None:
    config = server_config(handshake_timeout=10.0)
    server = QMuxConnection(config, is_client=False, now=START)
    hello = _hello()
    server.receive_data(hello[:100], START)
    server.receive_data(hello[100:], START + 1.5)  # complete before the 2 s deadline
    assert server.get_timer() == START + 10.0
    server.handle_timer(START + 2.5)
    assert not server.is_terminated


def test_no_separate_hello_deadline_when_the_handshake_timeout_is_shorter() -> None:
    server = QMuxConnection(server_config(handshake_timeout=1.0), is_client=False, now=START)
    assert server.get_timer() == START + 1.0
    client = QMuxConnection(client_config(), is_client=True, now=START)
    assert client.get_timer() == START + client.config.handshake_timeout  # servers only


def test_server_config_carries_and_checks_the_setting() -> None:
    assert api_server_config().qmux_config().client_hello_timeout == DEFAULT_CLIENT_HELLO_TIMEOUT
    assert api_server_config(client_hello_timeout=0.5).qmux_config().client_hello_timeout == 0.5
    for bad in (0, -1.0, True, "soon"):
        with pytest.raises(ConfigurationError, match="client_hello_timeout"):
            api_server_config(client_hello_timeout=bad).qmux_config()
