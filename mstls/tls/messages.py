"""TLS 1.3 handshake message codecs (RFC 8446 §4) and handshake-message framing.

Each message is a small class with ``encode() -> bytes`` (the body, without the
4-byte handshake header) and a ``parse(body)`` class method.  Parsers handle
untrusted input: anything malformed raises
:class:`~mstls.exceptions.TLSError` with ``decode_error`` (or
``illegal_parameter`` where RFC 8446 says so), never another exception.

:class:`HandshakeReader` reassembles messages from the byte stream of one
encryption level and enforces :data:`MAX_HANDSHAKE_MESSAGE_SIZE`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TypeVar

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ..codes import AlertDescription
from ..exceptions import DecodeError, TLSError
from ..wire.buffer import Reader, Writer
from .extensions import HandshakeType

__all__ = [
    "HELLO_RETRY_RANDOM",
    "LEGACY_VERSION",
    "MAX_BUFFERED_HANDSHAKE_BYTES",
    "MAX_CACHED_CERTIFICATE_MESSAGES",
    "MAX_HANDSHAKE_MESSAGE_SIZE",
    "Certificate",
    "CertificateRequest",
    "CertificateVerify",
    "ClientHello",
    "EncryptedExtensions",
    "EndOfEarlyData",
    "Finished",
    "HandshakeReader",
    "KeyUpdate",
    "NewSessionTicket",
    "PreEncoded",
    "ServerHello",
    "certificate_message",
    "frame_message",
]

#: Largest handshake message we accept: a 10-certificate chain of large RSA
#: certificates fits comfortably (RFC 8446 allows 2^24-1).
MAX_HANDSHAKE_MESSAGE_SIZE = 1 << 16
#: Largest number of handshake bytes buffered at one level while a message is
#: incomplete; bounds memory for a peer that trickles a huge message.
MAX_BUFFERED_HANDSHAKE_BYTES = MAX_HANDSHAKE_MESSAGE_SIZE + 4
#: ServerHello.random of a HelloRetryRequest (RFC 8446 §4.1.3): SHA-256("HelloRetryRequest").
HELLO_RETRY_RANDOM = hashlib.sha256(b"HelloRetryRequest").digest()
#: Legacy version fields carry TLS 1.2 (RFC 8446 §4.1.2).
LEGACY_VERSION = 0x0303

M = TypeVar("M")
Extensions = dict[int, bytes]
#: extension_type (2) and the length of extension_data (2), RFC 8446 §4.2.
_EXTENSION_HEADER = 4


def frame_message(msg_type: int, body: bytes) -> bytes:
    """Prefix ``body`` with the handshake header: type (1) and length (3)."""
    return bytes((msg_type,)) + len(body).to_bytes(3, "big") + body


def _parse(what: str, body: bytes, parse: Callable[[Reader], M]) -> M:
    reader = Reader(body)
    try:
        message = parse(reader)
        reader.expect_eof(what)
    except DecodeError as exc:
        raise TLSError(AlertDescription.decode_error, f"malformed {what}: {exc.reason}") from None
    return message


def _pull_extensions(r: Reader, what: str) -> Extensions:
    """An extension block; duplicates are ``illegal_parameter`` (RFC 8446 §4.2)."""
    block = r.pull_block(2)
    extensions: Extensions = {}
    pos, end = 0, len(block)
    # Local offsets rather than Reader calls: a ClientHello carries a dozen extensions.
    while pos < end:
        if pos + _EXTENSION_HEADER > end:
            raise DecodeError(f"truncated: needed {_EXTENSION_HEADER} bytes, {end - pos} left")
        ext_type = (block[pos] << 8) | block[pos + 1]
        length = (block[pos + 2] << 8) | block[pos + 3]
        pos += _EXTENSION_HEADER
        if pos + length > end:
            raise DecodeError(f"truncated: needed {length} bytes, {end - pos} left")
        data = block[pos : pos + length]
        pos += length
        if ext_type in extensions:
            raise TLSError(
                AlertDescription.illegal_parameter, f"{what} repeats extension {ext_type}"
            )
        extensions[ext_type] = data
    return extensions


def _push_extensions(w: Writer, extensions: Extensions) -> None:
    with w.block(2):
        for ext_type, data in extensions.items():
            w.push_uint16(ext_type)
            w.push_block(2, data)


@attrs.define
class ClientHello:
    """ClientHello (RFC 8446 §4.1.2)."""

    random: bytes
    legacy_session_id: bytes
    cipher_suites: list[int]
    extensions: Extensions
    legacy_compression_methods: bytes = b"\x00"
    msg_type = HandshakeType.client_hello

    def encode(self) -> bytes:
        w = Writer()
        w.push_uint16(LEGACY_VERSION)
        w.push_bytes(self.random)
        w.push_block(1, self.legacy_session_id)
        with w.block(2):
            for suite in self.cipher_suites:
                w.push_uint16(suite)
        w.push_block(1, self.legacy_compression_methods)
        _push_extensions(w, self.extensions)
        return w.data

    @classmethod
    def parse(cls, body: bytes) -> ClientHello:
        return _parse("ClientHello", body, _parse_client_hello)


def _parse_client_hello(r: Reader) -> ClientHello:
    r.pull_uint16()  # legacy_version: ignored, supported_versions decides
    random = r.pull_bytes(32)
    session_id = r.pull_block(1)
    if len(session_id) > 32:
        raise DecodeError("legacy_session_id longer than 32 bytes")
    suites_raw = r.sub_reader(2)
    if suites_raw.remaining == 0 or suites_raw.remaining % 2:
        raise DecodeError("bad cipher_suites length")
    suites = [suites_raw.pull_uint16() for _ in range(suites_raw.remaining // 2)]
    compression = r.pull_block(1)
    extensions = _pull_extensions(r, "ClientHello") if not r.eof() else {}
    return ClientHello(random, session_id, suites, extensions, compression)


@attrs.define
class ServerHello:
    """ServerHello or HelloRetryRequest (RFC 8446 §4.1.3, §4.1.4)."""

    random: bytes
    legacy_session_id_echo: bytes
    cipher_suite: int
    extensions: Extensions
    legacy_compression_method: int = 0
    #: MUST be 0x0303 (RFC 8446 §4.1.3); kept so that the client can check it.
    legacy_version: int = LEGACY_VERSION
    msg_type = HandshakeType.server_hello

    @property
    def is_hello_retry_request(self) -> bool:
        return self.random == HELLO_RETRY_RANDOM

    def encode(self) -> bytes:
        w = Writer()
        w.push_uint16(self.legacy_version)
        w.push_bytes(self.random)
        w.push_block(1, self.legacy_session_id_echo)
        w.push_uint16(self.cipher_suite)
        w.push_uint8(self.legacy_compression_method)
        _push_extensions(w, self.extensions)
        return w.data

    @classmethod
    def parse(cls, body: bytes) -> ServerHello:
        return _parse("ServerHello", body, _parse_server_hello)


def _parse_server_hello(r: Reader) -> ServerHello:
    legacy_version = r.pull_uint16()
    random = r.pull_bytes(32)
    session_id = r.pull_block(1)
    if len(session_id) > 32:
        raise DecodeError("legacy_session_id_echo longer than 32 bytes")
    suite = r.pull_uint16()
    compression = r.pull_uint8()
    extensions = _pull_extensions(r, "ServerHello") if not r.eof() else {}
    return ServerHello(random, session_id, suite, extensions, compression, legacy_version)


@attrs.define
class EncryptedExtensions:
    """EncryptedExtensions (RFC 8446 §4.3.1)."""

    extensions: Extensions
    msg_type = HandshakeType.encrypted_extensions

    def encode(self) -> bytes:
        w = Writer()
        _push_extensions(w, self.extensions)
        return w.data

    @classmethod
    def parse(cls, body: bytes) -> EncryptedExtensions:
        return _parse("EncryptedExtensions", body, _parse_encrypted_extensions)


def _parse_encrypted_extensions(r: Reader) -> EncryptedExtensions:
    return EncryptedExtensions(_pull_extensions(r, "EncryptedExtensions"))


@attrs.define
class CertificateRequest:
    """CertificateRequest (RFC 8446 §4.3.2)."""

    context: bytes
    extensions: Extensions
    msg_type = HandshakeType.certificate_request

    def encode(self) -> bytes:
        w = Writer()
        w.push_block(1, self.context)
        _push_extensions(w, self.extensions)
        return w.data

    @classmethod
    def parse(cls, body: bytes) -> CertificateRequest:
        return _parse("CertificateRequest", body, _parse_certificate_request)


def _parse_certificate_request(r: Reader) -> CertificateRequest:
    context = r.pull_block(1)
    return CertificateRequest(context, _pull_extensions(r, "CertificateRequest"))


@attrs.define
class Certificate:
    """Certificate (RFC 8446 §4.4.2): DER certificates with per-entry extensions."""

    context: bytes
    entries: list[tuple[bytes, Extensions]]
    msg_type = HandshakeType.certificate

    def encode(self) -> bytes:
        w = Writer()
        w.push_block(1, self.context)
        with w.block(3):
            for der, extensions in self.entries:
                w.push_block(3, der)
                _push_extensions(w, extensions)
        return w.data

    @classmethod
    def parse(cls, body: bytes) -> Certificate:
        return _parse("Certificate", body, _parse_certificate)


def _parse_certificate(r: Reader) -> Certificate:
    context = r.pull_block(1)
    inner = r.sub_reader(3)
    entries: list[tuple[bytes, Extensions]] = []
    while not inner.eof():
        der = inner.pull_block(3)
        if not der:
            raise DecodeError("empty certificate entry")
        entries.append((der, _pull_extensions(inner, "CertificateEntry")))
    return Certificate(context, entries)


@attrs.frozen
class PreEncoded:
    """A handshake message whose body was encoded before (and is reused as is)."""

    msg_type: int
    body: bytes

    def encode(self) -> bytes:
        return self.body


#: Server chains whose Certificate message is kept encoded, at most (one per
#: configuration in practice; the table is emptied when it is full).
MAX_CACHED_CERTIFICATE_MESSAGES = 32
_certificate_messages: dict[int, tuple[tuple[x509.Certificate, ...], PreEncoded]] = {}


def certificate_message(chain: Sequence[x509.Certificate]) -> PreEncoded:
    """Certificate (RFC 8446 §4.4.2) for ``chain``: empty certificate_request_context,
    no per-entry extensions, as a server sends it; DER-encoded once per chain.

    The cache is keyed by the chain object and checked against the identity of each
    certificate, so a chain changed in place is encoded afresh.
    """
    key = id(chain)
    cached = _certificate_messages.get(key)
    if cached is not None:
        certificates, message = cached
        if len(certificates) == len(chain) and all(
            a is b for a, b in zip(certificates, chain, strict=True)
        ):
            return message
    body = Certificate(b"", [(c.public_bytes(Encoding.DER), {}) for c in chain]).encode()
    message = PreEncoded(HandshakeType.certificate, body)
    if len(_certificate_messages) >= MAX_CACHED_CERTIFICATE_MESSAGES:
        _certificate_messages.clear()
    _certificate_messages[key] = (tuple(chain), message)
    return message


@attrs.define
class CertificateVerify:
    """CertificateVerify (RFC 8446 §4.4.3)."""

    algorithm: int
    signature: bytes
    msg_type = HandshakeType.certificate_verify

    def encode(self) -> bytes:
        w = Writer()
        w.push_uint16(self.algorithm)
        w.push_block(2, self.signature)
        return w.data

    @classmethod
    def parse(cls, body: bytes) -> CertificateVerify:
        return _parse("CertificateVerify", body, _parse_certificate_verify)


def _parse_certificate_verify(r: Reader) -> CertificateVerify:
    algorithm = r.pull_uint16()
    signature = r.pull_block(2)
    if not signature:
        raise DecodeError("empty signature")
    return CertificateVerify(algorithm, signature)


@attrs.define
class Finished:
    """Finished (RFC 8446 §4.4.4): the HMAC over the transcript."""

    verify_data: bytes
    msg_type = HandshakeType.finished

    def encode(self) -> bytes:
        return self.verify_data

    @classmethod
    def parse(cls, body: bytes) -> Finished:
        return Finished(bytes(body))


@attrs.define
class NewSessionTicket:
    """NewSessionTicket (RFC 8446 §4.6.1); parsed, resumption is not used yet."""

    lifetime: int
    age_add: int
    nonce: bytes
    ticket: bytes
    extensions: Extensions
    msg_type = HandshakeType.new_session_ticket

    def encode(self) -> bytes:
        w = Writer()
        w.push_uint32(self.lifetime)
        w.push_uint32(self.age_add)
        w.push_block(1, self.nonce)
        w.push_block(2, self.ticket)
        _push_extensions(w, self.extensions)
        return w.data

    @classmethod
    def parse(cls, body: bytes) -> NewSessionTicket:
        return _parse("NewSessionTicket", body, _parse_new_session_ticket)


def _parse_new_session_ticket(r: Reader) -> NewSessionTicket:
    lifetime = r.pull_uint32()
    age_add = r.pull_uint32()
    nonce = r.pull_block(1)
    ticket = r.pull_block(2)
    if not ticket:
        raise DecodeError("empty ticket")
    return NewSessionTicket(
        lifetime, age_add, nonce, ticket, _pull_extensions(r, "NewSessionTicket")
    )


@attrs.define
class EndOfEarlyData:
    """EndOfEarlyData (RFC 8446 §4.5): empty; TLS over TCP only (RFC 9001 §8.3)."""

    msg_type = HandshakeType.end_of_early_data

    def encode(self) -> bytes:
        return b""

    @classmethod
    def parse(cls, body: bytes) -> EndOfEarlyData:
        if body:
            raise TLSError(AlertDescription.decode_error, "EndOfEarlyData with a body")
        return EndOfEarlyData()


@attrs.define
class KeyUpdate:
    """KeyUpdate (RFC 8446 §4.6.3)."""

    request_update: bool
    msg_type = HandshakeType.key_update

    def encode(self) -> bytes:
        return b"\x01" if self.request_update else b"\x00"

    @classmethod
    def parse(cls, body: bytes) -> KeyUpdate:
        if len(body) != 1:
            raise TLSError(AlertDescription.decode_error, "malformed KeyUpdate")
        if body[0] > 1:
            raise TLSError(AlertDescription.illegal_parameter, "KeyUpdate request_update > 1")
        return KeyUpdate(body[0] == 1)


class HandshakeReader:
    """Reassembles handshake messages from one level's byte stream (untrusted input).

    ``feed`` appends bytes; ``next_message`` returns ``(type, body, raw)`` for
    each complete message, where ``raw`` includes the header (for the
    transcript).  A declared length above :data:`MAX_HANDSHAKE_MESSAGE_SIZE`
    is rejected as soon as its header arrives, so at most
    :data:`MAX_BUFFERED_HANDSHAKE_BYTES` of an incomplete message are held.
    """

    __slots__ = ("_buffer", "max_message_size")

    def __init__(self, max_message_size: int = MAX_HANDSHAKE_MESSAGE_SIZE) -> None:
        self._buffer = bytearray()
        self.max_message_size = max_message_size

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data
        self._check_header()

    def _check_header(self) -> None:
        if len(self._buffer) >= 4:
            length = int.from_bytes(self._buffer[1:4], "big")
            if length > self.max_message_size:
                raise TLSError(
                    AlertDescription.decode_error,
                    f"handshake message of {length} bytes exceeds the limit of "
                    f"{self.max_message_size} bytes",
                )

    def next_message(self) -> tuple[int, bytes, bytes] | None:
        buf = self._buffer
        if len(buf) < 4:
            return None
        length = int.from_bytes(buf[1:4], "big")
        end = 4 + length
        if len(buf) < end:
            return None
        raw = bytes(buf[:end])
        del buf[:end]
        self._check_header()
        return raw[0], raw[4:], raw

    @property
    def pending(self) -> int:
        """Bytes buffered that are not yet a whole message."""
        return len(self._buffer)
