"""Issue 11 over the blocking API: streams opened and closed one after another on one
connection leave nothing behind in the connection's waiters (127.0.0.1 only)."""

from __future__ import annotations

import gc
from typing import Any

import pytest

import mstls

from .helpers import TIMEOUT, client_config, server

TRANSPORTS = ["udp", "tcp"]
#: Sequential streams per connection.
STREAMS = 200


def _waiters(conn: mstls.Connection) -> Any:
    return conn._core.waiters


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sequential_streams_leave_no_waiters_behind(transport: str) -> None:
    with server(transport=transport) as (listener, server_conns):
        conn = mstls.connect(
            "127.0.0.1", listener.address[1], client_config(), transport=transport, timeout=TIMEOUT
        )
        with conn:
            for _ in range(STREAMS):
                with conn.open_stream() as stream:
                    stream.write(b"x" * 1024)
                    stream.conclude()
                    assert stream.read_exactly(1024, timeout=TIMEOUT) == b"x" * 1024
                    assert stream.read(timeout=TIMEOUT) == b""
            del stream
            gc.collect()
            assert len(_waiters(conn)._streams) < 4
            assert server_conns
            assert len(_waiters(server_conns[0])._streams) < 4
