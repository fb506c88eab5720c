"""Work a QUIC server does once per handshake, counted (issue 15; no timing).

A server handshake used to derive the Initial keys twice (once to authenticate
the first Initial before keeping state, once in the new connection), decode the
client's transport parameters twice and encode its own twice.  These tests count
those calls while only the server endpoint runs, so a regression shows as a
number, not as a slower benchmark.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

import mstls
import mstls.quic.crypto as quic_crypto
import mstls.quic.handshake as quic_handshake
from mstls.codes import AlertDescription
from mstls.exceptions import TLSError
from mstls.quic.connection import QuicConnection
from mstls.quic.crypto import (
    INITIAL_KEY_CACHE_SIZE,
    forget_initial_keys,
    initial_protection,
    initial_receive_protection,
)
from mstls.quic.endpoint import ServerEndpoint
from mstls.tls.extensions import HandshakeType, parse_uint16_list
from mstls.tls.messages import Certificate, ClientHello, certificate_message
from mstls.tls.signatures import SignatureScheme, schemes_for_key
from mstls.wire.control_frames import NewConnectionIdFrame, encode_new_connection_id
from mstls.wire.frames import encode_frame
from tests.certs import get_pki
from tests.quic.pair import CLIENT_ADDR, SERVER_ADDR, client_config, server_config

#: Exchange rounds after which a handshake that has not completed is a failure.
MAX_ROUNDS = 20


class ServerCounts:
    """Counts calls of wrapped functions made while the server side runs."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.serving = False

    def wrap(self, monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> None:
        original: Callable[..., Any] = getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            if self.serving:
                self.counts[name] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)

    def server_call(self, function: Callable[..., Any], *args: Any) -> Any:
        self.serving = True
        try:
            return function(*args)
        finally:
            self.serving = False


def _handshake(counts: ServerCounts) -> tuple[QuicConnection, QuicConnection]:
    """One in-memory handshake, our client against a fresh server endpoint."""
    now = 1000.0
    endpoint = ServerEndpoint(server_config())
    client = QuicConnection(client_config(), is_client=True, now=now, peer_address=SERVER_ADDR)
    client.connect(now)
    forget_initial_keys()  # the client's derivation is not the server's
    for _ in range(MAX_ROUNDS):
        to_server = client.datagrams_to_send(now)
        now += 0.001
        for datagram in to_server:
            counts.server_call(endpoint.receive_datagram, datagram, CLIENT_ADDR, now)
        to_client = counts.server_call(endpoint.datagrams_to_send, now)
        now += 0.001
        for datagram, _ in to_client:
            client.receive_datagram(datagram, SERVER_ADDR, now)
        if not to_server and not to_client:
            break
    server = endpoint.connections[0]
    assert client.handshake_complete and server.handshake_complete
    return client, server


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerCounts]:
    counter = ServerCounts()
    counter.wrap(monkeypatch, quic_crypto, "initial_secrets")
    counter.wrap(monkeypatch, quic_handshake, "decode_transport_parameters")
    counter.wrap(monkeypatch, quic_handshake, "encode_transport_parameters")
    yield counter


@pytest.mark.skipif(
    mstls.compiled,
    reason="initial_secrets is called from inside its own module, a call mypyc binds at "
    "compile time (no patch reaches it); the pure build's run of this test counts it",
)
def test_server_derives_initial_keys_once_per_connection(counts: ServerCounts) -> None:
    """RFC 9001 §5.2: the endpoint's check of the first Initial and the new
    connection share one derivation."""
    _handshake(counts)
    assert counts.counts["initial_secrets"] == 1


def test_server_decodes_and_encodes_transport_parameters_once(counts: ServerCounts) -> None:
    """RFC 9000 §7.4: the client's parameters are decoded once (version choice and
    their application share it), ours encoded once (after the version is chosen)."""
    client, server = _handshake(counts)
    assert counts.counts["decode_transport_parameters"] == 1
    assert counts.counts["encode_transport_parameters"] == 1
    # And they are the right ones, both ways.
    assert server.peer_params is not None and client.peer_params is not None
    assert server.peer_params.initial_source_connection_id == client.host_cid
    assert client.peer_params.original_destination_connection_id == client.original_dcid
    assert client.peer_params.version_information is not None
    assert client.peer_params.version_information.chosen_version == server.version


def test_initial_keys_cache_gives_fresh_objects_with_the_same_keys() -> None:
    """Each connection gets its own PacketProtection (counters, header protection
    context); only the derived values are shared."""
    dcid = os.urandom(8)
    send_a, receive_a = initial_protection(dcid, is_client=False)
    send_b, receive_b = initial_protection(dcid, is_client=False)
    assert send_a is not send_b and receive_a is not receive_b
    assert send_a.header_protection is not send_b.header_protection
    assert (send_a.key, send_a.iv, send_a.secret) == (send_b.key, send_b.iv, send_b.secret)
    client_send, client_receive = initial_protection(dcid, is_client=True)
    assert client_send.key == receive_a.key and client_receive.key == send_a.key
    assert initial_receive_protection(dcid, is_client=False).key == receive_a.key
    assert initial_receive_protection(dcid, is_client=True).key == client_receive.key
    sealed = client_send.encrypt_packet(b"\xc3" + bytes(20), bytes(40), 0)
    assert receive_b.decrypt_packet(sealed, 17, -1)[1] == bytes(40)


