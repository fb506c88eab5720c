"""Every check the client makes on the server's flight, each with the alert the
RFC names: ServerHello and HelloRetryRequest (RFC 8446 §4.1.3, §4.1.4, §4.2,
§4.2.1, §4.2.8, Appendix D.1), EncryptedExtensions (§4.3.1, RFC 7301 §3.2,
RFC 9001 §8), CertificateRequest (§4.3.2) and the server's Certificate (§4.4.2).

A real server answers a real ClientHello (:class:`~tests.tls.driver.EnginePair`,
message by message); one message of its flight is rewritten before the client
sees it.  The client fails on that message, so the transcript the rewrite broke
never matters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mstls.codes import AlertDescription
from mstls.exceptions import TLSError
from mstls.tls import extensions as ext
from mstls.tls.certificates import spki_sha256
from mstls.tls.cipher_suites import CipherSuite
from mstls.tls.extensions import ExtensionType, HandshakeType
from mstls.tls.groups import NamedGroup
from mstls.tls.messages import (
    Certificate,
    CertificateRequest,
    ClientHello,
    EncryptedExtensions,
    ServerHello,
)
from mstls.tls.signatures import SignatureScheme
from mstls.tls.states import HandshakeState, Role
from tests.certs import TestPKI

from .driver import EnginePair, Message, client_config, server_config

E = ExtensionType
A = AlertDescription
CLIENT = Role.CLIENT
#: Extension bodies that parse wherever they appear; only their placement is wrong.
SOME_ALPN = ext.encode_alpn(["mstls-test"])
X25519_SHARE = ext.encode_key_share_server(NamedGroup.x25519, b"\x01" * 32)
SIGNATURE_ALGORITHMS = ext.encode_uint16_list([SignatureScheme.ed25519])
UNKNOWN_EXTENSION = 0xFAFA  # a GREASE value (RFC 8701): never offered by us


def _pair(pki: TestPKI, *, client: dict[str, Any] | None = None, **server: Any) -> EnginePair:
    """The server has answered the ClientHello; its flight waits for the client."""
    pair = EnginePair(client_config(pki, **(client or {})), server_config(pki, **server))
    pair.deliver(Role.SERVER)
    return pair


def _retry_pair(pki: TestPKI, **client: Any) -> EnginePair:
    """As :func:`_pair`, with a HelloRetryRequest (for secp256r1) waiting."""
    pair = _pair(
        pki,
        client={"key_share_groups": [NamedGroup.x25519], **client},
        groups=[NamedGroup.secp256r1, NamedGroup.x25519],
    )
    hello = _next(pair, HandshakeType.server_hello)
    assert ServerHello.parse(hello.body).is_hello_retry_request
    return pair


def _next(pair: EnginePair, msg_type: int) -> Message:
    """Deliver the client's messages before the next ``msg_type`` one; return it."""
    return pair.deliver_until(CLIENT, msg_type)


def _rewrite(
    message: Message, parse: Callable[[bytes], Any], change: Callable[[Any], None]
) -> Message:
    parsed = parse(message.body)
    change(parsed)
    return message.with_body(parsed.encode())


def _refused(pair: EnginePair, message: Message, alert: AlertDescription, text: str) -> TLSError:
    """``message`` in place of the client's next one fails with ``alert``."""
    state = pair.client.state
    with pytest.raises(TLSError) as info:
        if pair.next_message(CLIENT) is None:
            pair.feed(CLIENT, message)
        else:
            pair.deliver(CLIENT, message)
    assert info.value.alert == alert, info.value
    assert text in info.value.reason, info.value.reason
    assert pair.client.state is state
    return info.value


def _server_hello(pair: EnginePair, change: Callable[[ServerHello], None]) -> Message:
    return _rewrite(_next(pair, HandshakeType.server_hello), ServerHello.parse, change)


def _extensions(**changes: bytes | None) -> Callable[[Any], None]:
    """A change that sets (or, given None, removes) extensions by name."""

    def change(message: Any) -> None:
        for name, value in changes.items():
            if value is None:
                message.extensions.pop(E[name], None)
            else:
                message.extensions[E[name]] = value

    return change


