"""Shared pieces for tests of the public blocking API: configs and a threaded echo server."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import mstls
from tests.certs import get_pki

ALPN = "mstls-test"
TIMEOUT = 10.0


def client_config(**kw: Any) -> mstls.ClientConfig:
    pki = get_pki()
    return mstls.ClientConfig(alpn=ALPN, cafile=pki.files("ca").cert, server_name="localhost", **kw)


def server_config(**kw: Any) -> mstls.ServerConfig:
    files = get_pki().files("server")
    return mstls.ServerConfig(certfile=files.cert, keyfile=files.key, alpn=ALPN, **kw)


def echo_stream(stream: mstls.Stream) -> None:
    """Echo until FIN, then FIN; errors end the stream quietly."""
    try:
        while data := stream.read(65536, timeout=TIMEOUT):
            stream.write(data, timeout=TIMEOUT)
        stream.conclude()
    except mstls.Error:
        pass


def serve_connection(conn: mstls.Connection, handler: Callable[[mstls.Stream], None]) -> None:
    threads = []
    try:
        while True:
            stream = conn.accept_stream(timeout=TIMEOUT)
            thread = threading.Thread(target=handler, args=(stream,), daemon=True)
            thread.start()
            threads.append(thread)
    except mstls.Error:
        pass
    for thread in threads:
        thread.join(TIMEOUT)


@contextmanager
def server(
    handler: Callable[[mstls.Stream], None] = echo_stream,
    *,
    transport: str = "udp",
    on_connection: Callable[[mstls.Connection], None] | None = None,
    port: int = 0,
    **config: Any,
) -> Iterator[tuple[mstls.Listener, list[mstls.Connection]]]:
    """A listener whose connections run ``handler`` on every accepted stream."""
    listener = mstls.listen("127.0.0.1", port, server_config(**config), transport=transport)
    connections: list[mstls.Connection] = []
    stop = threading.Event()

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn = listener.accept(timeout=0.2)
            except mstls.Error:
                continue
            connections.append(conn)
            target = on_connection or (lambda c: serve_connection(c, handler))
            threading.Thread(target=target, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield listener, connections
    finally:
        stop.set()
        thread.join(TIMEOUT)
        listener.close()