def test_initial_keys_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood of new DCIDs cannot grow the cache past its bound."""
    for _ in range(INITIAL_KEY_CACHE_SIZE * 3):
        initial_protection(os.urandom(8), is_client=False)
    assert len(quic_crypto._initial_keys) <= INITIAL_KEY_CACHE_SIZE


def test_certificate_message_is_encoded_once_per_chain() -> None:
    """RFC 8446 §4.4.2: the server's Certificate message depends on the chain only,
    so it is encoded once; a different chain (or one changed in place) is not
    served the old bytes."""
    pki = get_pki()
    chain = [pki.server.certificate]
    fresh = Certificate(b"", [(c.public_bytes(Encoding.DER), {}) for c in chain]).encode()
    first = certificate_message(chain)
    assert first.msg_type == HandshakeType.certificate
    assert first.encode() == fresh
    assert certificate_message(chain) is first
    chain.append(pki.ca.certificate)
    longer = certificate_message(chain)
    assert longer is not first
    assert Certificate.parse(longer.encode()).entries[1][0] == pki.ca.certificate.public_bytes(
        Encoding.DER
    )


@pytest.mark.parametrize(("sequence", "retire_prior_to"), [(1, 0), (7, 3), (100_000, 64)])
def test_new_connection_id_fast_encoding_matches_the_frame(
    sequence: int, retire_prior_to: int
) -> None:
    """RFC 9000 §19.15: the direct encoder writes the frame's own bytes and checks."""
    cid, token = os.urandom(8), os.urandom(16)
    frame = NewConnectionIdFrame(sequence, retire_prior_to, cid, token)
    assert encode_new_connection_id(sequence, retire_prior_to, cid, token) == encode_frame(frame)
    with pytest.raises(ValueError):
        encode_new_connection_id(sequence, retire_prior_to, b"", token)
    with pytest.raises(ValueError):
        encode_new_connection_id(sequence, retire_prior_to, cid, token[:15])


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x00\x04\x00\x1d\x11\xec", [0x1D, 0x11EC]),
        (b"\x00\x02\x00\x17", [0x17]),
        (b"\x00\x00", None),  # empty list
        (b"\x00\x03\x00\x1d\x11", None),  # odd length
        (b"\x00\x06\x00\x1d\x11\xec", None),  # declared longer than the data
        (b"\x00\x02\x00\x1d\x11\xec", None),  # trailing bytes
        (b"\x00", None),
    ],
)
def test_uint16_list_fast_path_agrees_with_the_checking_parser(
    data: bytes, expected: list[int] | None
) -> None:
    """RFC 8446 §4.2.7/§4.2.3 vectors: well-formed ones parse in one unpack, every
    malformed one is still a decode_error."""
    if expected is None:
        with pytest.raises(TLSError) as caught:
            parse_uint16_list(data, "test list")
        assert caught.value.alert == AlertDescription.decode_error
    else:
        assert parse_uint16_list(data, "test list") == expected


def test_extension_block_parsing_rejects_truncation_and_repeats() -> None:
    """RFC 8446 §4.2: a truncated extension is a decode_error, a repeated one
    illegal_parameter; a well-formed block keeps every extension's bytes."""
    hello = ClientHello(
        bytes(32), b"", [0x1301], {0x2B: b"\x02\x03\x04", 0x0A: b"\x00\x02\x00\x1d"}
    )
    assert ClientHello.parse(hello.encode()).extensions == hello.extensions
    encoded = hello.encode()
    with pytest.raises(TLSError) as caught:
        ClientHello.parse(encoded[:-1])
    assert caught.value.alert == AlertDescription.decode_error
    repeated = ClientHello(bytes(32), b"", [0x1301], {0x2B: b""}).encode()
    # Append a second supported_versions extension by hand.
    body = repeated[:-6] + (8).to_bytes(2, "big") + repeated[-4:] + repeated[-4:]
    with pytest.raises(TLSError) as caught:
        ClientHello.parse(body)
    assert caught.value.alert == AlertDescription.illegal_parameter


def test_schemes_for_key_is_computed_once_per_key() -> None:
    """RFC 8446 §4.4.3: the schemes a key can sign with depend on the key alone; a
    server asks on every handshake, so the answer is kept per key object."""
    pki = get_pki()
    ecdsa = schemes_for_key(pki.server.private_key)
    assert schemes_for_key(pki.server.private_key) is ecdsa
    assert ecdsa == (SignatureScheme.ecdsa_secp256r1_sha256,)
    rsa_schemes = schemes_for_key(pki.server_rsa.private_key)
    assert SignatureScheme.rsa_pss_rsae_sha256 in rsa_schemes
    assert SignatureScheme.ecdsa_secp256r1_sha256 not in rsa_schemes