def _with_duplicate(body_without_extensions: bytes, ext_type: int, data: bytes) -> bytes:
    """A body whose (empty, last) extension block is replaced by one listing
    ``ext_type`` twice -- which an ordered mapping cannot express."""
    assert body_without_extensions.endswith(b"\x00\x00")
    entry = ext_type.to_bytes(2, "big") + len(data).to_bytes(2, "big") + data
    return body_without_extensions[:-2] + (2 * len(entry)).to_bytes(2, "big") + entry * 2


# -- ServerHello: the version (§4.2.1, D.1) ---------------------------------------------
def test_server_hello_without_supported_versions_is_protocol_version(pki: TestPKI) -> None:
    """D.1: the server chose legacy_version (TLS 1.2), which we do not support."""
    pair = _pair(pki)
    hello = _server_hello(pair, _extensions(supported_versions=None))
    _refused(pair, hello, A.protocol_version, "peer does not support TLS 1.3")


@pytest.mark.parametrize("version", [0x0303, 0x0302, 0x7F1C, 0x0305])
def test_server_hello_selecting_a_version_we_did_not_offer_is_illegal_parameter(
    pki: TestPKI, version: int
) -> None:
    """§4.2.1: "a version not offered by the client or ... prior to TLS 1.3"."""
    pair = _pair(pki)
    hello = _server_hello(pair, _extensions(supported_versions=version.to_bytes(2, "big")))
    _refused(pair, hello, A.illegal_parameter, f"server selected version {version:#06x}")


def test_malformed_supported_versions_is_decode_error(pki: TestPKI) -> None:
    pair = _pair(pki)
    hello = _server_hello(pair, _extensions(supported_versions=b"\x03\x04\x00"))
    _refused(pair, hello, A.decode_error, "malformed supported_versions extension")


@pytest.mark.parametrize("legacy_version", [0x0304, 0x0301])
def test_server_hello_legacy_version_other_than_tls12_is_illegal_parameter(
    pki: TestPKI, legacy_version: int
) -> None:
    """§4.1.3: legacy_version MUST be 0x0303 when TLS 1.3 is negotiated."""
    pair = _pair(pki)
    hello = _server_hello(pair, lambda h: setattr(h, "legacy_version", legacy_version))
    _refused(pair, hello, A.illegal_parameter, f"legacy_version is {legacy_version:#06x}")


@pytest.mark.parametrize("tls13", [True, False], ids=["tls13", "tls12"])
@pytest.mark.parametrize("sentinel", [b"DOWNGRD\x01", b"DOWNGRD\x00"])
def test_downgrade_sentinel_is_illegal_parameter(
    pki: TestPKI, sentinel: bytes, tls13: bool
) -> None:
    """§4.1.3: a ServerHello of TLS 1.2 or below carrying the sentinel MUST be
    refused with illegal_parameter (before the version is refused)."""
    pair = _pair(pki)

    def change(hello: ServerHello) -> None:
        hello.random = hello.random[:24] + sentinel
        if not tls13:
            del hello.extensions[E.supported_versions]

    _refused(pair, _server_hello(pair, change), A.illegal_parameter, "downgrade sentinel")


def test_random_that_merely_resembles_the_sentinel_is_accepted(pki: TestPKI) -> None:
    pair = _pair(pki)
    hello = _server_hello(pair, lambda h: setattr(h, "random", h.random[:24] + b"DOWNGRD\x02"))
    pair.deliver(CLIENT, hello)
    assert pair.client.state is HandshakeState.WAIT_EE


# -- ServerHello: the rest (§4.1.3) -------------------------------------------------------
def test_session_id_echo_mismatch_is_illegal_parameter(pki: TestPKI) -> None:
    """§4.1.3: we sent an empty legacy_session_id (RFC 9001 §8.4)."""
    pair = _pair(pki)
    hello = _server_hello(pair, lambda h: setattr(h, "legacy_session_id_echo", b"\x01" * 32))
    _refused(pair, hello, A.illegal_parameter, "does not echo our session id")


def test_compression_method_other_than_null_is_illegal_parameter(pki: TestPKI) -> None:
    pair = _pair(pki)
    hello = _server_hello(pair, lambda h: setattr(h, "legacy_compression_method", 1))
    _refused(pair, hello, A.illegal_parameter, "ServerHello uses compression")


