"""TLS 1.3 extension codecs (RFC 8446 §4.2) and the table of where each may appear.

Extensions are kept as an ordered ``{type: body}`` mapping by the message
codecs; the functions here turn one body into values and back.  Every
``parse_*`` handles untrusted input and raises only
:class:`~mstls.exceptions.TLSError` (``decode_error`` for malformed bodies).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import TypeVar

from ..codes import AlertDescription
from ..exceptions import DecodeError, TLSError
from ..wire.buffer import Reader, Writer

__all__ = [
    "ALLOWED_IN",
    "ExtensionType",
    "HandshakeType",
    "decode",
    "encode_alpn",
    "encode_key_share_client",
    "encode_key_share_hello_retry",
    "encode_key_share_server",
    "encode_server_name",
    "encode_supported_versions_client",
    "encode_uint16_list",
    "parse_alpn",
    "parse_key_share_client",
    "parse_key_share_hello_retry",
    "parse_key_share_server",
    "parse_server_name",
    "parse_supported_versions_client",
    "parse_uint8_list",
    "parse_uint16",
    "parse_uint16_list",
    "parse_uint32",
]

T = TypeVar("T")

#: TLS 1.3's version number in supported_versions (RFC 8446 §4.2.1).
TLS13 = 0x0304
#: Longest host name we accept in server_name (RFC 6066 §3 limits it to 2^16-1).
MAX_SERVER_NAME_LENGTH = 253
#: Longest ALPN protocol identifier (RFC 7301 §3.1).
MAX_ALPN_PROTOCOL_LENGTH = 255


class HandshakeType(IntEnum):
    """Handshake message types (RFC 8446 §4)."""

    client_hello = 1
    server_hello = 2
    new_session_ticket = 4
    end_of_early_data = 5
    encrypted_extensions = 8
    certificate = 11
    certificate_request = 13
    certificate_verify = 15
    finished = 20
    key_update = 24
    message_hash = 254


class ExtensionType(IntEnum):
    """Extension types we know (RFC 8446 §4.2, RFC 7301, RFC 9001 §8.2)."""

    server_name = 0
    max_fragment_length = 1
    status_request = 5
    supported_groups = 10
    signature_algorithms = 13
    use_srtp = 14
    heartbeat = 15
    application_layer_protocol_negotiation = 16
    signed_certificate_timestamp = 18
    client_certificate_type = 19
    server_certificate_type = 20
    padding = 21
    pre_shared_key = 41
    early_data = 42
    supported_versions = 43
    cookie = 44
    psk_key_exchange_modes = 45
    certificate_authorities = 47
    oid_filters = 48
    post_handshake_auth = 49
    signature_algorithms_cert = 50
    key_share = 51
    quic_transport_parameters = 0x39


_CH = HandshakeType.client_hello
_SH = HandshakeType.server_hello
_EE = HandshakeType.encrypted_extensions
_CT = HandshakeType.certificate
_CR = HandshakeType.certificate_request
_NST = HandshakeType.new_session_ticket
_HRR = "hello_retry_request"

#: Where each known extension may appear (RFC 8446 §4.2 table, RFC 9001 §8.2).
#: A known extension in any other message is an ``illegal_parameter``.
ALLOWED_IN: dict[int, frozenset[object]] = {
    ExtensionType.server_name: frozenset({_CH, _EE}),
    ExtensionType.max_fragment_length: frozenset({_CH, _EE}),
    ExtensionType.status_request: frozenset({_CH, _CR, _CT}),
    ExtensionType.supported_groups: frozenset({_CH, _EE}),
    ExtensionType.signature_algorithms: frozenset({_CH, _CR}),
    ExtensionType.use_srtp: frozenset({_CH, _EE}),
    ExtensionType.heartbeat: frozenset({_CH, _EE}),
    ExtensionType.application_layer_protocol_negotiation: frozenset({_CH, _EE}),
    ExtensionType.signed_certificate_timestamp: frozenset({_CH, _CR, _CT}),
    ExtensionType.client_certificate_type: frozenset({_CH, _EE}),
    ExtensionType.server_certificate_type: frozenset({_CH, _EE}),
    ExtensionType.padding: frozenset({_CH}),
    ExtensionType.key_share: frozenset({_CH, _SH, _HRR}),
    ExtensionType.pre_shared_key: frozenset({_CH, _SH}),
    ExtensionType.psk_key_exchange_modes: frozenset({_CH}),
    ExtensionType.early_data: frozenset({_CH, _EE, _NST}),
    ExtensionType.cookie: frozenset({_CH, _HRR}),
    ExtensionType.supported_versions: frozenset({_CH, _SH, _HRR}),
    ExtensionType.certificate_authorities: frozenset({_CH, _CR}),
    ExtensionType.oid_filters: frozenset({_CR}),
    ExtensionType.post_handshake_auth: frozenset({_CH}),
    ExtensionType.signature_algorithms_cert: frozenset({_CH, _CR}),
    ExtensionType.quic_transport_parameters: frozenset({_CH, _EE}),
}


def decode(what: str, data: bytes, parse: Callable[[Reader], T]) -> T:
    """Run ``parse`` over a whole extension body; malformed → ``decode_error``."""
    reader = Reader(data)
    try:
        value = parse(reader)
        reader.expect_eof(what)
    except DecodeError as exc:
        raise TLSError(AlertDescription.decode_error, f"malformed {what}: {exc.reason}") from None
    return value


# -- simple lists ------------------------------------------------------------------
def encode_uint16_list(values: Sequence[int], length_size: int = 2) -> bytes:
    """A vector of uint16 values with a ``length_size``-byte length."""
    w = Writer()
    with w.block(length_size):
        for v in values:
            w.push_uint16(v)
    return w.data


def parse_uint16_list(data: bytes, what: str, length_size: int = 2) -> list[int]:
    """Parse a non-empty vector of uint16 values (untrusted input)."""
    size = len(data) - length_size
    if size > 0 and not size % 2 and int.from_bytes(data[:length_size], "big") == size:
        # Well formed (the common case): one unpack; anything else takes the
        # checking parser below for its error.
        return list(struct.unpack_from(f">{size // 2}H", data, length_size))

    def parse(r: Reader) -> list[int]:
        inner = r.sub_reader(length_size)
        if inner.remaining == 0 or inner.remaining % 2:
            raise DecodeError("empty or odd-length list")
        return [inner.pull_uint16() for _ in range(inner.remaining // 2)]

    return decode(what, data, parse)


def parse_uint8_list(data: bytes, what: str) -> list[int]:
    """Parse a non-empty vector of uint8 values with a 1-byte length (untrusted input)."""

    def parse(r: Reader) -> list[int]:
        inner = r.pull_block(1)
        if not inner:
            raise DecodeError("empty list")
        return list(inner)

    return decode(what, data, parse)


def parse_uint32(data: bytes, what: str) -> int:
    """A single uint32 body (untrusted input)."""
    return decode(what, data, lambda r: r.pull_uint32())


def parse_uint16(data: bytes, what: str) -> int:
    """A single uint16 body (untrusted input)."""
    return decode(what, data, lambda r: r.pull_uint16())


# -- server_name (RFC 6066 §3) -----------------------------------------------------
def encode_server_name(name: str) -> bytes:
    """A server_name list with one host_name entry."""
    host = name.encode("idna") if not name.isascii() else name.encode("ascii")
    w = Writer()
    with w.block(2):
        w.push_uint8(0)  # host_name
        w.push_block(2, host)
    return w.data


def parse_server_name(data: bytes) -> str | None:
    """The host_name from a ClientHello's server_name (untrusted input)."""

    def parse(r: Reader) -> str | None:
        inner = r.sub_reader(2)
        found: str | None = None
        if inner.eof():
            raise DecodeError("empty server name list")
        while not inner.eof():
            name_type = inner.pull_uint8()
            name = inner.pull_block(2)
            if name_type != 0:
                continue
            if found is not None:
                raise DecodeError("more than one host_name")
            if not name or len(name) > MAX_SERVER_NAME_LENGTH or not name.isascii():
                raise DecodeError("invalid host name")
            found = name.decode("ascii").lower()
        return found

    return decode("server_name extension", data, parse)


