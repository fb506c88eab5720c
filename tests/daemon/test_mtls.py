"""Mutual TLS and allow-lists: refused clients never reach the backend."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from cryptography.x509.oid import ExtendedKeyUsageOID

import mstls
import mstls.trio
from mstls.devcerts import issue_certificate, make_client_cert
from mstlsd.preamble import StreamCode
from tests.certs import TestPKI
from tests.daemon.support import client_config, config_from, exchange, port_of, running_daemon

pytestmark = pytest.mark.network


class CountingBackend:
    """A TCP echo server that counts the connections it accepted."""

    def __init__(self) -> None:
        self.accepted = 0
        self.port = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self.handle, listeners)

    async def handle(self, stream: trio.SocketStream) -> None:
        self.accepted += 1
        async with stream:
            while data := await stream.receive_some():
                await stream.send_all(data)


def write_cert(tmp_path: Path, pki: TestPKI, name: str) -> tuple[Path, Path]:
    cert_key = make_client_cert(pki.ca, name)
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert.write_bytes(cert_key.cert_pem())
    key.write_bytes(cert_key.key_pem())
    return cert, key


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_refused_clients_never_reach_the_backend(
    tmp_path: Path, pki: TestPKI, transport: str
) -> None:
    backend = CountingBackend()
    async with trio.open_nursery() as nursery:
        await nursery.start(backend.serve)
        server, ca = pki.files("server"), pki.files("ca").cert
        config = config_from(
            f"""
[[listeners]]
transport = "{transport}"
port = 0
[tls]
certfile = "{server.cert}"
keyfile = "{server.key}"
client_cafile = "{ca}"
require_client_cert = true
[services.db]
type = "forward"
target = "127.0.0.1:{backend.port}"
allow = ["dns:client.example"]
""",
            tmp_path,
        )
        good = pki.files("client")
        other_ca = pki.files("client_other_ca")
        intruder_cert, intruder_key = write_cert(tmp_path, pki, "intruder.example")
        async with running_daemon(config, tmp_path / "state") as daemon:
            port = port_of(daemon, transport)

            async def attempt(**identity: Path) -> bytes:
                cfg = client_config(ca, **identity)
                with trio.fail_after(10):
                    conn = await mstls.trio.connect(
                        "127.0.0.1", port, cfg, transport=transport, timeout=5
                    )
                    async with conn:
                        return await exchange(conn, "db", b"secret query")

            # No certificate, or one from a CA the daemon does not trust: no connection.
            for identity in ({}, {"certfile": other_ca.cert, "keyfile": other_ca.key}):
                with pytest.raises(mstls.Error):
                    await attempt(**identity)
            # A good certificate whose identity is not on the allow-list: stream refused.
            with pytest.raises(mstls.StreamReset) as info:
                await attempt(certfile=intruder_cert, keyfile=intruder_key)
            assert info.value.code == StreamCode.NOT_AUTHORISED
            assert backend.accepted == 0
            # The allowed identity gets through.
            assert await attempt(certfile=good.cert, keyfile=good.key) == b"secret query"
            assert backend.accepted == 1
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_client_certificate_without_subject_alt_name_fails_the_handshake(
    tmp_path: Path, pki: TestPKI, transport: str
) -> None:
    """Decided for issue 13 (documented in mstlsd.identity): ``cn:NAME`` does not make a
    CN-only certificate acceptable; the client policy rejects it before any rule."""
    server, ca = pki.files("server"), pki.files("ca").cert
    config = config_from(
        f"""
[[listeners]]
transport = "{transport}"
port = 0
[tls]
certfile = "{server.cert}"
keyfile = "{server.key}"
client_cafile = "{ca}"
require_client_cert = true
[services.echo]
type = "echo"
allow = ["cn:cn-only"]
""",
        tmp_path,
    )
    cn_only = issue_certificate(
        pki.ca, common_name="cn-only", extended_key_usage=[ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    assert not [
        e for e in cn_only.certificate.extensions if e.oid.dotted_string == "2.5.29.17"
    ]  # no subjectAltName
    cert, key = tmp_path / "cn-only.pem", tmp_path / "cn-only.key"
    cert.write_bytes(cn_only.cert_pem())
    key.write_bytes(cn_only.key_pem())
    async with running_daemon(config, tmp_path / "state") as daemon:
        cfg = client_config(ca, certfile=cert, keyfile=key)
        with trio.fail_after(10):
            with pytest.raises(mstls.Error) as info:
                conn = await mstls.trio.connect(
                    "127.0.0.1", port_of(daemon, transport), cfg, transport=transport, timeout=5
                )
                async with conn:
                    await exchange(conn, "echo", b"hello")
    assert not isinstance(info.value, mstls.StreamReset), info.value  # not the allow-list
