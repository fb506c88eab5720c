"""QUIC v1 packet headers (RFC 9000 §17): parsing, encoding, packet numbers.

Theory of operation
-------------------
A UDP datagram carries one or more QUIC packets (RFC 9000 §12.2).  Every
packet but the last must have a long header, whose Length field says where
it ends; a short-header (1-RTT) packet always runs to the end of the datagram.
:func:`parse_header` reads one header at an offset and returns a
:class:`PacketHeader` with absolute offsets into the datagram: ``pn_offset``
(where the protected packet number starts) and ``packet_end`` (where the next
coalesced packet starts).  The caller decrypts ``data[pos:packet_end]`` and
calls :func:`parse_header` again at ``packet_end`` until the datagram is used up.

Everything here sees bytes *before* header protection is removed: the low bits
of the first byte (reserved bits, packet number length, key phase) and the
packet number itself are still masked, so they are neither interpreted nor
checked here.  That is the job of :mod:`mstls.quic.crypto`.

Headers of versions other than 1 are parsed only as far as the
version-independent invariants go (RFC 8999 §5): version and connection IDs,
which is what a server needs to answer with a Version Negotiation packet.

All parsers handle untrusted input and raise only
:class:`~mstls.exceptions.DecodeError`.  Encoders raise ``ValueError`` on
arguments that could not be put on the wire (a programming error).
"""

from __future__ import annotations

from enum import IntEnum

from ..exceptions import DecodeError
from .buffer import VARINT_MAX, decode_varint, encode_varint

__all__ = [
    "FIXED_BIT",
    "HEADER_FORM_BIT",
    "KEY_PHASE_BIT",
    "LONG_PACKET_TYPES",
    "LONG_RESERVED_BITS",
    "LONG_TYPE_BITS",
    "MAX_CID_LENGTH",
    "MAX_PACKET_NUMBER",
    "PACKET_NUMBER_LENGTH_MASK",
    "QUIC_VERSION_1",
    "QUIC_VERSION_2",
    "QUIC_VERSION_NEGOTIATION",
    "RETRY_INTEGRITY_TAG_LENGTH",
    "SHORT_RESERVED_BITS",
    "SPIN_BIT",
    "SUPPORTED_VERSIONS",
    "PacketHeader",
    "PacketType",
    "decode_packet_number",
    "encode_long_header",
    "encode_packet_number",
    "encode_retry",
    "encode_short_header",
    "encode_version_negotiation",
    "is_long_header",
    "parse_header",
    "peek_destination_cid",
]

#: QUIC version 1 (RFC 9000 §15).
QUIC_VERSION_1 = 0x00000001
#: QUIC version 2 (RFC 9369 §3.1).
QUIC_VERSION_2 = 0x6B3343CF
#: The version field of a Version Negotiation packet (RFC 9000 §17.2.1).
QUIC_VERSION_NEGOTIATION = 0x00000000
#: Versions whose long headers we parse in full.
SUPPORTED_VERSIONS: tuple[int, ...] = (QUIC_VERSION_1, QUIC_VERSION_2)

#: Longest connection ID in QUIC v1 (RFC 9000 §17.2).
MAX_CID_LENGTH = 20
#: Longest connection ID the version-independent header allows (RFC 8999 §5.1).
MAX_INVARIANT_CID_LENGTH = 255
#: Packet numbers are below 2**62 (RFC 9000 §12.3).
MAX_PACKET_NUMBER = (1 << 62) - 1
#: Bytes in a Retry Integrity Tag (RFC 9001 §5.8).
RETRY_INTEGRITY_TAG_LENGTH = 16
#: A packet number is encoded on 1 to 4 bytes (RFC 9000 §17.1).
MAX_PACKET_NUMBER_LENGTH = 4

# First-byte bits (RFC 9000 §17.2, §17.3.1).
HEADER_FORM_BIT = 0x80
FIXED_BIT = 0x40
SPIN_BIT = 0x20
KEY_PHASE_BIT = 0x04
LONG_RESERVED_BITS = 0x0C
SHORT_RESERVED_BITS = 0x18
PACKET_NUMBER_LENGTH_MASK = 0x03
_LONG_TYPE_SHIFT = 4
_LONG_TYPE_MASK = 0x30
_TYPE_SPECIFIC_MASK = 0x0F
_VN_UNUSED_MASK = 0x7F

#: Bytes of a long header before the DCID: first byte, version, DCID length.
_LONG_DCID_OFFSET = 6
_VERSION_SIZE = 4


