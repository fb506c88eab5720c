"""A self-contained round trip on 127.0.0.1: generated development certificates, our
TLS 1.3 server and client over TCP, an echo, and a clean close.

Run with ``python -m mstls.demo`` (the README's first command does).  It uses only
the engine layers built so far; the daemon (``mstlsd``) takes its place as the main
job once it exists.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import threading
from pathlib import Path

from .devcerts import write_dev_pki
from .tls.certificates import load_cert_chain, load_roots
from .tls.config import TLSConfig
from .tls.tcp import ApplicationData, CloseNotifyReceived, TLSConnection

__all__ = ["main"]

ALPN = "mstls-demo"
TIMEOUT = 10.0
MAX_READS = 1000


def _pump_until(sock: socket.socket, conn: TLSConnection, done: threading.Event) -> bytes:
    """Blocking loop: feed TCP bytes to ``conn``, send its output, collect app data."""
    received = bytearray()
    for _ in range(MAX_READS):
        if done.is_set():
            break
        data = sock.recv(65536)
        if not data:
            conn.receive_eof()
            break
        conn.receive_data(data)
        sock.sendall(conn.data_to_send())
        while (event := conn.next_event()) is not None:
            if isinstance(event, ApplicationData):
                received += event.data
            elif isinstance(event, CloseNotifyReceived):
                done.set()
    return bytes(received)


def _serve(listener: socket.socket, config: TLSConfig) -> None:
    sock, _ = listener.accept()
    with sock:
        sock.settimeout(TIMEOUT)
        conn = TLSConnection(config, is_client=False)
        conn.start()
        data = _pump_until(sock, conn, threading.Event())
        conn.send(data)
        conn.close()
        sock.sendall(conn.data_to_send())


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="mstls-demo-") as tmp:
        paths = write_dev_pki(Path(tmp))
        chain, key = load_cert_chain(paths.server_cert, paths.server_key)
        server_config = TLSConfig(alpn_protocols=[ALPN], certificate_chain=chain, private_key=key)
        client_config = TLSConfig(
            alpn_protocols=[ALPN],
            server_name="localhost",
            trusted_roots=load_roots(cafile=paths.ca_cert, use_system=False),
        )
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(TIMEOUT)
        port = listener.getsockname()[1]
        thread = threading.Thread(target=_serve, args=(listener, server_config), daemon=True)
        thread.start()
        message = b"hello over TLS 1.3 from mstls\n"
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            conn = TLSConnection(client_config, is_client=True)
            conn.start()
            sock.sendall(conn.data_to_send())
            conn.send(message)
            conn.close()  # close_notify after the data: the server echoes, then closes
            done = threading.Event()
            echoed = _pump_until(sock, conn, done)
            engine = conn.handshake
        thread.join(TIMEOUT)
        listener.close()
        print(f"connected to 127.0.0.1:{port} over TCP with TLS 1.3")
        print(f"  cipher suite : {engine.cipher_suite.name if engine.cipher_suite else '?'}")
        print(f"  key exchange : group {engine.group:#06x}")
        print(f"  ALPN         : {engine.alpn_protocol}")
        print(f"  server       : {engine.peer.subject if engine.peer else '?'}")
        print(f"  echoed       : {echoed!r}")
        ok = echoed == message
        print("round trip OK" if ok else "round trip FAILED")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