@pytest.mark.parametrize("suite", [CipherSuite.AES_256_GCM_SHA384, 0x00FF, 0x1304])
def test_cipher_suite_not_offered_is_illegal_parameter(pki: TestPKI, suite: int) -> None:
    """§4.1.3: "a cipher suite that was not offered"."""
    pair = _pair(pki, client={"cipher_suites": [CipherSuite.AES_128_GCM_SHA256]})
    hello = _server_hello(pair, lambda h: setattr(h, "cipher_suite", suite))
    _refused(pair, hello, A.illegal_parameter, f"server chose cipher suite {suite:#06x}")


def test_key_share_missing_is_missing_extension(pki: TestPKI) -> None:
    pair = _pair(pki)
    hello = _server_hello(pair, _extensions(key_share=None))
    _refused(pair, hello, A.missing_extension, "ServerHello has no key_share")


@pytest.mark.parametrize(
    ("group", "length"),
    [(NamedGroup.secp256r1, 65), (NamedGroup.X25519MLKEM768, 1120), (0x0018, 97)],
    ids=["supported, no share sent", "not offered", "unknown"],
)
def test_key_share_for_a_group_we_sent_no_share_for_is_illegal_parameter(
    pki: TestPKI, group: int, length: int
) -> None:
    """§4.2.8: the server's share must be in a group we sent a share for."""
    pair = _pair(pki, client={"groups": [NamedGroup.x25519, NamedGroup.secp256r1]})
    share = ext.encode_key_share_server(group, b"\x04" * length)
    hello = _server_hello(pair, _extensions(key_share=share))
    _refused(pair, hello, A.illegal_parameter, f"key share group {group:#06x}")


def test_key_share_of_the_wrong_length_is_illegal_parameter(pki: TestPKI) -> None:
    """§4.2.8.2: peers validate each other's public value."""
    pair = _pair(pki, client={"groups": [NamedGroup.x25519]})
    share = ext.encode_key_share_server(NamedGroup.x25519, b"\x09" * 31)
    hello = _server_hello(pair, _extensions(key_share=share))
    _refused(pair, hello, A.illegal_parameter, "key_exchange is 31 bytes, expected 32")


@pytest.mark.parametrize(
    ("extension", "body"),
    [
        (E.application_layer_protocol_negotiation, SOME_ALPN),
        (E.signature_algorithms, SIGNATURE_ALGORITHMS),
        (E.cookie, b"\x00\x01c"),
        (E.server_name, b""),
    ],
)
def test_extension_not_allowed_in_server_hello_is_illegal_parameter(
    pki: TestPKI, extension: ExtensionType, body: bytes
) -> None:
    """§4.2: a known extension in a message it is not specified for."""
    pair = _pair(pki)
    hello = _server_hello(pair, lambda h: h.extensions.__setitem__(extension, body))
    _refused(pair, hello, A.illegal_parameter, f"extension {extension} is not allowed in")


@pytest.mark.parametrize("extension", [E.pre_shared_key, UNKNOWN_EXTENSION])
def test_unsolicited_extension_in_server_hello_is_unsupported_extension(
    pki: TestPKI, extension: int
) -> None:
    """§4.2: a response to an extension we did not send."""
    pair = _pair(pki)
    hello = _server_hello(pair, lambda h: h.extensions.__setitem__(extension, b"\x00\x00"))
    _refused(pair, hello, A.unsupported_extension, f"contains extension {extension}")


def test_duplicate_extension_in_server_hello_is_illegal_parameter(pki: TestPKI) -> None:
    """§4.2: no more than one extension of a type in a block."""
    pair = _pair(pki)
    message = _next(pair, HandshakeType.server_hello)
    hello = ServerHello.parse(message.body)
    hello.extensions = {}
    body = _with_duplicate(hello.encode(), E.supported_versions, b"\x03\x04")
    _refused(pair, message.with_body(body), A.illegal_parameter, "repeats extension 43")


# -- HelloRetryRequest (§4.1.4, §4.2.8) ---------------------------------------------------
def _retry(pair: EnginePair, change: Callable[[ServerHello], None]) -> Message:
    return _server_hello(pair, change)


