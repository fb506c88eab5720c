"""Our TLS 1.3 engine against OpenSSL (Python's ``ssl``) over 127.0.0.1 TCP, both roles."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from mstls.codes import AlertDescription
from mstls.exceptions import CertificateError, PeerAlert, PrematureClose, TLSError
from mstls.tls.cipher_suites import CipherSuite
from mstls.tls.config import TLSConfig
from mstls.tls.groups import NamedGroup
from mstls.tls.tcp import TLSConnection
from tests.certs import CLIENT_NAME, SERVER_NAME, TestPKI

from .driver import ALPN, BlockingTLS, client_config, server_config

pytestmark = pytest.mark.network

TIMEOUT = 10.0
#: OpenSSL's names for our suites, as ``SSLSocket.cipher()`` reports them.
OPENSSL_NAMES = {
    CipherSuite.AES_128_GCM_SHA256: "TLS_AES_128_GCM_SHA256",
    CipherSuite.AES_256_GCM_SHA384: "TLS_AES_256_GCM_SHA384",
    CipherSuite.CHACHA20_POLY1305_SHA256: "TLS_CHACHA20_POLY1305_SHA256",
}
PAYLOAD = bytes(range(256)) * 400  # 100 KiB: several full records


def openssl_server_context(pki: TestPKI, cert: str = "server") -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    files = pki.files(cert)
    ctx.load_cert_chain(files.cert, files.key)
    ctx.set_alpn_protocols(ALPN)
    return ctx


def openssl_client_context(pki: TestPKI) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.files("ca").cert))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(ALPN)
    return ctx


def recv_until_eof(sock: ssl.SSLSocket) -> bytes:
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


@contextmanager
def serve_once(handler: Callable[[socket.socket], Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Accept one TCP connection on 127.0.0.1 in a thread and run ``handler`` on it."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(TIMEOUT)
            with conn:
                result["value"] = handler(conn)
        except BaseException as exc:  # reported to the test below
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], result
    finally:
        thread.join(TIMEOUT)
        listener.close()
    assert not thread.is_alive(), "server thread hung"


def openssl_echo(ctx: ssl.SSLContext) -> Callable[[socket.socket], Any]:
    """An OpenSSL server that echoes everything until close_notify, then closes cleanly."""

    def handler(conn: socket.socket) -> Any:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            data = recv_until_eof(tls)
            tls.sendall(data)
            info = {
                "data": data,
                "cipher": tls.cipher(),
                "alpn": tls.selected_alpn_protocol(),
                "peer": tls.getpeercert(),
            }
            tls.unwrap()
            return info

    return handler


def our_client(port: int, config: TLSConfig) -> BlockingTLS:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return BlockingTLS(sock, TLSConnection(config, is_client=True))


def round_trip(client: BlockingTLS) -> bytes:
    client.handshake()
    client.send(PAYLOAD)
    client.close()
    echoed = client.recv_until_close()
    client.conn.receive_eof()  # must not raise: the peer sent close_notify
    client.sock.close()
    return echoed


# -- our client, OpenSSL server ------------------------------------------------------------
@pytest.mark.parametrize("suite", list(CipherSuite))
def test_our_client_openssl_server(pki: TestPKI, suite: CipherSuite) -> None:
    with serve_once(openssl_echo(openssl_server_context(pki))) as (port, result):
        client = our_client(port, client_config(pki, cipher_suites=[suite]))
        assert round_trip(client) == PAYLOAD
        assert client.conn.alpn_protocol == "mstls-test"
        assert client.conn.handshake.peer is not None
    assert "error" not in result, result
    assert result["value"]["data"] == PAYLOAD
    assert result["value"]["cipher"][0] == OPENSSL_NAMES[suite]
    assert result["value"]["alpn"] == "mstls-test"


def test_our_client_recovers_through_hello_retry_request(pki: TestPKI) -> None:
    """OpenSSL 3.0 has no X25519MLKEM768: offering only that share forces an HRR."""
    with serve_once(openssl_echo(openssl_server_context(pki))) as (port, result):
        config = client_config(pki, key_share_groups=[NamedGroup.X25519MLKEM768])
        client = our_client(port, config)
        assert round_trip(client) == PAYLOAD
        engine = client.conn.handshake
        assert engine._hello_retried  # type: ignore[attr-defined]
        assert engine.group == NamedGroup.x25519
    assert "error" not in result, result


def test_our_client_certificate_to_openssl(pki: TestPKI) -> None:
    ctx = openssl_server_context(pki)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(pki.files("ca").cert))
    pair = pki.client
    with serve_once(openssl_echo(ctx)) as (port, result):
        config = client_config(
            pki, certificate_chain=[pair.certificate], private_key=pair.private_key
        )
        assert round_trip(our_client(port, config)) == PAYLOAD
    assert "error" not in result, result
    subject = dict(x[0] for x in result["value"]["peer"]["subject"])
    assert subject["commonName"] == CLIENT_NAME


def test_openssl_requires_a_certificate_we_do_not_have(pki: TestPKI) -> None:
    ctx = openssl_server_context(pki)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(pki.files("ca").cert))
    with serve_once(openssl_echo(ctx)) as (port, result):
        client = our_client(port, client_config(pki))
        client.handshake()  # TLS 1.3: the client finishes before the server judges
        with pytest.raises(PeerAlert) as info:
            client.recv_until_close()
        client.sock.close()
    assert info.value.alert == AlertDescription.certificate_required
    assert isinstance(result.get("error"), ssl.SSLError)


@pytest.mark.parametrize(
    ("cert", "server_name", "alert", "message", "openssl_says"),
    [
        ("server", "b.example", AlertDescription.bad_certificate,
         "does not match 'b.example'", "BAD_CERTIFICATE"),
        ("server_expired", SERVER_NAME, AlertDescription.certificate_expired,
         "certificate expired on", "CERTIFICATE_EXPIRED"),
        ("server_other_ca", SERVER_NAME, AlertDescription.unknown_ca,
         "unknown CA", "UNKNOWN_CA"),
    ],
)  # fmt: skip
def test_our_client_rejects_bad_certificates(
    pki: TestPKI, cert: str, server_name: str, alert: int, message: str, openssl_says: str
) -> None:
    with serve_once(openssl_echo(openssl_server_context(pki, cert))) as (port, result):
        client = our_client(port, client_config(pki, server_name=server_name))
        with pytest.raises(CertificateError) as info:
            client.handshake()
        client.sock.close()
    assert info.value.alert == alert
    assert message in info.value.reason
    # OpenSSL received our alert and names it.
    assert openssl_says in str(result.get("error")).upper().replace(" ", "_")


def test_our_client_requires_alpn(pki: TestPKI) -> None:
    with serve_once(openssl_echo(openssl_server_context(pki))) as (port, result):
        client = our_client(port, client_config(pki, alpn_protocols=["not-offered"]))
        with pytest.raises(TLSError) as info:
            client.handshake()
        client.sock.close()
    assert info.value.alert == AlertDescription.no_application_protocol
    assert "NO_APPLICATION_PROTOCOL" in str(result.get("error")).upper().replace(" ", "_")


def test_openssl_server_closing_without_close_notify_is_premature(pki: TestPKI) -> None:
    ctx = openssl_server_context(pki)

    def handler(conn: socket.socket) -> None:
        tls = ctx.wrap_socket(conn, server_side=True)
        tls.sendall(b"truncated")
        tls.close()  # no SSL_shutdown: no close_notify, just a TCP FIN

    with serve_once(handler) as (port, result):
        client = our_client(port, client_config(pki))
        client.handshake()
        with pytest.raises(PrematureClose) as info:
            client.recv_until_close()
        client.sock.close()
    assert "error" not in result, result
    assert client.received == bytearray(b"truncated")
    assert info.value.bytes_received == len(b"truncated")


# -- OpenSSL client, our server ----------------------------------------------------------
def our_echo_server(config: TLSConfig) -> Callable[[socket.socket], Any]:
    """Our server: echo each chunk as it arrives, until the peer's close_notify."""

    def handler(conn: socket.socket) -> Any:
        server = BlockingTLS(conn, TLSConnection(config, is_client=False))
        try:
            return echo(server)
        except TLSError:
            server.abort()  # alert out, FIN, drain: no RST can overtake the alert
            raise

    def echo(server: BlockingTLS) -> Any:
        server.handshake()
        total = 0
        while not server.closed_by_peer:
            server._read_once()
            if server.received:
                total += len(server.received)
                server.send(bytes(server.received))
                server.received.clear()
        server.close()
        return {"echoed": total, "peer": server.conn.handshake.peer}

    return handler