# -- ALPN (RFC 7301 §3.1) -----------------------------------------------------------
def encode_alpn(protocols: Sequence[str]) -> bytes:
    """A ProtocolNameList."""
    w = Writer()
    with w.block(2):
        for p in protocols:
            w.push_block(1, p.encode())
    return w.data


def parse_alpn(data: bytes) -> list[str]:
    """A non-empty ProtocolNameList of non-empty names (untrusted input)."""

    def parse(r: Reader) -> list[str]:
        inner = r.sub_reader(2)
        names: list[str] = []
        while not inner.eof():
            raw = inner.pull_block(1)
            if not raw:
                raise DecodeError("empty protocol name")
            names.append(raw.decode("latin-1"))
        if not names:
            raise DecodeError("empty protocol list")
        return names

    return decode("application_layer_protocol_negotiation extension", data, parse)


# -- supported_versions (RFC 8446 §4.2.1) ----------------------------------------
def encode_supported_versions_client(versions: Sequence[int]) -> bytes:
    w = Writer()
    with w.block(1):
        for v in versions:
            w.push_uint16(v)
    return w.data


def parse_supported_versions_client(data: bytes) -> list[int]:
    """The ClientHello form: a 1-byte-length list of uint16 (untrusted input)."""
    return parse_uint16_list(data, "supported_versions extension", length_size=1)


# -- key_share (RFC 8446 §4.2.8) ---------------------------------------------------
def encode_key_share_client(shares: Sequence[tuple[int, bytes]]) -> bytes:
    w = Writer()
    with w.block(2):
        for group, key_exchange in shares:
            w.push_uint16(group)
            w.push_block(2, key_exchange)
    return w.data


def parse_key_share_client(data: bytes) -> list[tuple[int, bytes]]:
    """client_shares; duplicate groups are an ``illegal_parameter`` (untrusted input)."""

    def parse(r: Reader) -> list[tuple[int, bytes]]:
        inner = r.sub_reader(2)
        shares: list[tuple[int, bytes]] = []
        while not inner.eof():
            group = inner.pull_uint16()
            key_exchange = inner.pull_block(2)
            if not key_exchange:
                raise DecodeError("empty key_exchange")
            shares.append((group, key_exchange))
        return shares

    shares = decode("key_share extension", data, parse)
    groups = [g for g, _ in shares]
    if len(set(groups)) != len(groups):
        raise TLSError(AlertDescription.illegal_parameter, "key_share offers a group twice")
    return shares


def encode_key_share_server(group: int, key_exchange: bytes) -> bytes:
    w = Writer()
    w.push_uint16(group)
    w.push_block(2, key_exchange)
    return w.data


def parse_key_share_server(data: bytes) -> tuple[int, bytes]:
    """The ServerHello form: one KeyShareEntry (untrusted input)."""

    def parse(r: Reader) -> tuple[int, bytes]:
        group = r.pull_uint16()
        return group, r.pull_block(2)

    return decode("key_share extension", data, parse)


def encode_key_share_hello_retry(group: int) -> bytes:
    w = Writer()
    w.push_uint16(group)
    return w.data


def parse_key_share_hello_retry(data: bytes) -> int:
    """The HelloRetryRequest form: the selected group (untrusted input)."""
    return parse_uint16(data, "key_share extension")
