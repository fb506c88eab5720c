"""QUIC transport parameters (RFC 9000 §7.4, §18), with the QMux and ACK frequency ones.

Theory of operation
-------------------
The encoding is a sequence of ``(id (i), length (i), value)`` triples
(RFC 9000 §18).  :class:`TransportParameters` holds every parameter of §18.2
plus ``max_record_size`` (draft-ietf-quic-qmux-02 §5.2), ``min_ack_delay``
(draft-ietf-quic-ack-frequency §3) and ``max_datagram_frame_size`` (RFC 9221 §3,
usable with QMux too: draft-ietf-quic-qmux §8.1); anything else, grease included, is kept in
``unknown`` as ``(id, value)`` so that it survives a round trip.

Parameters with a default (§18.2) hold the default when absent and are not
encoded when equal to it; connection IDs, the reset token, the preferred address
and ``min_ack_delay`` are ``None`` when absent.  Because an explicit default is
indistinguishable from an absent parameter by value, a decoded object also
records the ids it actually received in ``received_ids`` (not part of equality):
QMux forbids some parameters whatever their value.

:func:`decode_transport_parameters` handles untrusted input.  A duplicate, a
malformed or out-of-range value, or truncation is a TRANSPORT_PARAMETER_ERROR
(:class:`~mstls.exceptions.TransportParameterError`, RFC 9000 §7.4).  Checks
that depend on the sender's role (§18.2, §7.3) are in
:func:`validate_peer_parameters`; the QMux rules in
:func:`validate_qmux_parameters`.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Iterable
from enum import IntEnum
from typing import Any

import attrs

from ..exceptions import DecodeError, TransportParameterError
from .buffer import VARINT_MAX, Reader, Writer, decode_varint, encode_varint

__all__ = [
    "DEFAULT_ACK_DELAY_EXPONENT",
    "DEFAULT_ACTIVE_CONNECTION_ID_LIMIT",
    "DEFAULT_MAX_ACK_DELAY",
    "DEFAULT_MAX_RECORD_SIZE",
    "DEFAULT_MAX_UDP_PAYLOAD_SIZE",
    "MAX_ACK_DELAY_EXPONENT",
    "MAX_ACK_DELAY_LIMIT",
    "MAX_CONNECTION_ID_LENGTH",
    "MAX_STREAMS_LIMIT",
    "MIN_ACTIVE_CONNECTION_ID_LIMIT",
    "MIN_MAX_UDP_PAYLOAD_SIZE",
    "QMUX_FORBIDDEN_PARAMETERS",
    "QMUX_PERMITTED_PARAMETERS",
    "SERVER_ONLY_PARAMETERS",
    "STATELESS_RESET_TOKEN_LENGTH",
    "UNSPECIFIED_IPV4",
    "UNSPECIFIED_IPV6",
    "PreferredAddress",
    "TransportParameterId",
    "TransportParameters",
    "VersionInformation",
    "decode_transport_parameters",
    "encode_transport_parameters",
    "grease_transport_parameter",
    "is_reserved_parameter_id",
    "validate_peer_parameters",
    "validate_qmux_parameters",
]


class TransportParameterId(IntEnum):
    """Transport parameter ids (RFC 9000 §18.2 and the extensions we speak)."""

    ORIGINAL_DESTINATION_CONNECTION_ID = 0x00
    MAX_IDLE_TIMEOUT = 0x01
    STATELESS_RESET_TOKEN = 0x02
    MAX_UDP_PAYLOAD_SIZE = 0x03
    INITIAL_MAX_DATA = 0x04
    INITIAL_MAX_STREAM_DATA_BIDI_LOCAL = 0x05
    INITIAL_MAX_STREAM_DATA_BIDI_REMOTE = 0x06
    INITIAL_MAX_STREAM_DATA_UNI = 0x07
    INITIAL_MAX_STREAMS_BIDI = 0x08
    INITIAL_MAX_STREAMS_UNI = 0x09
    ACK_DELAY_EXPONENT = 0x0A
    MAX_ACK_DELAY = 0x0B
    DISABLE_ACTIVE_MIGRATION = 0x0C
    PREFERRED_ADDRESS = 0x0D
    ACTIVE_CONNECTION_ID_LIMIT = 0x0E
    INITIAL_SOURCE_CONNECTION_ID = 0x0F
    RETRY_SOURCE_CONNECTION_ID = 0x10
    VERSION_INFORMATION = 0x11  # RFC 9368 §3
    MAX_DATAGRAM_FRAME_SIZE = 0x20  # RFC 9221 §3
    MIN_ACK_DELAY = 0xFF04DE1B  # draft-ietf-quic-ack-frequency §3
    MAX_RECORD_SIZE = 0x0571C59429CD0845  # draft-ietf-quic-qmux-02 §5.2


# RFC 9000 §18.2 defaults and limits.
DEFAULT_MAX_UDP_PAYLOAD_SIZE = 65527
MIN_MAX_UDP_PAYLOAD_SIZE = 1200
DEFAULT_ACK_DELAY_EXPONENT = 3
MAX_ACK_DELAY_EXPONENT = 20
#: max_ack_delay in milliseconds (RFC 9000 §18.2).
DEFAULT_MAX_ACK_DELAY = 25
#: max_ack_delay values of 2**14 or more are invalid.
MAX_ACK_DELAY_LIMIT = 1 << 14
DEFAULT_ACTIVE_CONNECTION_ID_LIMIT = 2
MIN_ACTIVE_CONNECTION_ID_LIMIT = 2
#: initial_max_streams_* above 2**60 are invalid (RFC 9000 §4.6).
MAX_STREAMS_LIMIT = 1 << 60
#: Connection IDs are at most 20 bytes in QUIC v1 (RFC 9000 §17.2).
MAX_CONNECTION_ID_LENGTH = 20
STATELESS_RESET_TOKEN_LENGTH = 16
#: draft-ietf-quic-qmux-02 §5.2: default, and the smallest value that may be sent.
DEFAULT_MAX_RECORD_SIZE = 16382
#: Reserved (grease) ids are 31 * N + 27 (RFC 9000 §18.1).
_GREASE_STEP = 31
_GREASE_OFFSET = 27
_GREASE_MAX_VALUE_LENGTH = 16
_IPV4_LENGTH = 4
_IPV6_LENGTH = 16
#: The all-zero addresses that mark an unused family in preferred_address.
UNSPECIFIED_IPV4 = ipaddress.IPv4Address(0)
UNSPECIFIED_IPV6 = ipaddress.IPv6Address(0)

_Id = TransportParameterId

#: A client must not send these (RFC 9000 §18.2).
SERVER_ONLY_PARAMETERS: frozenset[int] = frozenset(
    {
        _Id.ORIGINAL_DESTINATION_CONNECTION_ID,
        _Id.STATELESS_RESET_TOKEN,
        _Id.PREFERRED_ADDRESS,
        _Id.RETRY_SOURCE_CONNECTION_ID,
    }
)
#: draft-ietf-quic-qmux-02 §5.1: the §18.2 parameters QMux allows.
QMUX_PERMITTED_PARAMETERS: frozenset[int] = frozenset(
    {
        _Id.MAX_IDLE_TIMEOUT,
        _Id.INITIAL_MAX_DATA,
        _Id.INITIAL_MAX_STREAM_DATA_BIDI_LOCAL,
        _Id.INITIAL_MAX_STREAM_DATA_BIDI_REMOTE,
        _Id.INITIAL_MAX_STREAM_DATA_UNI,
        _Id.INITIAL_MAX_STREAMS_BIDI,
        _Id.INITIAL_MAX_STREAMS_UNI,
    }
)
#: draft-ietf-quic-qmux-02 §5.1: every other §18.2 parameter is prohibited.
QMUX_FORBIDDEN_PARAMETERS: frozenset[int] = (
    frozenset(i for i in _Id if i <= _Id.RETRY_SOURCE_CONNECTION_ID) - QMUX_PERMITTED_PARAMETERS
)


@attrs.define(kw_only=True)
class PreferredAddress:
    """The server's preferred_address (RFC 9000 §18.2, Figure 22).

    An unused address family is all zeros (``0.0.0.0:0`` or ``[::]:0``).
    """

    connection_id: bytes
    stateless_reset_token: bytes
    ipv4_address: ipaddress.IPv4Address = UNSPECIFIED_IPV4
    ipv4_port: int = 0
    ipv6_address: ipaddress.IPv6Address = UNSPECIFIED_IPV6
    ipv6_port: int = 0


@attrs.frozen
class VersionInformation:
    """version_information (RFC 9368 §3): the version this endpoint chose for the
    connection and the versions it is willing to use, in its order of preference."""

    chosen_version: int
    available_versions: tuple[int, ...] = ()


@attrs.define(kw_only=True)
class TransportParameters:
    """One endpoint's transport parameters (RFC 9000 §18.2).

    Times: ``max_idle_timeout`` and ``max_ack_delay`` in milliseconds,
    ``min_ack_delay`` in microseconds.
    """

    original_destination_connection_id: bytes | None = None
    max_idle_timeout: int = 0
    stateless_reset_token: bytes | None = None
    max_udp_payload_size: int = DEFAULT_MAX_UDP_PAYLOAD_SIZE
    initial_max_data: int = 0
    initial_max_stream_data_bidi_local: int = 0
    initial_max_stream_data_bidi_remote: int = 0
    initial_max_stream_data_uni: int = 0
    initial_max_streams_bidi: int = 0
    initial_max_streams_uni: int = 0
    ack_delay_exponent: int = DEFAULT_ACK_DELAY_EXPONENT
    max_ack_delay: int = DEFAULT_MAX_ACK_DELAY
    disable_active_migration: bool = False
    preferred_address: PreferredAddress | None = None
    active_connection_id_limit: int = DEFAULT_ACTIVE_CONNECTION_ID_LIMIT
    initial_source_connection_id: bytes | None = None
    retry_source_connection_id: bytes | None = None
    version_information: VersionInformation | None = None
    min_ack_delay: int | None = None
    #: RFC 9221 §3: the largest DATAGRAM frame accepted; 0 (the default): none.
    max_datagram_frame_size: int = 0
    max_record_size: int = DEFAULT_MAX_RECORD_SIZE
    unknown: list[tuple[int, bytes]] = attrs.Factory(list)
    #: Ids present in the decoded bytes (empty for locally built parameters).
    received_ids: frozenset[int] = attrs.field(default=frozenset(), eq=False, repr=False)


# -- value codecs ---------------------------------------------------------------------
# A codec is (decode(value_bytes) -> value, encode(value) -> bytes); decoders raise
# TransportParameterError (or DecodeError, converted by the caller).


def _fail(reason: str) -> TransportParameterError:
    return TransportParameterError(reason)


def _decode_int(value: memoryview) -> int:
    n, end = decode_varint(value, 0)
    if end != len(value):
        raise _fail("integer value does not fill its parameter")
    return n


def _decode_cid(value: memoryview) -> bytes:
    if len(value) > MAX_CONNECTION_ID_LENGTH:
        raise _fail(f"connection ID of {len(value)} bytes")
    return bytes(value)


def _decode_token(value: memoryview) -> bytes:
    if len(value) != STATELESS_RESET_TOKEN_LENGTH:
        raise _fail(f"stateless reset token of {len(value)} bytes")
    return bytes(value)


def _decode_flag(value: memoryview) -> bool:
    if len(value):
        raise _fail("a zero-length parameter has a value")
    return True


def _decode_preferred_address(value: memoryview) -> PreferredAddress:
    r = Reader(value)
    ipv4 = ipaddress.IPv4Address(r.pull_bytes(_IPV4_LENGTH))
    ipv4_port = r.pull_uint16()
    ipv6 = ipaddress.IPv6Address(r.pull_bytes(_IPV6_LENGTH))
    ipv6_port = r.pull_uint16()
    cid = r.pull_block(1)
    if not 1 <= len(cid) <= MAX_CONNECTION_ID_LENGTH:
        raise _fail(f"preferred_address with a {len(cid)}-byte connection ID")
    token = r.pull_bytes(STATELESS_RESET_TOKEN_LENGTH)
    r.expect_eof("preferred_address")
    return PreferredAddress(
        connection_id=cid,
        stateless_reset_token=token,
        ipv4_address=ipv4,
        ipv4_port=ipv4_port,
        ipv6_address=ipv6,
        ipv6_port=ipv6_port,
    )


def _encode_preferred_address(pa: PreferredAddress) -> bytes:
    w = Writer()
    w.push_bytes(pa.ipv4_address.packed)
    w.push_uint16(pa.ipv4_port)
    w.push_bytes(pa.ipv6_address.packed)
    w.push_uint16(pa.ipv6_port)
    w.push_block(1, pa.connection_id)
    w.push_bytes(pa.stateless_reset_token)
    return w.data


_VERSION_BYTES = 4


def _decode_version_information(value: memoryview) -> VersionInformation:
    """RFC 9368 §3: a length that is not a positive multiple of 4, or a version 0, is
    a TRANSPORT_PARAMETER_ERROR (untrusted input)."""
    if not value or len(value) % _VERSION_BYTES:
        raise _fail(f"version_information of {len(value)} bytes")
    versions = [
        int.from_bytes(value[i : i + _VERSION_BYTES], "big")
        for i in range(0, len(value), _VERSION_BYTES)
    ]
    if 0 in versions:
        raise _fail("version_information lists version 0")
    return VersionInformation(versions[0], tuple(versions[1:]))


def _encode_version_information(info: VersionInformation) -> bytes:
    versions = (info.chosen_version, *info.available_versions)
    return b"".join(v.to_bytes(_VERSION_BYTES, "big") for v in versions)


def _encode_raw(value: bytes) -> bytes:
    return value


def _encode_flag(value: bool) -> bytes:
    return b""


_INT = (_decode_int, encode_varint)
_CID = (_decode_cid, _encode_raw)
_TOKEN = (_decode_token, _encode_raw)
_FLAG = (_decode_flag, _encode_flag)
_PREFERRED = (_decode_preferred_address, _encode_preferred_address)
_VERSIONS = (_decode_version_information, _encode_version_information)

_Codec = tuple[Callable[[memoryview], Any], Callable[[Any], bytes]]

#: id -> (attribute, codec), in encoding order.
_PARAMETERS: dict[int, tuple[str, _Codec]] = {
    _Id.ORIGINAL_DESTINATION_CONNECTION_ID: ("original_destination_connection_id", _CID),
    _Id.MAX_IDLE_TIMEOUT: ("max_idle_timeout", _INT),
    _Id.STATELESS_RESET_TOKEN: ("stateless_reset_token", _TOKEN),
    _Id.MAX_UDP_PAYLOAD_SIZE: ("max_udp_payload_size", _INT),
    _Id.INITIAL_MAX_DATA: ("initial_max_data", _INT),
    _Id.INITIAL_MAX_STREAM_DATA_BIDI_LOCAL: ("initial_max_stream_data_bidi_local", _INT),
    _Id.INITIAL_MAX_STREAM_DATA_BIDI_REMOTE: ("initial_max_stream_data_bidi_remote", _INT),
    _Id.INITIAL_MAX_STREAM_DATA_UNI: ("initial_max_stream_data_uni", _INT),
    _Id.INITIAL_MAX_STREAMS_BIDI: ("initial_max_streams_bidi", _INT),
    _Id.INITIAL_MAX_STREAMS_UNI: ("initial_max_streams_uni", _INT),
    _Id.ACK_DELAY_EXPONENT: ("ack_delay_exponent", _INT),
    _Id.MAX_ACK_DELAY: ("max_ack_delay", _INT),
    _Id.DISABLE_ACTIVE_MIGRATION: ("disable_active_migration", _FLAG),
    _Id.PREFERRED_ADDRESS: ("preferred_address", _PREFERRED),
    _Id.ACTIVE_CONNECTION_ID_LIMIT: ("active_connection_id_limit", _INT),
    _Id.INITIAL_SOURCE_CONNECTION_ID: ("initial_source_connection_id", _CID),
    _Id.RETRY_SOURCE_CONNECTION_ID: ("retry_source_connection_id", _CID),
    _Id.VERSION_INFORMATION: ("version_information", _VERSIONS),
    _Id.MIN_ACK_DELAY: ("min_ack_delay", _INT),
    _Id.MAX_DATAGRAM_FRAME_SIZE: ("max_datagram_frame_size", _INT),
    _Id.MAX_RECORD_SIZE: ("max_record_size", _INT),
}

#: Inclusive bounds of the integer parameters that have them (RFC 9000 §18.2,
#: draft-ietf-quic-qmux-02 §5.2).
_BOUNDS: dict[str, tuple[int, int]] = {
    "max_udp_payload_size": (MIN_MAX_UDP_PAYLOAD_SIZE, VARINT_MAX),
    "initial_max_streams_bidi": (0, MAX_STREAMS_LIMIT),
    "initial_max_streams_uni": (0, MAX_STREAMS_LIMIT),
    "ack_delay_exponent": (0, MAX_ACK_DELAY_EXPONENT),
    "max_ack_delay": (0, MAX_ACK_DELAY_LIMIT - 1),
    "active_connection_id_limit": (MIN_ACTIVE_CONNECTION_ID_LIMIT, VARINT_MAX),
    "max_record_size": (DEFAULT_MAX_RECORD_SIZE, VARINT_MAX),
}

_DEFAULTS = TransportParameters()
#: (encoded id, attribute, encoder, default value) per known parameter, in encoding
#: order: what :func:`encode_transport_parameters` walks.
_ENCODING: tuple[tuple[bytes, str, Callable[[Any], bytes], Any], ...] = tuple(
    (encode_varint(param_id), name, encode, getattr(_DEFAULTS, name))
    for param_id, (name, (_, encode)) in _PARAMETERS.items()
)


def _problem(params: TransportParameters) -> str | None:
    """The first invalid value of ``params`` (RFC 9000 §18.2), or ``None``."""
    for name, (low, high) in _BOUNDS.items():
        value = getattr(params, name)
        if not low <= value <= high:
            return f"{name} {value} outside {low}..{high}"
    # draft-ietf-quic-ack-frequency §3: min_ack_delay (µs) <= max_ack_delay (ms).
    if params.min_ack_delay is not None and params.min_ack_delay > params.max_ack_delay * 1000:
        return f"min_ack_delay {params.min_ack_delay} µs exceeds max_ack_delay"
    return None


def decode_transport_parameters(data: bytes | bytearray | memoryview) -> TransportParameters:
    """Decode the transport parameters extension (RFC 9000 §18).

    Handles untrusted input; raises only TransportParameterError
    (TRANSPORT_PARAMETER_ERROR) for truncation, duplicates and invalid values.
    """
    params = TransportParameters()
    seen: set[int] = set()
    view = memoryview(data)
    end = len(view)
    pos = 0
    try:
        # One pass over the bytes with local offsets (no Reader: this runs on every
        # handshake, and the id/length pairs are all there is to walk).
        while pos < end:
            param_id, pos = decode_varint(view, pos)
            length, pos = decode_varint(view, pos)
            if pos + length > end:
                raise DecodeError(f"truncated: needed {length} bytes, {end - pos} left")
            value = view[pos : pos + length]
            pos += length
            if param_id in seen:
                raise _fail(f"duplicate transport parameter {param_id:#x}")
            seen.add(param_id)
            spec = _PARAMETERS.get(param_id)
            if spec is None:
                params.unknown.append((param_id, bytes(value)))
                continue
            name, (decode, _) = spec
            try:
                setattr(params, name, decode(value))
            except TransportParameterError as exc:
                raise _fail(f"{name}: {exc.reason}") from None
    except DecodeError as exc:
        raise _fail(f"malformed transport parameters: {exc.reason}") from None
    problem = _problem(params)
    if problem is not None:
        raise _fail(problem)
    params.received_ids = frozenset(seen)
    return params


def _present_ids(params: TransportParameters) -> Iterable[int]:
    """Ids whose value differs from the absent/default value."""
    for param_id, (name, _) in _PARAMETERS.items():
        if getattr(params, name) != getattr(_DEFAULTS, name):
            yield param_id


def encode_transport_parameters(params: TransportParameters) -> bytes:
    """Encode ``params`` (RFC 9000 §18); defaults and absent values are left out.

    Raises ``ValueError`` on values that are invalid to send.
    """
    problem = _problem(params)
    if problem is not None:
        raise ValueError(problem)
    parts: list[bytes] = []
    for encoded_id, name, encode, default in _ENCODING:
        value = getattr(params, name)
        if value != default:
            body = encode(value)
            parts += (encoded_id, encode_varint(len(body)), body)
    for param_id, value in params.unknown:
        if param_id in _PARAMETERS:
            raise ValueError(f"known parameter {param_id:#x} listed as unknown")
        parts += (encode_varint(param_id), encode_varint(len(value)), value)
    return b"".join(parts)


# -- grease (RFC 9000 §18.1) --------------------------------------------------------------
def is_reserved_parameter_id(param_id: int) -> bool:
    """Whether ``param_id`` is of the reserved form 31 * N + 27 (RFC 9000 §18.1)."""
    return param_id % _GREASE_STEP == _GREASE_OFFSET


def grease_transport_parameter(rng: random.Random | None = None) -> tuple[int, bytes]:
    """A random reserved parameter ``(id, value)`` to exercise the peer (§18.1)."""
    rng = rng or random.SystemRandom()
    n = rng.randrange((VARINT_MAX - _GREASE_OFFSET) // _GREASE_STEP + 1)
    value = rng.randbytes(rng.randrange(_GREASE_MAX_VALUE_LENGTH + 1))
    return _GREASE_STEP * n + _GREASE_OFFSET, value


# -- semantic checks ---------------------------------------------------------------------
def _name(param_id: int) -> str:
    return _PARAMETERS[param_id][0]


def _received(params: TransportParameters) -> set[int]:
    return set(params.received_ids) | set(_present_ids(params))


def validate_peer_parameters(params: TransportParameters, peer_is_server: bool) -> None:
    """QUIC role checks on the peer's parameters (RFC 9000 §18.2, §7.3).

    A client must not send server-only parameters; both must send
    initial_source_connection_id and a server original_destination_connection_id;
    a server with a zero-length connection ID must not send preferred_address.
    Comparing the connection IDs with those seen in packets (§7.3) is the
    connection's job.  Raises TransportParameterError.
    """
    if not peer_is_server:
        bad = sorted(_received(params) & SERVER_ONLY_PARAMETERS)
        if bad:
            raise _fail(f"client sent server-only transport parameter {_name(bad[0])}")
    if params.initial_source_connection_id is None:
        raise _fail("initial_source_connection_id is missing")
    if peer_is_server:
        if params.original_destination_connection_id is None:
            raise _fail("server did not send original_destination_connection_id")
        if params.preferred_address is not None and not params.initial_source_connection_id:
            raise _fail("preferred_address sent with a zero-length connection ID")


def validate_qmux_parameters(params: TransportParameters) -> None:
    """Reject parameters QMux prohibits (draft-ietf-quic-qmux-02 §5.1).

    Raises TransportParameterError naming the first prohibited parameter.
    Parameters defined outside RFC 9000 and not specified for QMux (such as
    min_ack_delay) are to be ignored, not rejected.
    """
    bad = sorted(_received(params) & QMUX_FORBIDDEN_PARAMETERS)
    if bad:
        raise _fail(f"transport parameter {_name(bad[0])} is prohibited in QMux")