def openssl_echo_client(port: int, ctx: ssl.SSLContext) -> tuple[bytes, tuple[Any, ...]]:
    """Send PAYLOAD, read the echo back, then close with close_notify both ways."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    with ctx.wrap_socket(raw, server_hostname=SERVER_NAME) as tls:
        info = (tls.cipher(), tls.selected_alpn_protocol(), tls.version())
        tls.sendall(PAYLOAD)
        received = bytearray()
        while len(received) < len(PAYLOAD):
            chunk = tls.recv(65536)
            if not chunk:
                break
            received += chunk
        tls.unwrap()
    return bytes(received), info


@pytest.mark.parametrize("suite", list(CipherSuite))
def test_openssl_client_our_server(pki: TestPKI, suite: CipherSuite) -> None:
    with serve_once(our_echo_server(server_config(pki, cipher_suites=[suite]))) as (port, result):
        echoed, (cipher, alpn, version) = openssl_echo_client(port, openssl_client_context(pki))
    assert "error" not in result, result
    assert echoed == PAYLOAD and result["value"]["echoed"] == len(PAYLOAD)
    assert cipher[0] == OPENSSL_NAMES[suite]
    assert (alpn, version) == ("mstls-test", "TLSv1.3")


def test_our_server_sends_hello_retry_request_to_openssl(pki: TestPKI) -> None:
    """OpenSSL's client sends an x25519 share; a server that wants P-256 asks again."""
    config = server_config(pki, groups=[NamedGroup.secp256r1, NamedGroup.x25519])
    seen: dict[str, Any] = {}

    def handler(conn: socket.socket) -> Any:
        out = our_echo_server(config)(conn)
        return out

    original = TLSConnection.__init__

    def spy(self: TLSConnection, *args: Any, **kw: Any) -> None:
        original(self, *args, **kw)
        seen["conn"] = self

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(TLSConnection, "__init__", spy)
        with serve_once(handler) as (port, result):
            echoed, _ = openssl_echo_client(port, openssl_client_context(pki))
    assert "error" not in result, result
    assert echoed == PAYLOAD
    engine = seen["conn"].handshake
    assert engine._retry_group == NamedGroup.secp256r1
    assert engine.group == NamedGroup.secp256r1


