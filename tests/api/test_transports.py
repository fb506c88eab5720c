"""Transport-specific behaviour of the blocking API: premature close on TCP, ``auto``, interop."""

from __future__ import annotations

import selectors
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import mstls
from tests.certs import get_pki
from tests.interop.aioquic_client import ClientHandle, run_aioquic_client
from tests.interop.aioquic_peer import AioquicServer

from .helpers import TIMEOUT, client_config, server

pytestmark = pytest.mark.network


@contextmanager
def tcp_relay(target: int, cut_after: int, *, reset: bool) -> Iterator[int]:
    """A TCP relay to ``127.0.0.1:target`` that, once ``cut_after`` bytes went from the
    server to the client, closes the client side without TLS close_notify: a FIN, or an
    RST (``reset``)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)

    def run() -> None:
        # One thread and a selector: closing a socket another thread is blocked in
        # would delay the RST until that thread returns.
        client, _ = listener.accept()
        upstream = socket.create_connection(("127.0.0.1", target), timeout=TIMEOUT)
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        forwarded = 0
        deadline = time.monotonic() + TIMEOUT * 3
        try:
            while time.monotonic() < deadline:
                for key, _ in selector.select(0.1):
                    src, dst = key.fileobj, key.data
                    data = src.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    if src is upstream:
                        room = cut_after - forwarded
                        client.sendall(data[:room])
                        forwarded += min(room, len(data))
                        if forwarded >= cut_after:
                            cut(client)
                            return
                    else:
                        dst.sendall(data)
        except OSError:
            pass
        finally:
            selector.close()
            upstream.close()

    def cut(client: socket.socket) -> None:
        if reset:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
        else:
            client.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def source(stream: mstls.Stream) -> None:
    """Send a lot after the first byte arrives."""
    try:
        stream.read(timeout=TIMEOUT)
        for _ in range(100):
            stream.write(b"p" * 65536, timeout=TIMEOUT)
    except mstls.Error:
        pass


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_tcp_truncation_is_a_premature_close_never_end_of_data(reset: bool) -> None:
    with (
        server(source, transport="tcp") as (listener, _),
        tcp_relay(listener.address[1], cut_after=200_000, reset=reset) as port,
    ):
        conn = mstls.connect("127.0.0.1", port, client_config(), transport="tcp", timeout=TIMEOUT)
        stream = conn.open_stream()
        stream.write(b"go")
        received = 0
        with pytest.raises(mstls.ConnectionTerminated) as info:
            for _ in range(10_000):
                data = stream.read(timeout=TIMEOUT)
                assert data != b"", "a truncation must never look like a clean end"
                received += len(data)
    if reset:
        assert info.value.by_peer
    else:
        assert isinstance(info.value, mstls.PrematureClose)
        assert 0 < received <= info.value.bytes_received <= 200_000


def test_auto_prefers_quic_when_it_answers() -> None:
    with server() as (listener, _):
        conn = mstls.connect(
            "127.0.0.1", listener.address[1], client_config(), transport="auto", timeout=TIMEOUT
        )
        assert conn.transport == "udp"
        conn.close()


def test_auto_falls_back_to_tcp_when_udp_is_dropped() -> None:
    with server(transport="tcp") as (listener, _):
        start = time.monotonic()
        conn = mstls.connect(
            "127.0.0.1",
            listener.address[1],
            client_config(fallback_delay=0.3),
            transport="auto",
            timeout=TIMEOUT,
        )
        assert conn.transport == "tcp"
        assert time.monotonic() - start < 5.0
        with conn.open_stream() as stream:
            stream.write(b"over tcp")
            stream.conclude()
            assert stream.read_exactly(8, timeout=TIMEOUT) == b"over tcp"
        conn.close()


def test_blocking_client_to_aioquic_server() -> None:
    files = get_pki().files("server")
    with AioquicServer(files.cert, files.key) as peer:
        conn = mstls.connect("127.0.0.1", peer.port, client_config(), timeout=TIMEOUT)
        with conn.open_stream() as stream:
            stream.write(b"echo\nblocking meets aioquic")
            stream.conclude()
            assert stream.read_exactly(22, timeout=TIMEOUT) == b"blocking meets aioquic"
            assert stream.read(timeout=TIMEOUT) == b""
        conn.close()


def command_echo(stream: mstls.Stream) -> None:
    """The ``echo`` command of the mstls-test protocol, for aioquic clients."""
    try:
        line = b""
        while not line.endswith(b"\n"):
            line += stream.read(1, timeout=TIMEOUT)
        while data := stream.read(timeout=TIMEOUT):
            stream.write(data)
        stream.conclude()
    except mstls.Error:
        pass


def test_aioquic_client_to_blocking_listener() -> None:
    async def scenario(h: ClientHandle) -> bytes:
        return await h.echo(b"aioquic meets blocking")

    with server(command_echo) as (listener, _):
        cafile = get_pki().files("ca").cert
        port = listener.address[1]
        assert run_aioquic_client("127.0.0.1", port, cafile, scenario) == b"aioquic meets blocking"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_update_config_serves_a_new_certificate_to_new_handshakes(transport: str) -> None:
    pki = get_pki()
    with server(transport=transport) as (listener, _):
        port = listener.address[1]
        before = mstls.connect("127.0.0.1", port, client_config(), transport=transport)
        assert before.peer_certificate.dns_names == ("localhost",)
        rsa = pki.files("server_rsa")
        listener.update_config(mstls.ServerConfig(rsa.cert, rsa.key, alpn="mstls-test"))
        after = mstls.connect("127.0.0.1", port, client_config(), transport=transport)
        assert after.peer_certificate.spki_sha256 != before.peer_certificate.spki_sha256
        with before.open_stream() as stream:  # the established connection is untouched
            stream.write(b"still here")
            stream.conclude()
            assert stream.read_exactly(10, timeout=TIMEOUT) == b"still here"
        before.close()
        after.close()
