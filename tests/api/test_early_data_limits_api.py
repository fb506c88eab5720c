"""0-RTT through the blocking API when the server's limits changed since the ticket
(RFC 9000 §7.4.1, RFC 9221 §3; issue 12), over UDP/QUIC and TCP/QMux.

The tickets come from one listener; the client resumes against a second one with
the same ticket keys and lower limits: the PSK resumes, the early data is rejected
and re-sent by mstls, and the request is answered.  With the same settings the early
data is accepted.
"""

from __future__ import annotations

from typing import Any

import pytest

import mstls
from tests.api.helpers import TIMEOUT, client_config, server
from tests.api.test_early_data_api import _wait

pytestmark = pytest.mark.network

REQUEST = b"GET /replay-safe"
MAX_EARLY = 4096
KEY = bytes(range(1, 33))


def _store_tickets(transport: str, store: mstls.TicketStore, **settings: Any) -> None:
    config = client_config(ticket_store=store, early_data=True)
    with (
        server(
            transport=transport, max_early_data=MAX_EARLY, session_ticket_keys=[KEY], **settings
        ) as (listener, _),
        mstls.connect(
            "127.0.0.1", listener.address[1], config, transport=transport, timeout=TIMEOUT
        ) as conn,
    ):
        stream = conn.open_stream(timeout=TIMEOUT)
        stream.write(b"x", timeout=TIMEOUT)
        stream.conclude()
        assert stream.read_exactly(1, timeout=TIMEOUT) == b"x"
        assert _wait(lambda: len(store) >= 1)


def _early_request(transport: str, store: mstls.TicketStore, **settings: Any) -> tuple[Any, ...]:
    """Resume with a replay-safe request; (resumed, accepted, server's view of it)."""
    config = client_config(ticket_store=store, early_data=True)
    with (
        server(
            transport=transport, max_early_data=MAX_EARLY, session_ticket_keys=[KEY], **settings
        ) as (listener, connections),
        mstls.connect(
            "127.0.0.1",
            listener.address[1],
            config,
            transport=transport,
            timeout=TIMEOUT,
            lazy=True,
        ) as conn,
    ):
        stream = conn.open_stream(early=True, timeout=TIMEOUT)
        stream.write(REQUEST, timeout=TIMEOUT)
        stream.conclude()
        assert stream.read_exactly(len(REQUEST), timeout=TIMEOUT) == REQUEST
        assert _wait(lambda: len(connections) == 1)
        return conn.resumed, conn.early_data_accepted, connections[0].early_data_accepted


@pytest.mark.parametrize(
    ("first", "second", "accepted"),
    [
        ({}, {}, True),
        ({}, {"extra": {"initial_max_data": 1 << 18}}, False),
        ({}, {"extra": {"max_streams_bidi": 16}}, False),
        ({"extra": {"initial_max_data": 1 << 18}}, {}, True),  # raised since: accepted
    ],
    ids=["same", "lower_max_data", "lower_max_streams_bidi", "higher"],
)
def test_blocking_udp_0rtt_against_changed_limits(
    first: dict[str, Any], second: dict[str, Any], accepted: bool
) -> None:
    store = mstls.MemoryTicketStore()
    _store_tickets("udp", store, **first)
    resumed, client_view, server_view = _early_request("udp", store, **second)
    assert resumed and client_view is accepted and server_view is accepted


@pytest.mark.parametrize(
    ("first", "second", "accepted"),
    [
        ({"datagrams": True}, {"datagrams": True}, True),
        ({"datagrams": True}, {"datagrams": False}, False),  # max_datagram_frame_size lowered
        ({"datagrams": False}, {"datagrams": True}, True),
    ],
    ids=["same", "datagrams_off", "datagrams_on"],
)
def test_blocking_tcp_0rtt_against_changed_limits(
    first: dict[str, Any], second: dict[str, Any], accepted: bool
) -> None:
    store = mstls.MemoryTicketStore()
    _store_tickets("tcp", store, **first)
    resumed, client_view, server_view = _early_request("tcp", store, **second)
    assert resumed and client_view is accepted and server_view is accepted


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(
    ("first", "second", "accepted"),
    [(b"routes v1", b"routes v1", True), (b"routes v1", b"routes v2", False)],
    ids=["same_context", "changed_context"],
)
def test_blocking_0rtt_against_a_changed_early_data_context(
    transport: str, first: bytes, second: bytes, accepted: bool
) -> None:
    """``ServerConfig.early_data_context`` changed since the ticket: the PSK resumes,
    the early request is rejected, re-sent after the handshake and answered."""
    store = mstls.MemoryTicketStore()
    _store_tickets(transport, store, early_data_context=first)
    resumed, client_view, server_view = _early_request(transport, store, early_data_context=second)
    assert resumed and client_view is accepted and server_view is accepted


def test_early_data_context_must_be_bytes() -> None:
    config = mstls.ServerConfig(
        certfile="unused",
        keyfile=None,
        alpn="x",
        early_data_context="v1",  # type: ignore[arg-type]
    )
    with pytest.raises(mstls.ConfigurationError, match="early_data_context: must be bytes"):
        config.tls_config()