@pytest.mark.parametrize(
    ("group", "why"),
    [(NamedGroup.x25519, "already in key_share"), (0x0018, "not in supported_groups")],
)
def test_retry_for_an_unacceptable_group_is_illegal_parameter(
    pki: TestPKI, group: int, why: str
) -> None:
    """§4.2.8: the selected group must be in supported_groups and must not be
    one we already sent a share for."""
    pair = _retry_pair(pki)
    retry = _retry(pair, _extensions(key_share=ext.encode_key_share_hello_retry(group)))
    _refused(pair, retry, A.illegal_parameter, f"asks for group {group:#06x}")


def test_retry_that_would_change_nothing_is_illegal_parameter(pki: TestPKI) -> None:
    """§4.1.4: neither a key_share nor a cookie."""
    pair = _retry_pair(pki)
    retry = _retry(pair, _extensions(key_share=None))
    _refused(pair, retry, A.illegal_parameter, "would change nothing")


def test_retry_with_a_cookie_is_answered_with_the_cookie(pki: TestPKI) -> None:
    """§4.2.2: the cookie is the one unsolicited extension a HelloRetryRequest
    may carry; the second ClientHello echoes it."""
    pair = _retry_pair(pki)
    cookie = b"\x00\x05hello"
    pair.deliver(CLIENT, _retry(pair, _extensions(cookie=cookie)))
    assert pair.client.state is HandshakeState.WAIT_SH2
    second = pair.next_message(Role.SERVER)
    assert second is not None and second.msg_type == HandshakeType.client_hello
    assert ClientHello.parse(second.body).extensions[E.cookie] == cookie


def test_retry_cipher_suite_not_offered_is_illegal_parameter(pki: TestPKI) -> None:
    pair = _retry_pair(pki, cipher_suites=[CipherSuite.AES_128_GCM_SHA256])
    retry = _retry(pair, lambda h: setattr(h, "cipher_suite", CipherSuite.AES_256_GCM_SHA384))
    _refused(pair, retry, A.illegal_parameter, "which we did not offer")


@pytest.mark.parametrize(
    ("extension", "body"),
    [(E.application_layer_protocol_negotiation, SOME_ALPN), (E.early_data, b"")],
)
def test_extension_not_allowed_in_retry_is_illegal_parameter(
    pki: TestPKI, extension: ExtensionType, body: bytes
) -> None:
    pair = _retry_pair(pki)
    retry = _retry(pair, lambda h: h.extensions.__setitem__(extension, body))
    _refused(pair, retry, A.illegal_parameter, "is not allowed in hello_retry_request")


def test_retry_with_an_unsolicited_extension_is_unsupported_extension(pki: TestPKI) -> None:
    pair = _retry_pair(pki)
    retry = _retry(pair, lambda h: h.extensions.__setitem__(UNKNOWN_EXTENSION, b""))
    _refused(pair, retry, A.unsupported_extension, "HelloRetryRequest contains extension")


def test_retry_session_id_echo_mismatch_is_illegal_parameter(pki: TestPKI) -> None:
    pair = _retry_pair(pki)
    retry = _retry(pair, lambda h: setattr(h, "legacy_session_id_echo", b"\x07"))
    _refused(pair, retry, A.illegal_parameter, "does not echo our session id")


def test_retry_selecting_another_version_is_illegal_parameter(pki: TestPKI) -> None:
    pair = _retry_pair(pki)
    retry = _retry(pair, _extensions(supported_versions=b"\x03\x03"))
    _refused(pair, retry, A.illegal_parameter, "server selected version 0x0303")


def test_second_retry_is_unexpected_message(pki: TestPKI) -> None:
    """§4.1.4: a HelloRetryRequest in answer to our second ClientHello."""
    pair = _retry_pair(pki)
    retry = _next(pair, HandshakeType.server_hello)
    pair.deliver(CLIENT)
    _refused(pair, retry, A.unexpected_message, "a second HelloRetryRequest")


def _after_retry(pki: TestPKI, **client: Any) -> EnginePair:
    """The second ClientHello was answered; the real ServerHello waits."""
    pair = _retry_pair(pki, **client)
    pair.deliver(CLIENT)  # the HelloRetryRequest
    pair.deliver(Role.SERVER)  # the second ClientHello
    return pair


