"""Our client against our server, in memory: the handshake, its options and its failures."""

from __future__ import annotations

import os
from typing import Any

import pytest

import mstls
from mstls.codes import AlertDescription
from mstls.exceptions import CertificateError, HandshakeError, PeerAlert, PrematureClose, TLSError
from mstls.tls.certificates import MAX_CERTIFICATE_CHAIN_LENGTH, spki_sha256
from mstls.tls.cipher_suites import CipherSuite
from mstls.tls.config import TLSConfig
from mstls.tls.engine import HandshakeCompleted
from mstls.tls.groups import NamedGroup
from mstls.tls.messages import MAX_HANDSHAKE_MESSAGE_SIZE
from mstls.tls.record import MAX_CIPHERTEXT
from mstls.tls.tcp import ApplicationData, CloseNotifyReceived, TLSConnection
from tests.certs import CLIENT_NAME, SERVER_NAME, TestPKI

from .driver import client_config, drain, memory_pair, pump, server_config


def handshake(client_cfg: TLSConfig, server_cfg: TLSConfig) -> tuple[TLSConnection, TLSConnection]:
    client, server = memory_pair(client_cfg, server_cfg)
    pump(client, server)
    return client, server


def completed(conn: TLSConnection) -> HandshakeCompleted:
    events = [e for e in drain(conn) if isinstance(e, HandshakeCompleted)]
    assert len(events) == 1
    return events[0]


@pytest.mark.parametrize("suite", list(CipherSuite))
@pytest.mark.parametrize("cert", ["server", "server_ed25519", "server_rsa"])
def test_handshake_and_data(pki: TestPKI, suite: CipherSuite, cert: str) -> None:
    client, server = handshake(
        client_config(pki, cipher_suites=[suite]), server_config(pki, cert=cert)
    )
    done = completed(client)
    assert done.cipher_suite == suite and done.alpn_protocol == "mstls-test"
    assert done.group == NamedGroup.X25519MLKEM768
    assert done.peer is not None and SERVER_NAME in done.peer.dns_names
    assert completed(server).server_name == SERVER_NAME
    client.send(b"ping" * 10000)
    pump(client, server)
    data = b"".join(e.data for e in drain(server) if isinstance(e, ApplicationData))
    assert data == b"ping" * 10000
    server.send(b"pong")
    server.close()
    pump(client, server)
    events = drain(client)
    assert ApplicationData(b"pong") in events and CloseNotifyReceived() in events
    client.receive_eof()  # clean: close_notify came first


@pytest.mark.parametrize("group", [NamedGroup.x25519, NamedGroup.secp256r1])
def test_classical_groups(pki: TestPKI, group: NamedGroup) -> None:
    client, _ = handshake(client_config(pki, groups=[group]), server_config(pki))
    assert completed(client).group == group


def test_server_sends_hello_retry_for_its_preferred_group(pki: TestPKI) -> None:
    client, server = handshake(
        client_config(pki, key_share_groups=[NamedGroup.x25519]),
        server_config(pki, groups=[NamedGroup.secp256r1, NamedGroup.x25519]),
    )
    assert completed(client).group == NamedGroup.secp256r1
    assert server.handshake._retry_group == NamedGroup.secp256r1  # type: ignore[attr-defined]


def test_mutual_tls(pki: TestPKI) -> None:
    client_pair = pki.client
    client, server = handshake(
        client_config(
            pki, certificate_chain=[client_pair.certificate], private_key=client_pair.private_key
        ),
        server_config(pki, require_client_certificate=True),
    )
    peer = completed(server).peer
    assert peer is not None and CLIENT_NAME in peer.dns_names
    completed(client)


def test_missing_client_certificate(pki: TestPKI) -> None:
    client, server = memory_pair(
        client_config(pki), server_config(pki, require_client_certificate=True)
    )
    with pytest.raises(CertificateError) as info:
        pump(client, server)
    assert info.value.alert == AlertDescription.certificate_required
    assert "client certificate required" in info.value.reason
    with pytest.raises(PeerAlert) as peer_info:
        client.receive_data(server.data_to_send())
    assert peer_info.value.alert == AlertDescription.certificate_required


def expect_client_failure(
    client: TLSConnection, server: TLSConnection, alert: AlertDescription, text: str
) -> TLSError:
    with pytest.raises(TLSError) as info:
        pump(client, server)
    assert info.value.alert == alert, info.value
    assert text in info.value.reason
    # The alert went out: the server sees it as a PeerAlert with the same code.
    with pytest.raises(PeerAlert) as peer:
        server.receive_data(client.data_to_send())
    assert peer.value.alert == alert
    return info.value