class PacketType(IntEnum):
    """Packet types (RFC 9000 §17).

    The long-header types of version 1 have the value of their two type bits
    (RFC 9000 Table 5), so ``first_byte = 0xC0 | type << 4 | ...``.
    ``UNSUPPORTED_VERSION`` marks a long header of a version we do not speak:
    only its invariant fields are known (RFC 8999 §5.1).
    """

    INITIAL = 0
    ZERO_RTT = 1
    HANDSHAKE = 2
    RETRY = 3
    ONE_RTT = 4
    VERSION_NEGOTIATION = 5
    UNSUPPORTED_VERSION = 6


#: The long-header packet type for each value of the two type bits, per version
#: (RFC 9000 Table 5; RFC 9369 §3.2 changes every one of them).
_P = PacketType
LONG_PACKET_TYPES: dict[int, tuple[PacketType, PacketType, PacketType, PacketType]] = {
    QUIC_VERSION_1: (_P.INITIAL, _P.ZERO_RTT, _P.HANDSHAKE, _P.RETRY),
    QUIC_VERSION_2: (_P.RETRY, _P.INITIAL, _P.ZERO_RTT, _P.HANDSHAKE),
}
#: The two type bits of each long-header packet type, per version (the inverse).
LONG_TYPE_BITS: dict[int, dict[PacketType, int]] = {
    version: {packet_type: bits for bits, packet_type in enumerate(types)}
    for version, types in LONG_PACKET_TYPES.items()
}
#: Long-header packet types followed by Length and a packet number.
_PROTECTED_LONG_TYPES = frozenset((PacketType.INITIAL, PacketType.ZERO_RTT, PacketType.HANDSHAKE))


class PacketHeader:
    """One parsed packet header; offsets are absolute within the datagram.

    * ``length``: for Initial, 0-RTT and Handshake packets the Length field
      (packet number + protected payload); for 1-RTT packets the bytes from
      ``pn_offset`` to the end of the datagram; 0 for Retry and Version
      Negotiation.
    * ``pn_offset``: where the (protected) packet number starts.
    * ``packet_end``: where this packet ends (the next coalesced packet starts).
    * ``fixed_bit``: the Fixed Bit; a v1 packet with it clear is invalid and is
      dropped by the caller (RFC 9000 §17.2) unless the peer greases it.
    * ``token``: the Initial token, or the Retry Token of a Retry packet.
    * ``integrity_tag``: the Retry Integrity Tag (Retry only).
    * ``supported_versions``: the list of a Version Negotiation packet.
    * ``version`` is ``None`` for short headers, which carry no version.
    """

    __slots__ = (
        "dcid",
        "first_byte",
        "fixed_bit",
        "integrity_tag",
        "is_long",
        "length",
        "packet_end",
        "packet_type",
        "pn_offset",
        "scid",
        "supported_versions",
        "token",
        "version",
    )

    def __init__(
        self,
        is_long: bool,
        packet_type: PacketType,
        first_byte: int,
        version: int | None,
        dcid: bytes,
        scid: bytes = b"",
        token: bytes = b"",
        length: int = 0,
        pn_offset: int = 0,
        packet_end: int = 0,
        integrity_tag: bytes = b"",
        supported_versions: tuple[int, ...] = (),
    ) -> None:
        self.is_long = is_long
        self.packet_type = packet_type
        self.first_byte = first_byte
        self.fixed_bit = bool(first_byte & FIXED_BIT)
        self.version = version
        self.dcid = dcid
        self.scid = scid
        self.token = token
        self.length = length
        self.pn_offset = pn_offset
        self.packet_end = packet_end
        self.integrity_tag = integrity_tag
        self.supported_versions = supported_versions

    @property
    def retry_token(self) -> bytes:
        """The Retry Token of a Retry packet (RFC 9000 §17.2.5), kept in ``token``."""
        return self.token

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in sorted(self.__slots__))
        return f"PacketHeader({fields})"


def is_long_header(first_byte: int) -> bool:
    """True when the Header Form bit says long header (RFC 9000 §17.2)."""
    return bool(first_byte & HEADER_FORM_BIT)


# -- parsing ----------------------------------------------------------------------