def test_server_hello_suite_differing_from_the_retry_is_illegal_parameter(
    pki: TestPKI,
) -> None:
    """§4.1.4: the ServerHello's cipher suite must be the HelloRetryRequest's."""
    suites = [CipherSuite.AES_128_GCM_SHA256, CipherSuite.AES_256_GCM_SHA384]
    pair = _after_retry(pki, cipher_suites=suites)
    hello = _server_hello(pair, lambda h: setattr(h, "cipher_suite", suites[1]))
    _refused(pair, hello, A.illegal_parameter, "differs from the HelloRetryRequest's")


def test_server_hello_share_not_in_the_retry_group_is_illegal_parameter(pki: TestPKI) -> None:
    """§4.2.8: after the retry our only share is the requested group's."""
    pair = _after_retry(pki)
    hello = _server_hello(pair, _extensions(key_share=X25519_SHARE))
    _refused(pair, hello, A.illegal_parameter, "key share group 0x001d")


# -- EncryptedExtensions (§4.3.1) ---------------------------------------------------------
def _encrypted_extensions(pair: EnginePair, change: Callable[[Any], None]) -> Message:
    message = _next(pair, HandshakeType.encrypted_extensions)
    return _rewrite(message, EncryptedExtensions.parse, change)


@pytest.mark.parametrize(
    ("extension", "body"),
    [
        (E.key_share, X25519_SHARE),
        (E.supported_versions, b"\x03\x04"),
        (E.signature_algorithms, SIGNATURE_ALGORITHMS),
        (E.signature_algorithms_cert, SIGNATURE_ALGORITHMS),
        (E.pre_shared_key, b"\x00\x00"),
        (E.cookie, b"\x00\x01c"),
        (E.psk_key_exchange_modes, b"\x01\x01"),
        (E.padding, b"\x00"),
    ],
)
def test_extension_forbidden_in_encrypted_extensions_is_illegal_parameter(
    pki: TestPKI, extension: ExtensionType, body: bytes
) -> None:
    """§4.3.1: EE carries only extensions not needed to establish keys; §4.2 table."""
    pair = _pair(pki)
    message = _encrypted_extensions(pair, lambda m: m.extensions.__setitem__(extension, body))
    _refused(pair, message, A.illegal_parameter, "is not allowed in 8")


@pytest.mark.parametrize(
    "extension", [E.early_data, E.max_fragment_length, E.heartbeat, UNKNOWN_EXTENSION]
)
def test_unsolicited_extension_in_encrypted_extensions_is_unsupported_extension(
    pki: TestPKI, extension: int
) -> None:
    pair = _pair(pki)
    message = _encrypted_extensions(pair, lambda m: m.extensions.__setitem__(extension, b"\x01"))
    _refused(pair, message, A.unsupported_extension, f"contains extension {extension}")


def test_server_name_without_our_server_name_is_unsupported_extension(pki: TestPKI) -> None:
    """An IP literal is not sent as SNI (RFC 6066 §3), so no server_name may come back."""
    pin = [spki_sha256(pki.server.certificate)]
    pair = _pair(pki, client={"server_name": "127.0.0.1", "pinned_sha256": pin})
    message = _encrypted_extensions(pair, lambda m: m.extensions.__setitem__(E.server_name, b""))
    _refused(pair, message, A.unsupported_extension, "contains extension 0")


@pytest.mark.parametrize(
    ("names", "text"),
    [(["other"], "['other'], which we did not offer"), (["mstls-test", "other"], "which we")],
    ids=["not offered", "more than one"],
)
def test_alpn_not_offered_or_more_than_one_is_illegal_parameter(
    pki: TestPKI, names: list[str], text: str
) -> None:
    """RFC 7301 §3.1: exactly one name, one of ours."""
    pair = _pair(pki)
    alpn = ext.encode_alpn(names)
    message = _encrypted_extensions(pair, _extensions(application_layer_protocol_negotiation=alpn))
    _refused(pair, message, A.illegal_parameter, text)


