"""TLS message codecs under hypothesis: round trips, and untrusted bytes raise only our errors."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mstls.codes import AlertDescription
from mstls.exceptions import Error, TLSError
from mstls.tls import extensions as ext
from mstls.tls.config import TLSConfig
from mstls.tls.engine import Epoch, SendHandshake
from mstls.tls.messages import (
    MAX_BUFFERED_HANDSHAKE_BYTES,
    Certificate,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    Finished,
    HandshakeReader,
    KeyUpdate,
    NewSessionTicket,
    ServerHello,
    frame_message,
)
from mstls.tls.server import ServerHandshake
from mstls.tls.states import HandshakeState
from mstls.tls.tcp import TLSConnection
from tests.certs import get_pki

from . import rfc8448

u16 = st.integers(0, 0xFFFF)
small = st.binary(max_size=40)
extensions = st.dictionaries(u16, small, max_size=6)

MESSAGES = st.one_of(
    st.builds(
        ClientHello,
        random=st.binary(min_size=32, max_size=32),
        legacy_session_id=st.binary(max_size=32),
        cipher_suites=st.lists(u16, min_size=1, max_size=8),
        extensions=extensions,
        legacy_compression_methods=st.binary(min_size=1, max_size=3),
    ),
    st.builds(
        ServerHello,
        random=st.binary(min_size=32, max_size=32),
        legacy_session_id_echo=st.binary(max_size=32),
        cipher_suite=u16,
        extensions=extensions,
        legacy_compression_method=st.integers(0, 255),
    ),
    st.builds(EncryptedExtensions, extensions=extensions),
    st.builds(CertificateRequest, context=small, extensions=extensions),
    st.builds(
        Certificate,
        context=small,
        entries=st.lists(st.tuples(st.binary(min_size=1, max_size=60), extensions), max_size=3),
    ),
    st.builds(CertificateVerify, algorithm=u16, signature=st.binary(min_size=1, max_size=80)),
    st.builds(Finished, verify_data=st.binary(min_size=32, max_size=48)),
    st.builds(
        NewSessionTicket,
        lifetime=st.integers(0, 2**32 - 1),
        age_add=st.integers(0, 2**32 - 1),
        nonce=small,
        ticket=st.binary(min_size=1, max_size=60),
        extensions=extensions,
    ),
    st.builds(KeyUpdate, request_update=st.booleans()),
)
PARSERS: list[Any] = [
    ClientHello,
    ServerHello,
    EncryptedExtensions,
    CertificateRequest,
    Certificate,
    CertificateVerify,
    Finished,
    NewSessionTicket,
    KeyUpdate,
]
EXTENSION_PARSERS: list[Any] = [
    ext.parse_server_name,
    ext.parse_alpn,
    ext.parse_supported_versions_client,
    ext.parse_key_share_client,
    ext.parse_key_share_server,
    ext.parse_key_share_hello_retry,
    lambda d: ext.parse_uint16_list(d, "list"),
    lambda d: ext.parse_uint8_list(d, "list"),
]


@settings(max_examples=400, deadline=None)
@given(MESSAGES)
def test_round_trip(message: Any) -> None:
    body = message.encode()
    assert type(message).parse(body) == message
    reader = HandshakeReader()
    reader.feed(frame_message(message.msg_type, body))
    msg_type, parsed_body, _ = reader.next_message()  # type: ignore[misc]
    assert msg_type == message.msg_type and parsed_body == body


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_parsers_raise_only_tls_errors(data: bytes) -> None:
    for parser in PARSERS:
        with contextlib.suppress(TLSError):
            parser.parse(data)
    for parse in EXTENSION_PARSERS:
        with contextlib.suppress(TLSError):
            parse(data)


@settings(max_examples=300, deadline=None)
@given(MESSAGES, st.data())
def test_truncations_and_mutations(message: Any, data: st.DataObject) -> None:
    body = bytearray(message.encode())
    cut = data.draw(st.integers(0, len(body)))
    for candidate in (bytes(body[:cut]), _mutate(body, data)):
        with contextlib.suppress(TLSError):
            type(message).parse(candidate)


def _mutate(body: bytearray, data: st.DataObject) -> bytes:
    if not body:
        return b""
    out = bytearray(body)
    for _ in range(data.draw(st.integers(1, 4))):
        out[data.draw(st.integers(0, len(out) - 1))] = data.draw(st.integers(0, 255))
    return bytes(out)


def _server_engine() -> ServerHandshake:
    pki = get_pki()
    return ServerHandshake(
        TLSConfig(
            alpn_protocols=["x"],
            certificate_chain=[pki.server.certificate],
            private_key=pki.server.private_key,
        )
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_server_engine_survives_mutated_client_hellos(data: st.DataObject) -> None:
    """Mutations of a real ClientHello: the server answers or fails with a TLS alert."""
    hello = bytearray(rfc8448.CLIENT_HELLO)
    for _ in range(data.draw(st.integers(1, 6))):
        hello[data.draw(st.integers(0, len(hello) - 1))] = data.draw(st.integers(0, 255))
    engine = _server_engine()
    try:
        engine.receive(Epoch.INITIAL, bytes(hello))
    except TLSError:
        return
    output = engine.pull_output()
    if not output:  # the length field grew: the server waits for the rest
        assert engine.state is HandshakeState.START
        return
    # Accepted: the server answered with a ServerHello (or a HelloRetryRequest).
    assert isinstance(output[0], SendHandshake) and output[0].data[0] == 2


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_tls_connection_survives_random_bytes(data: bytes) -> None:
    """Random TCP bytes into a server connection: only mstls errors, never a crash."""
    pki = get_pki()
    conn = TLSConnection(
        TLSConfig(
            alpn_protocols=["x"],
            certificate_chain=[pki.server.certificate],
            private_key=pki.server.private_key,
        ),
        is_client=False,
    )
    conn.start()
    try:
        conn.receive_data(data)
        conn.receive_eof()
    except Error:
        pass


def test_incomplete_message_buffering_is_bounded() -> None:
    """A peer trickling a maximal message: we hold at most the limit, never more;
    one byte more in the declared length is refused as soon as the header is in."""
    size = MAX_BUFFERED_HANDSHAKE_BYTES - 4
    reader = HandshakeReader()
    reader.feed(bytes((1,)) + size.to_bytes(3, "big"))
    fed = 0
    while fed < size:
        chunk = min(4096, size - fed)
        assert reader.next_message() is None
        reader.feed(b"\x00" * chunk)
        fed += chunk
        assert reader.pending <= MAX_BUFFERED_HANDSHAKE_BYTES
    message = reader.next_message()
    assert message is not None and len(message[1]) == size and reader.pending == 0
    with pytest.raises(TLSError) as info:
        reader.feed(bytes((1,)) + (size + 1).to_bytes(3, "big"))
    assert info.value.alert == AlertDescription.decode_error
