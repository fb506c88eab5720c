"""RFC 8448 §3 "Simple 1-RTT Handshake" reproduced by our key schedule and codecs."""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import x25519

from mstls.tls.cipher_suites import CipherSuite
from mstls.tls.key_schedule import KeySchedule, traffic_key_iv
from mstls.tls.messages import (
    Certificate,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    Finished,
    HandshakeReader,
    ServerHello,
    frame_message,
)
from mstls.tls.signatures import certificate_verify_content, verify

from . import rfc8448 as v


def run_schedule() -> dict[str, bytes]:
    """Walk the whole trace through :class:`KeySchedule`, collecting each value."""
    ks = KeySchedule(CipherSuite.AES_128_GCM_SHA256)
    out = {"early": ks.secret}
    ks.update_transcript(v.CLIENT_HELLO)
    ks.update_transcript(v.SERVER_HELLO)
    ks.extract(v.SHARED_SECRET)
    out["handshake"] = ks.secret
    out["c_hs"] = ks.derive(b"c hs traffic")
    out["s_hs"] = ks.derive(b"s hs traffic")
    for message in (v.ENCRYPTED_EXTENSIONS, v.CERTIFICATE, v.CERTIFICATE_VERIFY):
        ks.update_transcript(message)
    out["server_finished"] = ks.finished(out["s_hs"])
    ks.update_transcript(v.SERVER_FINISHED)
    out["client_finished"] = ks.finished(out["c_hs"])
    ks.extract(None)
    out["master"] = ks.secret
    out["c_ap"] = ks.derive(b"c ap traffic")
    out["s_ap"] = ks.derive(b"s ap traffic")
    out["exp"] = ks.derive(b"exp master")
    return out


def test_shared_secret_from_the_trace_keys() -> None:
    client = x25519.X25519PrivateKey.from_private_bytes(v.CLIENT_X25519_PRIVATE)
    peer = x25519.X25519PublicKey.from_public_bytes(v.SERVER_X25519_PUBLIC)
    assert client.exchange(peer) == v.SHARED_SECRET


def test_key_schedule_secrets() -> None:
    out = run_schedule()
    assert out["early"] == v.EARLY_SECRET
    assert out["handshake"] == v.HANDSHAKE_SECRET
    assert out["c_hs"] == v.CLIENT_HS_TRAFFIC
    assert out["s_hs"] == v.SERVER_HS_TRAFFIC
    assert out["master"] == v.MASTER_SECRET
    assert out["c_ap"] == v.CLIENT_AP_TRAFFIC
    assert out["s_ap"] == v.SERVER_AP_TRAFFIC
    assert out["exp"] == v.EXPORTER_MASTER


def test_finished_values() -> None:
    out = run_schedule()
    assert frame_message(20, out["server_finished"]) == v.SERVER_FINISHED
    assert frame_message(20, out["client_finished"]) == v.CLIENT_FINISHED


def test_traffic_keys() -> None:
    suite = CipherSuite.AES_128_GCM_SHA256
    assert traffic_key_iv(suite, v.SERVER_HS_TRAFFIC) == (v.SERVER_HS_KEY, v.SERVER_HS_IV)
    assert traffic_key_iv(suite, v.SERVER_AP_TRAFFIC) == (v.SERVER_AP_KEY, v.SERVER_AP_IV)
    assert traffic_key_iv(suite, v.CLIENT_AP_TRAFFIC) == (v.CLIENT_AP_KEY, v.CLIENT_AP_IV)


def test_message_codecs_round_trip_the_trace() -> None:
    codecs = [
        (v.CLIENT_HELLO, ClientHello),
        (v.SERVER_HELLO, ServerHello),
        (v.ENCRYPTED_EXTENSIONS, EncryptedExtensions),
        (v.CERTIFICATE, Certificate),
        (v.CERTIFICATE_VERIFY, CertificateVerify),
        (v.SERVER_FINISHED, Finished),
        (v.CLIENT_FINISHED, Finished),
    ]
    for raw, cls in codecs:
        reader = HandshakeReader()
        reader.feed(raw)
        msg_type, body, framed = reader.next_message()  # type: ignore[misc]
        assert framed == raw
        message = cls.parse(body)  # type: ignore[attr-defined]
        assert frame_message(msg_type, message.encode()) == raw


def test_parsed_fields() -> None:
    hello = ClientHello.parse(v.CLIENT_HELLO[4:])
    assert hello.cipher_suites == [0x1301, 0x1303, 0x1302]
    assert 0x33 in hello.extensions and 0x2B in hello.extensions
    server = ServerHello.parse(v.SERVER_HELLO[4:])
    assert server.cipher_suite == 0x1301 and not server.is_hello_retry_request


def test_certificate_verify_signature_of_the_trace() -> None:
    """The trace's RSA-PSS CertificateVerify verifies with our signature code."""
    der = Certificate.parse(v.CERTIFICATE[4:]).entries[0][0]
    cert = x509.load_der_x509_certificate(der)
    transcript = hashlib.sha256(
        v.CLIENT_HELLO + v.SERVER_HELLO + v.ENCRYPTED_EXTENSIONS + v.CERTIFICATE
    ).digest()
    message = CertificateVerify.parse(v.CERTIFICATE_VERIFY[4:])
    content = certificate_verify_content(transcript, is_server=True)
    verify(cert.public_key(), message.algorithm, message.signature, content)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