def test_openssl_client_certificate_to_our_server(pki: TestPKI) -> None:
    config = server_config(pki, require_client_certificate=True)
    ctx = openssl_client_context(pki)
    files = pki.files("client")
    ctx.load_cert_chain(files.cert, files.key)
    with serve_once(our_echo_server(config)) as (port, result):
        echoed, _ = openssl_echo_client(port, ctx)
    assert "error" not in result, result
    assert echoed == PAYLOAD
    assert CLIENT_NAME in result["value"]["peer"].dns_names


@pytest.mark.parametrize(
    ("server_kw", "client_cert", "alert", "openssl_says"),
    [
        ({"require_client_certificate": True}, None, AlertDescription.certificate_required,
         "CERTIFICATE_REQUIRED"),
        ({"require_client_certificate": True}, "client_other_ca", AlertDescription.unknown_ca,
         "UNKNOWN_CA"),
        ({"alpn_protocols": ["something-else"]}, None, AlertDescription.no_application_protocol,
         "NO_APPLICATION_PROTOCOL"),
    ],
)  # fmt: skip
def test_our_server_refuses_openssl_client(
    pki: TestPKI, server_kw: dict[str, Any], client_cert: str | None, alert: int, openssl_says: str
) -> None:
    ctx = openssl_client_context(pki)
    if client_cert:
        files = pki.files(client_cert)
        ctx.load_cert_chain(files.cert, files.key)
    with (
        serve_once(our_echo_server(server_config(pki, **server_kw))) as (port, result),
        pytest.raises(ssl.SSLError) as info,
    ):
        openssl_echo_client(port, ctx)
    error = result.get("error")
    assert isinstance(error, TLSError) and error.alert == alert, error
    assert openssl_says in str(info.value).upper().replace(" ", "_")


def test_our_server_closing_without_close_notify_is_an_openssl_eof_error(pki: TestPKI) -> None:
    def handler(conn: socket.socket) -> None:
        server = BlockingTLS(conn, TLSConnection(server_config(pki), is_client=False))
        server.handshake()
        server.send(b"partial")
        conn.shutdown(socket.SHUT_RDWR)  # TCP FIN without close_notify

    with serve_once(handler) as (port, result):
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        ctx = openssl_client_context(pki)
        # suppress_ragged_eofs=False: otherwise Python reports the truncation as a clean end.
        with ctx.wrap_socket(raw, server_hostname=SERVER_NAME, suppress_ragged_eofs=False) as tls:
            assert tls.recv(100) == b"partial"
            with pytest.raises(ssl.SSLEOFError):
                tls.recv(100)
    assert "error" not in result, result