def peek_destination_cid(data: bytes | bytearray | memoryview, short_dcid_len: int) -> bytes:
    """The Destination Connection ID of the first packet of a datagram.

    The fast path for demultiplexing datagrams to connections (RFC 9000 §5.2):
    a long header carries its DCID length, a short header's DCID has the
    length the endpoint chose (``short_dcid_len``).  Handles untrusted input:
    raises :class:`DecodeError` when truncated.
    """
    n = len(data)
    if n == 0:
        raise DecodeError("empty datagram")
    if data[0] & HEADER_FORM_BIT:
        if n < _LONG_DCID_OFFSET:
            raise DecodeError("truncated long header")
        end = _LONG_DCID_OFFSET + data[_LONG_DCID_OFFSET - 1]
        start = _LONG_DCID_OFFSET
    else:
        start = 1
        end = 1 + short_dcid_len
    if end > n:
        raise DecodeError("truncated destination connection ID")
    return bytes(data[start:end])


def parse_header(
    data: bytes | bytearray | memoryview, pos: int = 0, short_dcid_len: int = 0
) -> PacketHeader:
    """Parse the header of the packet starting at ``data[pos]`` (RFC 9000 §17).

    Handles untrusted input: raises only :class:`DecodeError` on truncated or
    malformed headers.  ``short_dcid_len`` is the length of our own connection
    IDs, needed for short headers.  The next coalesced packet, if any, starts
    at ``header.packet_end``.
    """
    n = len(data)
    if pos >= n:
        raise DecodeError("no packet at this offset")
    first = data[pos]
    if not first & HEADER_FORM_BIT:
        pn_offset = pos + 1 + short_dcid_len
        if pn_offset > n:
            raise DecodeError("truncated short header")
        # Positional arguments: this is the per-packet hot path.
        return PacketHeader(
            False,
            PacketType.ONE_RTT,
            first,
            None,
            bytes(data[pos + 1 : pn_offset]),
            b"",
            b"",
            n - pn_offset,
            pn_offset,
            n,
        )
    return _parse_long_header(data, pos, first)


def _parse_cid(data: bytes | bytearray | memoryview, p: int, limit: int) -> tuple[bytes, int]:
    """A length-prefixed connection ID at ``p``; returns it and the next offset."""
    if p >= len(data):
        raise DecodeError("truncated connection ID length")
    length = data[p]
    if length > limit:
        raise DecodeError(f"connection ID of {length} bytes exceeds {limit}")
    end = p + 1 + length
    if end > len(data):
        raise DecodeError("truncated connection ID")
    return bytes(data[p + 1 : end]), end


def _parse_long_header(data: bytes | bytearray | memoryview, pos: int, first: int) -> PacketHeader:
    n = len(data)
    if pos + 1 + _VERSION_SIZE > n:
        raise DecodeError("truncated long header version")
    version = int.from_bytes(data[pos + 1 : pos + 1 + _VERSION_SIZE], "big")
    cid_limit = MAX_CID_LENGTH if version in SUPPORTED_VERSIONS else MAX_INVARIANT_CID_LENGTH
    dcid, p = _parse_cid(data, pos + 1 + _VERSION_SIZE, cid_limit)
    scid, p = _parse_cid(data, p, cid_limit)
    if version == QUIC_VERSION_NEGOTIATION:
        return _parse_version_negotiation(data, first, dcid, scid, p)
    if version not in SUPPORTED_VERSIONS:
        return PacketHeader(
            is_long=True,
            packet_type=PacketType.UNSUPPORTED_VERSION,
            first_byte=first,
            version=version,
            dcid=dcid,
            scid=scid,
            pn_offset=p,
            packet_end=n,
        )
    packet_type = LONG_PACKET_TYPES[version][(first & _LONG_TYPE_MASK) >> _LONG_TYPE_SHIFT]
    if packet_type is PacketType.RETRY:
        return _parse_retry(data, first, dcid, scid, p, version=version)
    token = b""
    if packet_type is PacketType.INITIAL:
        token_length, p = decode_varint(data, p)
        if p + token_length > n:
            raise DecodeError("truncated Initial token")
        token = bytes(data[p : p + token_length])
        p += token_length
    length, p = decode_varint(data, p)
    end = p + length
    if end > n:
        raise DecodeError(f"packet Length {length} runs past the datagram")
    return PacketHeader(
        is_long=True,
        packet_type=packet_type,
        first_byte=first,
        version=version,
        dcid=dcid,
        scid=scid,
        token=token,
        length=length,
        pn_offset=p,
        packet_end=end,
    )