def test_alpn_when_we_offered_none_is_unsupported_extension(pki: TestPKI) -> None:
    pair = _pair(pki, client={"alpn_protocols": []}, alpn_protocols=[])
    message = _encrypted_extensions(
        pair, _extensions(application_layer_protocol_negotiation=SOME_ALPN)
    )
    _refused(pair, message, A.unsupported_extension, "contains extension 16")


def test_missing_alpn_is_no_application_protocol(pki: TestPKI) -> None:
    """RFC 9001 §8.1 (and our require_alpn for TCP): no protocol selected."""
    pair = _pair(pki)
    message = _encrypted_extensions(pair, _extensions(application_layer_protocol_negotiation=None))
    _refused(pair, message, A.no_application_protocol, "selected no application protocol")


def test_malformed_alpn_is_decode_error(pki: TestPKI) -> None:
    pair = _pair(pki)
    message = _encrypted_extensions(
        pair, _extensions(application_layer_protocol_negotiation=b"\x00\x00")
    )
    _refused(pair, message, A.decode_error, "empty protocol list")


def test_duplicate_extension_in_encrypted_extensions_is_illegal_parameter(pki: TestPKI) -> None:
    pair = _pair(pki)
    message = _next(pair, HandshakeType.encrypted_extensions)
    body = _with_duplicate(b"\x00\x00", E.application_layer_protocol_negotiation, SOME_ALPN)
    _refused(pair, message.with_body(body), A.illegal_parameter, "repeats extension 16")


def test_quic_encrypted_extensions_without_transport_parameters_is_missing_extension(
    pki: TestPKI,
) -> None:
    """RFC 9001 §8.2: a server MUST send quic_transport_parameters."""
    pair = EnginePair(
        client_config(pki), server_config(pki), transport_parameters=(b"\x01\x00", b"\x01\x00")
    )
    pair.deliver(Role.SERVER)
    message = _encrypted_extensions(pair, _extensions(quic_transport_parameters=None))
    _refused(pair, message, A.missing_extension, "server sent no QUIC transport parameters")


# -- CertificateRequest (§4.3.2) ----------------------------------------------------------
def _certificate_request(pair: EnginePair, change: Callable[[Any], None]) -> Message:
    message = _next(pair, HandshakeType.certificate_request)
    return _rewrite(message, CertificateRequest.parse, change)


def _requesting(pki: TestPKI, **client: Any) -> EnginePair:
    return _pair(pki, client=client, request_client_certificate=True)


def test_certificate_request_context_in_the_handshake_is_illegal_parameter(
    pki: TestPKI,
) -> None:
    """§4.3.2: the context SHALL be zero length unless post-handshake."""
    pair = _requesting(pki)
    message = _certificate_request(pair, lambda r: setattr(r, "context", b"\x01"))
    _refused(pair, message, A.illegal_parameter, "context must be empty")


def test_certificate_request_without_signature_algorithms_is_missing_extension(
    pki: TestPKI,
) -> None:
    """§4.3.2: "The signature_algorithms extension MUST be specified"."""
    pair = _requesting(pki)
    message = _certificate_request(pair, _extensions(signature_algorithms=None))
    _refused(pair, message, A.missing_extension, "has no signature_algorithms")


@pytest.mark.parametrize("have_certificate", [False, True], ids=["no cert", "cert"])
def test_certificate_request_with_empty_signature_algorithms_is_decode_error(
    pki: TestPKI, have_certificate: bool
) -> None:
    """§4.2.3: supported_signature_algorithms<2..2^16-2>; an empty list does not
    parse, whether or not we have a certificate to answer with."""
    client = (
        {"certificate_chain": [pki.client.certificate], "private_key": pki.client.private_key}
        if have_certificate
        else {}
    )
    pair = _requesting(pki, **client)
    message = _certificate_request(pair, _extensions(signature_algorithms=b"\x00\x00"))
    _refused(pair, message, A.decode_error, "malformed signature_algorithms extension")


