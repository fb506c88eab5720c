"""`mstls tunnel` → mstlsd `forward` → an HTTP server: concurrency, big bodies, half-close,
refusal."""

from __future__ import annotations

import concurrent.futures
import hashlib
import http.client
import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.support import ROOT, daemon_process, env_for, free_port

pytestmark = pytest.mark.network

#: The large download, checked with SHA-256: the issue's 100 MiB (the whole test takes
#: 4.5-15 s on this 2-core machine, by load); MSTLS_TUNNEL_MIB=N changes it.
BIG = int(os.environ.get("MSTLS_TUNNEL_MIB", "100")) << 20
REQUESTS = 50


def body_for(path: str) -> bytes:
    if path == "/big":
        return hashlib.sha256(b"seed").digest() * (BIG // 32)
    return f"body of {path}\n".encode() * 100


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # the server closes after each answer: a TCP FIN

    def do_GET(self) -> None:
        body = body_for(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        # Reads until the client's half-close, then answers with the SHA-256.
        data = self.rfile.read()
        digest = hashlib.sha256(data).hexdigest().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(digest)))
        self.end_headers()
        self.wfile.write(digest)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def backend() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def start_tunnel(port: int, service: str, state_dir: Path) -> tuple[subprocess.Popen[str], int]:
    local = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mstlsd.cli",
            "tunnel",
            "--listen",
            f"127.0.0.1:{local}",
            "--to",
            f"127.0.0.1:{port}",
            "--service",
            service,
            "--transport",
            "udp",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env_for(state_dir),
        cwd=ROOT,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "tunnel listening" in line:
            return proc, local
    raise AssertionError(f"tunnel did not start (status {proc.wait(5)})")


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def post_half_closed(port: int, data: bytes) -> bytes:
    """POST without Content-Length: the body ends with our TCP half-close."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"POST /sum HTTP/1.0\r\nHost: x\r\n\r\n" + data)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer.split(b"\r\n\r\n", 1)[1]


def test_http_through_the_tunnel(tmp_path: Path, backend: int) -> None:
    config = tmp_path / "forward.toml"
    closed = free_port()
    config.write_text(
        f"""
[[listeners]]
transport = "udp"
port = 4433
[services.web]
type = "forward"
target = "127.0.0.1:{backend}"
[services.down]
type = "forward"
target = "127.0.0.1:{closed}"
"""
    )
    port = free_port()
    with daemon_process(["--config", str(config), "--listen-port", str(port)], tmp_path) as daemon:
        tunnel, local = start_tunnel(port, "web", tmp_path)
        try:
            paths = [f"/item/{i}" for i in range(REQUESTS)]
            with concurrent.futures.ThreadPoolExecutor(REQUESTS) as pool:
                results = list(pool.map(lambda p: get(local, p), paths))
            assert results == [(200, body_for(p)) for p in paths]
            status, big = get(local, "/big")
            assert status == 200
            assert hashlib.sha256(big).digest() == hashlib.sha256(body_for("/big")).digest()
            upload = bytes(range(256)) * 4000
            assert post_half_closed(local, upload) == hashlib.sha256(upload).hexdigest().encode()
        finally:
            tunnel.terminate()
            tunnel.wait(10)
        # All of it went over ONE connection.
        assert daemon.log().count("connection accepted") == 1
        # A backend that refuses: the stream is reset, the local TCP connection too.
        down, down_port = start_tunnel(port, "down", tmp_path)
        try:
            # The reset may reach the local client at its connect, send or recv.
            with (
                pytest.raises(ConnectionResetError),
                socket.create_connection(("127.0.0.1", down_port), timeout=10) as sock,
            ):
                sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
                while sock.recv(1024):
                    pass
        finally:
            down.terminate()
            assert down.stderr is not None
            assert "0x102 BACKEND_REFUSED" in down.stderr.read()
            down.wait(10)
        assert daemon.stop() == 0
