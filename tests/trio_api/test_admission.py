"""Per-source handshake rate on real sockets (127.0.0.1): trio and blocking listeners."""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

import pytest
import trio

import mstls
import mstls.trio
from mstls.core.admission import RATE_LIMITED
from mstls.exceptions import ConfigurationError, HandshakeRefused
from tests.certs import get_pki

pytestmark = pytest.mark.network

ALPN = "mstls-test"
TIMEOUT = 10.0
#: So slow that nothing refills during a test.
SLOW_RATE = 0.001
#: What a refused TCP client sees: the reset arrives during the TCP connect
#: (ConnectionIOError, never a bare OSError) or at the first TLS read/write.
TCP_REFUSAL = (mstls.ConnectionTerminated, mstls.ConnectionIOError)


def client_config() -> mstls.ClientConfig:
    return mstls.ClientConfig(alpn=ALPN, cafile=get_pki().files("ca").cert, server_name="localhost")


def server_config(**kw: Any) -> mstls.ServerConfig:
    files = get_pki().files("server")
    return mstls.ServerConfig(certfile=files.cert, keyfile=files.key, alpn=ALPN, **kw)


async def refusals(listener: mstls.trio.Listener) -> list[tuple[Any, HandshakeRefused]]:
    """Wait for the listener to record refusals; those it recorded (other failures,
    such as clients that close right after their handshake, are left out)."""
    with trio.fail_after(TIMEOUT):
        while True:
            found = [
                (address, error)
                for address, error in listener.pop_handshake_failures()
                if isinstance(error, HandshakeRefused)
            ]
            if found:
                return found
            await trio.sleep(0.01)


async def test_tcp_connections_beyond_the_burst_are_refused() -> None:
    config = server_config(handshake_rate_per_source=SLOW_RATE, handshake_burst_per_source=2)
    listener = await mstls.trio.listen("127.0.0.1", 0, config, transport="tcp")
    port = listener.address[1]
    async with listener:
        for _ in range(2):
            conn = await mstls.trio.connect(
                "127.0.0.1", port, client_config(), transport="tcp", timeout=TIMEOUT
            )
            await conn.aclose()
        with pytest.raises(TCP_REFUSAL):  # reset before any TLS byte
            await mstls.trio.connect(
                "127.0.0.1", port, client_config(), transport="tcp", timeout=TIMEOUT
            )
        [(address, error)] = await refusals(listener)
        assert address[0] == "127.0.0.1"
        assert error.cause == RATE_LIMITED
        assert listener._driver.refused_handshakes == 1  # type: ignore[attr-defined]


async def test_tcp_bucket_refills() -> None:
    config = server_config(handshake_rate_per_source=20.0, handshake_burst_per_source=1)
    async with await mstls.trio.listen("127.0.0.1", 0, config, transport="tcp") as listener:
        port = listener.address[1]
        for _ in range(3):
            conn = await mstls.trio.connect(
                "127.0.0.1", port, client_config(), transport="tcp", timeout=TIMEOUT
            )
            await conn.aclose()
            await trio.sleep(0.06)  # > 1/20 s: one token back each time
        assert listener._driver.refused_handshakes == 0  # type: ignore[attr-defined]


async def test_udp_initials_beyond_the_burst_are_refused() -> None:
    config = server_config(handshake_rate_per_source=SLOW_RATE, handshake_burst_per_source=1)
    async with await mstls.trio.listen("127.0.0.1", 0, config) as listener:
        port = listener.address[1]
        conn = await mstls.trio.connect("127.0.0.1", port, client_config(), timeout=TIMEOUT)
        await conn.aclose()
        with pytest.raises(mstls.Timeout):  # dropped: the client only retransmits
            await mstls.trio.connect("127.0.0.1", port, client_config(), timeout=1.0)
        for address, error in await refusals(listener):
            assert address[0] == "127.0.0.1"
            assert error.cause == RATE_LIMITED
        assert listener.dropped_initials == 0


async def test_update_config_carries_the_rate() -> None:
    listener = await mstls.trio.listen("127.0.0.1", 0, server_config(), transport="tcp")
    async with listener:
        listener.update_config(
            server_config(handshake_rate_per_source=SLOW_RATE, handshake_burst_per_source=1)
        )
        port = listener.address[1]
        conn = await mstls.trio.connect(
            "127.0.0.1", port, client_config(), transport="tcp", timeout=TIMEOUT
        )
        await conn.aclose()
        with pytest.raises(TCP_REFUSAL):
            await mstls.trio.connect(
                "127.0.0.1", port, client_config(), transport="tcp", timeout=TIMEOUT
            )
        assert await refusals(listener)


def test_blocking_tcp_listener_refuses_beyond_the_burst() -> None:
    config = server_config(handshake_rate_per_source=SLOW_RATE, handshake_burst_per_source=1)
    listener = mstls.listen("127.0.0.1", 0, config, transport="tcp")
    try:
        port = listener.address[1]
        first = mstls.connect("127.0.0.1", port, client_config(), transport="tcp", timeout=TIMEOUT)
        accepted = listener.accept(timeout=TIMEOUT)
        with pytest.raises(mstls.Error):
            mstls.connect("127.0.0.1", port, client_config(), transport="tcp", timeout=TIMEOUT)
        assert listener.refused_handshakes == 1
        first.close()
        accepted.close()
    finally:
        listener.close()


def test_blocking_udp_listener_refuses_beyond_the_burst() -> None:
    config = server_config(handshake_rate_per_source=SLOW_RATE, handshake_burst_per_source=1)
    listener = mstls.listen("127.0.0.1", 0, config)
    try:
        port = listener.address[1]
        first = mstls.connect("127.0.0.1", port, client_config(), timeout=TIMEOUT)
        with pytest.raises(mstls.Timeout):
            mstls.connect("127.0.0.1", port, client_config(), timeout=1.0)
        assert listener.refused_handshakes >= 1
        first.close()
    finally:
        listener.close()


def test_refused_socket_is_reset_without_tls() -> None:
    """The refused client reads a reset (or EOF), never a TLS record."""
    config = server_config(handshake_rate_per_source=SLOW_RATE, handshake_burst_per_source=1)
    listener = mstls.listen("127.0.0.1", 0, config, transport="tcp")
    try:
        port = listener.address[1]
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT):
            pass  # takes the one token
        deadline = time.monotonic() + TIMEOUT
        while listener.refused_handshakes == 0 and time.monotonic() < deadline:
            # The reset may arrive at connect, at send or at the read: all refusals.
            with (
                contextlib.suppress(ConnectionResetError, BrokenPipeError),
                socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock,
            ):
                sock.sendall(b"\x16\x03\x01\x00\x05hello")
                assert sock.recv(100) == b""
        assert listener.refused_handshakes >= 1
    finally:
        listener.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"handshake_rate_per_source": 0}, "handshake_rate_per_source"),
        ({"handshake_rate_per_source": 1.0, "handshake_burst_per_source": 0}, "burst"),
        ({"retry_threshold": -2}, "retry_threshold"),
    ],
)
async def test_bad_admission_settings_fail_listen(options: dict[str, Any], message: str) -> None:
    for transport in ("udp", "tcp"):
        with pytest.raises(ConfigurationError, match=message):
            await mstls.trio.listen("127.0.0.1", 0, server_config(**options), transport=transport)