def _parse_retry(
    data: bytes | bytearray | memoryview,
    first: int,
    dcid: bytes,
    scid: bytes,
    p: int,
    *,
    version: int,
) -> PacketHeader:
    """Retry (RFC 9000 §17.2.5): token to the end of the datagram, minus the tag."""
    n = len(data)
    tag_start = n - RETRY_INTEGRITY_TAG_LENGTH
    if tag_start < p:
        raise DecodeError("Retry packet too short for its integrity tag")
    return PacketHeader(
        is_long=True,
        packet_type=PacketType.RETRY,
        first_byte=first,
        version=version,
        dcid=dcid,
        scid=scid,
        token=bytes(data[p:tag_start]),
        integrity_tag=bytes(data[tag_start:n]),
        pn_offset=p,
        packet_end=n,
    )


def _parse_version_negotiation(
    data: bytes | bytearray | memoryview, first: int, dcid: bytes, scid: bytes, p: int
) -> PacketHeader:
    """Version Negotiation (RFC 9000 §17.2.1): a list of 32-bit versions."""
    n = len(data)
    if (n - p) % _VERSION_SIZE:
        raise DecodeError("Version Negotiation list is not a whole number of versions")
    versions = tuple(
        int.from_bytes(data[i : i + _VERSION_SIZE], "big") for i in range(p, n, _VERSION_SIZE)
    )
    return PacketHeader(
        is_long=True,
        packet_type=PacketType.VERSION_NEGOTIATION,
        first_byte=first,
        version=QUIC_VERSION_NEGOTIATION,
        dcid=dcid,
        scid=scid,
        pn_offset=p,
        packet_end=n,
        supported_versions=versions,
    )


# -- encoding ----------------------------------------------------------------------

_VARINT_SIZE_PREFIX = {1: 0x00, 2: 0x40, 4: 0x80, 8: 0xC0}


def _encode_varint_sized(value: int, size: int) -> bytes:
    """``value`` as a variable-length integer of exactly ``size`` bytes (RFC 9000 §16)."""
    if size == 0:
        return encode_varint(value)
    prefix = _VARINT_SIZE_PREFIX.get(size)
    if prefix is None:
        raise ValueError(f"invalid variable-length integer size {size}")
    if not 0 <= value < 1 << (8 * size - 2) or value > VARINT_MAX:
        raise ValueError(f"{value} does not fit a {size}-byte variable-length integer")
    out = bytearray(value.to_bytes(size, "big"))
    out[0] |= prefix
    return bytes(out)


def _check_cid(cid: bytes, what: str) -> None:
    if len(cid) > MAX_CID_LENGTH:
        raise ValueError(f"{what} of {len(cid)} bytes exceeds {MAX_CID_LENGTH}")


def _check_pn_length(pn_length: int) -> None:
    if not 1 <= pn_length <= MAX_PACKET_NUMBER_LENGTH:
        raise ValueError(f"packet number length {pn_length} is not 1 to 4")


def _truncated_pn(packet_number: int, pn_length: int) -> bytes:
    return (packet_number & ((1 << (8 * pn_length)) - 1)).to_bytes(pn_length, "big")


def encode_long_header(
    packet_type: PacketType,
    dcid: bytes,
    scid: bytes,
    packet_number: int,
    pn_length: int,
    *,
    length: int,
    version: int = QUIC_VERSION_1,
    token: bytes = b"",
    length_size: int = 0,
) -> bytes:
    """An unprotected Initial, 0-RTT or Handshake header (RFC 9000 §17.2).

    ``length`` is the Length field: ``pn_length`` + payload + AEAD tag.
    ``packet_number`` is the full number; its low ``pn_length`` bytes are
    written.  ``length_size`` forces the Length encoding to 1, 2, 4 or 8
    bytes (0: shortest), so a header can be written before the payload size
    is final.  Reserved bits are zero.
    """
    if packet_type not in _PROTECTED_LONG_TYPES:
        raise ValueError(f"{packet_type!r} has no packet number")
    if token and packet_type is not PacketType.INITIAL:
        raise ValueError("only Initial packets carry a token")
    _check_cid(dcid, "DCID")
    _check_cid(scid, "SCID")
    _check_pn_length(pn_length)
    if length < pn_length:
        raise ValueError("Length must cover the packet number")
    out = bytearray()
    bits = LONG_TYPE_BITS[version][packet_type]
    out.append(HEADER_FORM_BIT | FIXED_BIT | bits << _LONG_TYPE_SHIFT | (pn_length - 1))
    out += version.to_bytes(_VERSION_SIZE, "big")
    out.append(len(dcid))
    out += dcid
    out.append(len(scid))
    out += scid
    if packet_type is PacketType.INITIAL:
        out += encode_varint(len(token))
        out += token
    out += _encode_varint_sized(length, length_size)
    out += _truncated_pn(packet_number, pn_length)
    return bytes(out)