def test_wrong_host_name(pki: TestPKI) -> None:
    client, server = memory_pair(client_config(pki, server_name="b.example"), server_config(pki))
    error = expect_client_failure(
        client, server, AlertDescription.bad_certificate, "does not match 'b.example'"
    )
    assert isinstance(error, CertificateError)
    assert "certificate for 'localhost" in error.reason


def test_expired_certificate(pki: TestPKI) -> None:
    client, server = memory_pair(client_config(pki), server_config(pki, cert="server_expired"))
    expect_client_failure(
        client, server, AlertDescription.certificate_expired, "certificate expired on 2024-01-01"
    )


def test_unknown_ca(pki: TestPKI) -> None:
    client, server = memory_pair(client_config(pki), server_config(pki, cert="server_other_ca"))
    expect_client_failure(client, server, AlertDescription.unknown_ca, "unknown CA")


def test_pinned_key(pki: TestPKI) -> None:
    pin = spki_sha256(pki.server_other_ca.certificate)
    client, _ = handshake(
        client_config(pki, pinned_sha256=[pin], trusted_roots=[]),
        server_config(pki, cert="server_other_ca"),
    )
    completed(client)
    client, server = memory_pair(
        client_config(pki, pinned_sha256=["00" * 32]), server_config(pki, cert="server")
    )
    expect_client_failure(client, server, AlertDescription.bad_certificate, "is not pinned")


def test_no_common_alpn_server_side(pki: TestPKI) -> None:
    client, server = memory_pair(client_config(pki, alpn_protocols=["other"]), server_config(pki))
    with pytest.raises(HandshakeError) as info:
        pump(client, server)
    assert info.value.alert == AlertDescription.no_application_protocol
    assert "no common application protocol" in info.value.reason


def test_no_common_cipher_suite(pki: TestPKI) -> None:
    client, server = memory_pair(
        client_config(pki, cipher_suites=[CipherSuite.AES_128_GCM_SHA256]),
        server_config(pki, cipher_suites=[CipherSuite.CHACHA20_POLY1305_SHA256]),
    )
    with pytest.raises(HandshakeError) as info:
        pump(client, server)
    assert info.value.alert == AlertDescription.handshake_failure
    assert info.value.reason == "peer offered no common cipher suite"


#: The tampering tests replace the engine's ``pull_output`` on one instance; the compiled
#: TLSConnection calls the compiled engine's method natively, so no patch reaches it.
tampering = pytest.mark.skipif(
    mstls.compiled,
    reason="patches the TLS engine's pull_output, which the compiled TLSConnection calls "
    "natively (no patch reaches it); the pure build's run of this test tampers",
)


def tamper_plaintext_message(
    pki: TestPKI, msg_type: int, *, server_side: bool
) -> tuple[TLSConnection, TLSConnection]:
    """A pair whose engine output has one byte of message ``msg_type`` flipped
    before record protection (an attacker who could break the record layer)."""
    client, server = memory_pair(client_config(pki), server_config(pki))
    victim = server if server_side else client
    engine = victim.handshake
    original = engine.pull_output

    def tampered() -> list[Any]:
        out = original()
        for i, item in enumerate(out):
            data = getattr(item, "data", None)
            if not isinstance(data, bytes):
                continue
            pos = 0
            buf = bytearray(data)
            while pos + 4 <= len(buf):
                length = int.from_bytes(buf[pos + 1 : pos + 4], "big")
                if buf[pos] == msg_type:
                    buf[pos + 4 + length - 1] ^= 0x01
                    out[i] = type(item)(item.epoch, bytes(buf))  # type: ignore[attr-defined]
                pos += 4 + length
        return out

    engine.pull_output = tampered  # type: ignore[method-assign]
    return client, server


@tampering
def test_tampered_server_finished(pki: TestPKI) -> None:
    client, server = tamper_plaintext_message(pki, 20, server_side=True)
    expect_client_failure(
        client, server, AlertDescription.decrypt_error, "Finished verify_data does not match"
    )


@tampering
def test_tampered_certificate_verify(pki: TestPKI) -> None:
    client, server = tamper_plaintext_message(pki, 15, server_side=True)
    expect_client_failure(
        client, server, AlertDescription.decrypt_error, "CertificateVerify signature"
    )