@pytest.mark.parametrize(
    ("extension", "body"),
    [
        (E.application_layer_protocol_negotiation, SOME_ALPN),
        (E.key_share, X25519_SHARE),
        (E.supported_versions, b"\x03\x04"),
        (E.server_name, b""),
    ],
)
def test_extension_forbidden_in_certificate_request_is_illegal_parameter(
    pki: TestPKI, extension: ExtensionType, body: bytes
) -> None:
    pair = _requesting(pki)
    message = _certificate_request(pair, lambda r: r.extensions.__setitem__(extension, body))
    _refused(pair, message, A.illegal_parameter, "is not allowed in 13")


def test_unknown_extension_in_certificate_request_is_ignored(pki: TestPKI) -> None:
    """§4.3.2: "Clients MUST ignore unrecognized extensions"."""
    pair = _requesting(pki)
    message = _certificate_request(
        pair, lambda r: r.extensions.__setitem__(UNKNOWN_EXTENSION, b"x")
    )
    pair.deliver(CLIENT, message)
    assert pair.client.state is HandshakeState.WAIT_CERT


def test_no_scheme_our_key_fits_means_an_empty_certificate(pki: TestPKI) -> None:
    """§4.4.2.3: with no suitable certificate the client sends an empty
    Certificate (and the server decides), rather than failing the handshake."""
    pair = _pair(
        pki,
        client={
            "certificate_chain": [pki.client.certificate],  # an ECDSA P-256 key
            "private_key": pki.client.private_key,
        },
        request_client_certificate=True,
        signature_schemes=[SignatureScheme.ed25519],
        cert="server_ed25519",
    )
    pair.run()
    assert pair.client.handshake_complete and pair.server.handshake_complete
    sent = [step.msg_type for step in pair.trace if step.role is Role.SERVER]
    assert HandshakeType.certificate_verify not in sent
    assert pair.server.peer is None


# -- the server's Certificate (§4.4.2) ------------------------------------------------------
def _certificate(pair: EnginePair, change: Callable[[Any], None]) -> Message:
    return _rewrite(_next(pair, HandshakeType.certificate), Certificate.parse, change)


def test_server_certificate_with_a_request_context_is_illegal_parameter(pki: TestPKI) -> None:
    """§4.4.2: the context is empty in the server's Certificate."""
    pair = _pair(pki)
    message = _certificate(pair, lambda c: setattr(c, "context", b"\x01"))
    _refused(pair, message, A.illegal_parameter, "server Certificate has a request context")


def test_empty_server_certificate_is_decode_error(pki: TestPKI) -> None:
    """§4.4.2.4: "If the server supplies an empty Certificate message, the
    client MUST abort the handshake with a decode_error alert"."""
    pair = _pair(pki)
    message = _certificate(pair, lambda c: setattr(c, "entries", []))
    _refused(pair, message, A.decode_error, "server sent no certificate")


def test_certificate_entry_extension_not_allowed_is_illegal_parameter(pki: TestPKI) -> None:
    pair = _pair(pki)
    message = _certificate(pair, lambda c: c.entries[0][1].__setitem__(E.key_share, b""))
    _refused(pair, message, A.illegal_parameter, "is not allowed in 11")


@pytest.mark.parametrize("extension", [E.status_request, E.signed_certificate_timestamp])
def test_certificate_entry_extension_we_did_not_ask_for_is_unsupported_extension(
    pki: TestPKI, extension: ExtensionType
) -> None:
    """§4.4.2: the server's entry extensions "MUST correspond to ones from the
    ClientHello"; §4.2: anything else is unsupported_extension."""
    pair = _pair(pki)
    message = _certificate(pair, lambda c: c.entries[0][1].__setitem__(extension, b"\x01"))
    _refused(pair, message, A.unsupported_extension, f"contains extension {extension}")


def test_corrupt_server_certificate_is_bad_certificate(pki: TestPKI) -> None:
    pair = _pair(pki)
    message = _certificate(pair, lambda c: setattr(c, "entries", [(b"\x30\x03\x02\x01", {})]))
    _refused(pair, message, A.bad_certificate, "malformed certificate")


def test_the_unchanged_flight_completes(pki: TestPKI) -> None:
    """The control: with nothing rewritten the same pairs finish the handshake."""
    for pair in (_pair(pki, request_client_certificate=True), _after_retry(pki)):
        pair.run()
        assert pair.client.state is pair.server.state is HandshakeState.CONNECTED