def encode_short_header(
    dcid: bytes,
    packet_number: int,
    pn_length: int,
    *,
    key_phase: int = 0,
    spin_bit: bool = False,
) -> bytes:
    """An unprotected 1-RTT header (RFC 9000 §17.3.1); reserved bits are zero."""
    _check_cid(dcid, "DCID")
    _check_pn_length(pn_length)
    first = FIXED_BIT | (pn_length - 1)
    if key_phase:
        first |= KEY_PHASE_BIT
    if spin_bit:
        first |= SPIN_BIT
    return bytes((first,)) + dcid + _truncated_pn(packet_number, pn_length)


def encode_version_negotiation(
    dcid: bytes, scid: bytes, versions: tuple[int, ...] | list[int], *, unused_bits: int = FIXED_BIT
) -> bytes:
    """A Version Negotiation packet (RFC 9000 §17.2.1).

    ``dcid``/``scid`` echo the client's SCID/DCID.  The 7 unused bits are
    arbitrary; by default only 0x40 is set, as §17.2.1 recommends when QUIC
    shares a port with other protocols.
    """
    for cid in (dcid, scid):
        if len(cid) > MAX_INVARIANT_CID_LENGTH:
            raise ValueError("connection ID too long for a Version Negotiation packet")
    out = bytearray((HEADER_FORM_BIT | (unused_bits & _VN_UNUSED_MASK),))
    out += QUIC_VERSION_NEGOTIATION.to_bytes(_VERSION_SIZE, "big")
    out.append(len(dcid))
    out += dcid
    out.append(len(scid))
    out += scid
    for version in versions:
        out += version.to_bytes(_VERSION_SIZE, "big")
    return bytes(out)


def encode_retry(
    dcid: bytes,
    scid: bytes,
    token: bytes,
    *,
    version: int = QUIC_VERSION_1,
    unused_bits: int = 0,
) -> bytes:
    """A Retry packet without its integrity tag (RFC 9000 §17.2.5).

    :func:`mstls.quic.retry.retry_integrity_tag` computes the tag to append.
    """
    _check_cid(dcid, "DCID")
    _check_cid(scid, "SCID")
    out = bytearray()
    out.append(
        HEADER_FORM_BIT
        | FIXED_BIT
        | LONG_TYPE_BITS[version][PacketType.RETRY] << _LONG_TYPE_SHIFT
        | (unused_bits & _TYPE_SPECIFIC_MASK)
    )
    out += version.to_bytes(_VERSION_SIZE, "big")
    out.append(len(dcid))
    out += dcid
    out.append(len(scid))
    out += scid
    out += token
    return bytes(out)


# -- packet numbers ----------------------------------------------------------------


def encode_packet_number(full_pn: int, largest_acked: int | None) -> int:
    """How many bytes (1-4) to encode ``full_pn`` with (RFC 9000 §17.1, A.2).

    The encoding must represent more than twice the range of unacknowledged
    packet numbers: the smallest ``n`` with ``num_unacked <= 2**(8n - 1)``.
    ``largest_acked`` is ``None`` before anything was acknowledged.
    """
    num_unacked = full_pn + 1 if largest_acked is None else full_pn - largest_acked
    if num_unacked < 1:
        raise ValueError("packet number is not above the largest acknowledged")
    num_bytes = ((num_unacked - 1).bit_length() + 8) // 8
    if num_bytes > MAX_PACKET_NUMBER_LENGTH:
        raise ValueError(f"{num_unacked} unacknowledged packets cannot be encoded")
    return num_bytes


def decode_packet_number(largest_pn: int, truncated_pn: int, pn_nbits: int) -> int:
    """Recover a full packet number from its truncated form (RFC 9000 §17.1, A.3).

    ``largest_pn`` is the largest packet number successfully processed in
    this packet number space, -1 when none was.
    """
    expected_pn = largest_pn + 1
    pn_win = 1 << pn_nbits
    pn_hwin = pn_win >> 1
    candidate_pn = (expected_pn & ~(pn_win - 1)) | truncated_pn
    if candidate_pn <= expected_pn - pn_hwin and candidate_pn < (1 << 62) - pn_win:
        return candidate_pn + pn_win
    if candidate_pn > expected_pn + pn_hwin and candidate_pn >= pn_win:
        return candidate_pn - pn_win
    return candidate_pn