@tampering
def test_tampered_client_finished(pki: TestPKI) -> None:
    client, server = tamper_plaintext_message(pki, 20, server_side=False)
    with pytest.raises(HandshakeError) as info:
        pump(client, server)
    assert info.value.alert == AlertDescription.decrypt_error
    assert "client Finished" in info.value.reason


def test_tampered_record_is_bad_record_mac(pki: TestPKI) -> None:
    client, server = handshake(client_config(pki), server_config(pki))
    client.send(b"hello")
    data = bytearray(client.data_to_send())
    data[-1] ^= 1
    with pytest.raises(TLSError) as info:
        server.receive_data(bytes(data))
    assert info.value.alert == AlertDescription.bad_record_mac


def test_record_over_size_limit(pki: TestPKI) -> None:
    client, server = handshake(client_config(pki), server_config(pki))
    header = b"\x17\x03\x03" + (MAX_CIPHERTEXT + 1).to_bytes(2, "big")
    with pytest.raises(TLSError) as info:
        server.receive_data(header)
    assert info.value.alert == AlertDescription.record_overflow
    # the fatal alert is queued for the peer
    with pytest.raises(PeerAlert) as peer:
        client.receive_data(server.data_to_send())
    assert peer.value.alert == AlertDescription.record_overflow


def test_handshake_message_over_size_limit(pki: TestPKI) -> None:
    server = TLSConnection(server_config(pki), is_client=False)
    server.start()
    too_big = MAX_HANDSHAKE_MESSAGE_SIZE + 1
    record = b"\x16\x03\x01\x00\x04" + b"\x01" + too_big.to_bytes(3, "big")
    with pytest.raises(TLSError) as info:
        server.receive_data(record)
    assert info.value.alert == AlertDescription.decode_error
    assert "exceeds the limit" in info.value.reason


def test_certificate_chain_over_length_limit(pki: TestPKI) -> None:
    leaf = pki.server
    chain = [leaf.certificate] + [pki.ca.certificate] * MAX_CERTIFICATE_CHAIN_LENGTH
    client, server = memory_pair(
        client_config(pki),
        server_config(pki, certificate_chain=chain),
    )
    expect_client_failure(client, server, AlertDescription.bad_certificate, "exceeds the limit")


def test_premature_close_is_not_end_of_data(pki: TestPKI) -> None:
    client, server = handshake(client_config(pki), server_config(pki))
    server.send(b"partial")
    pump(client, server)
    assert ApplicationData(b"partial") in drain(client)
    with pytest.raises(PrematureClose) as info:
        client.receive_eof()
    assert info.value.bytes_received == len(b"partial")
    assert "without TLS close_notify" in info.value.reason


def test_key_update_both_directions(pki: TestPKI) -> None:
    client, server = handshake(client_config(pki), server_config(pki))
    for sender, receiver in ((client, server), (server, client)):
        drain(receiver)
        sender.key_update(request_update=True)
        sender.send(b"after update")
        pump(client, server)
        assert ApplicationData(b"after update") in drain(receiver)
        receiver.send(b"reply")
        pump(client, server)
        assert ApplicationData(b"reply") in drain(sender)


def test_keylog(pki: TestPKI, tmp_path: Any) -> None:
    path = tmp_path / "keys.log"
    client, _ = handshake(client_config(pki, keylog=str(path)), server_config(pki))
    labels = [line.split()[0] for line in path.read_text().splitlines()]
    assert labels == [
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_TRAFFIC_SECRET_0",
        "EXPORTER_SECRET",
    ]
    random_hex = client.handshake.client_random.hex()
    assert all(line.split()[1] == random_hex for line in path.read_text().splitlines())


def test_keylog_from_environment(pki: TestPKI, tmp_path: Any, monkeypatch: Any) -> None:
    path = tmp_path / "env.log"
    monkeypatch.setitem(os.environ, "SSLKEYLOGFILE", str(path))
    handshake(client_config(pki), server_config(pki))
    assert len(path.read_text().splitlines()) == 10  # both ends log five lines


def test_data_and_close_before_the_handshake_keep_their_order(pki: TestPKI) -> None:
    """send() then close() before keys exist: both wait, and go out in order."""
    client, server = memory_pair(client_config(pki), server_config(pki))
    client.send(b"early")
    client.close()
    pump(client, server)
    events = drain(server)
    assert events[-2:] == [ApplicationData(b"early"), CloseNotifyReceived()]
    with pytest.raises(TLSError):
        client.send(b"too late")
