"""QUIC frame types and their properties, as data (RFC 9000 §12.4 Table 3, §19).

Theory of operation
-------------------
This module holds no codec, only facts the connection core consults for every
received frame, and the :class:`Frame` base class every frame class derives from:

* :class:`FrameType` names every frame type of RFC 9000 §19 plus the two frames
  of the ACK frequency extension (draft-ietf-quic-ack-frequency) and the two
  DATAGRAM types (RFC 9221 §4).
* :data:`FRAME_INFO` is RFC 9000 Table 3 transcribed: for each type, the packet
  types it may appear in ("Pkts" column) and the special rules of the "Spec"
  column (N: not ack-eliciting, C: not congestion controlled, P: probing,
  F: flow controlled).  Everything else is derived from it:
  :data:`FRAME_SPACES`, :data:`ALLOWED_FRAME_TYPES`, :data:`ACK_ELICITING`, ...
* A frame received in a packet type its row does not allow is a
  PROTOCOL_VIOLATION (RFC 9000 §12.4); the check is the core's, with this data.

:class:`PacketKind` names match those of :class:`mstls.wire.packet.PacketType`
(``PacketKind[packet_type.name]`` converts), without importing it.

Note on 0-RTT: Table 3 allows RETIRE_CONNECTION_ID in 0-RTT packets while
RFC 9000 §12.5 notes it cannot usefully be sent there and a server MAY treat it
as a PROTOCOL_VIOLATION; this table follows Table 3.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum, IntFlag
from typing import ClassVar, NamedTuple

from .buffer import Reader, Writer

__all__ = [
    "ACK_ELICITING",
    "ACK_FREQUENCY_FRAME_TYPES",
    "ALLOWED_FRAME_TYPES",
    "CONGESTION_CONTROLLED",
    "FLOW_CONTROLLED",
    "FRAME_INFO",
    "FRAME_SPACES",
    "KNOWN_FRAME_TYPES",
    "NOT_ACK_ELICITING",
    "PROBING",
    "REPR_DATA_LIMIT",
    "STREAM_FLAG_FIN",
    "STREAM_FLAG_LEN",
    "STREAM_FLAG_OFF",
    "STREAM_TYPE_MASK",
    "Frame",
    "FrameDecoder",
    "FrameInfo",
    "FrameType",
    "PacketKind",
    "QMuxFrameType",
    "frame_type_name",
    "is_ack_eliciting",
]


class FrameType(IntEnum):
    """QUIC v1 frame types (RFC 9000 §19, IANA "QUIC Frame Types")."""

    PADDING = 0x00
    PING = 0x01
    ACK = 0x02
    ACK_ECN = 0x03
    RESET_STREAM = 0x04
    STOP_SENDING = 0x05
    CRYPTO = 0x06
    NEW_TOKEN = 0x07
    STREAM = 0x08  # 0x08..0x0f: the low three bits are OFF, LEN, FIN
    MAX_DATA = 0x10
    MAX_STREAM_DATA = 0x11
    MAX_STREAMS_BIDI = 0x12
    MAX_STREAMS_UNI = 0x13
    DATA_BLOCKED = 0x14
    STREAM_DATA_BLOCKED = 0x15
    STREAMS_BLOCKED_BIDI = 0x16
    STREAMS_BLOCKED_UNI = 0x17
    NEW_CONNECTION_ID = 0x18
    RETIRE_CONNECTION_ID = 0x19
    PATH_CHALLENGE = 0x1A
    PATH_RESPONSE = 0x1B
    CONNECTION_CLOSE = 0x1C
    CONNECTION_CLOSE_APPLICATION = 0x1D
    HANDSHAKE_DONE = 0x1E
    # draft-ietf-quic-ack-frequency §4, §5 (negotiated with min_ack_delay).
    IMMEDIATE_ACK = 0x1F
    ACK_FREQUENCY = 0xAF
    # RFC 9221 §4 (negotiated with max_datagram_frame_size).
    DATAGRAM = 0x30
    DATAGRAM_WITH_LENGTH = 0x31


class QMuxFrameType(IntEnum):
    """Frame types QMux adds (draft-ietf-quic-qmux-02 §4.2, §4.3)."""

    QX_TRANSPORT_PARAMETERS = 0x3F5153300D0A0D0A
    QX_PING_REQUEST = 0x348C67529EF8C7BD
    QX_PING_RESPONSE = 0x348C67529EF8C7BE


#: STREAM frame type bits (RFC 9000 §19.8).
STREAM_FLAG_FIN = 0x01
STREAM_FLAG_LEN = 0x02
STREAM_FLAG_OFF = 0x04
#: ``frame_type & STREAM_TYPE_MASK == FrameType.STREAM`` for all STREAM frames.
STREAM_TYPE_MASK = ~0x07


#: Bytes of a payload field shown by a frame's ``repr``.
REPR_DATA_LIMIT = 32


class Frame:  # noqa: PLW1641 - mutable, so not hashable (__eq__ without __hash__)
    """Base of every frame class: ``frame_type``, ``encode(w)``, equality and repr.

    A frame class is a plain slotted class (so that the compiled build makes it
    a native class, issue 15): it names its fields in :attr:`FIELDS`, in
    constructor order, and ``__slots__ = FIELDS``.  Two frames are equal when
    they are of the same class with equal fields; frames are not hashable.
    """

    __slots__ = ()
    TYPE: ClassVar[int]
    #: The frame's fields, in the order of its constructor's parameters.
    FIELDS: ClassVar[tuple[str, ...]] = ()

    @property
    def frame_type(self) -> int:
        """The frame type as it goes on the wire (with its flag bits)."""
        return self.TYPE

    def encode(self, w: Writer) -> None:
        """Append the frame (type and body) to ``w``."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.FIELDS)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={_repr_value(getattr(self, name))}" for name in self.FIELDS)
        return f"{type(self).__name__}({fields})"


def _repr_value(value: object) -> str:
    """A field's repr; payloads (views included) as bytes, cut at 32 bytes."""
    if isinstance(value, bytes | bytearray | memoryview):
        head = bytes(value[:REPR_DATA_LIMIT])
        more = len(value) - REPR_DATA_LIMIT
        return f"{head!r}...+{more}" if more > 0 else repr(head)
    return repr(value)


#: ``decoder(reader, frame_type) -> Frame``; the type varint is already read.
FrameDecoder = Callable[[Reader, int], Frame]


class PacketKind(IntFlag):
    """Packet types a frame may appear in (RFC 9000 Table 3 "Pkts" column)."""

    INITIAL = 0x1
    HANDSHAKE = 0x2
    ZERO_RTT = 0x4
    ONE_RTT = 0x8


class FrameInfo(NamedTuple):
    """One row of RFC 9000 Table 3."""

    name: str
    packets: PacketKind
    ack_eliciting: bool  # not marked N
    congestion_controlled: bool  # not marked C
    probing: bool  # marked P
    flow_controlled: bool  # marked F


_KIND_LETTERS = {
    "I": PacketKind.INITIAL,
    "H": PacketKind.HANDSHAKE,
    "0": PacketKind.ZERO_RTT,
    "1": PacketKind.ONE_RTT,
}

# (first type, last type, name, Pkts, Spec) exactly as in RFC 9000 Table 3.
# "ih" (lower case) means only CONNECTION_CLOSE 0x1c may appear in Initial and
# Handshake packets; it is split into two rows below.
_TABLE_3: tuple[tuple[int, int, str, str, str], ...] = (
    (0x00, 0x00, "PADDING", "IH01", "NP"),
    (0x01, 0x01, "PING", "IH01", ""),
    (0x02, 0x03, "ACK", "IH_1", "NC"),
    (0x04, 0x04, "RESET_STREAM", "__01", ""),
    (0x05, 0x05, "STOP_SENDING", "__01", ""),
    (0x06, 0x06, "CRYPTO", "IH_1", ""),
    (0x07, 0x07, "NEW_TOKEN", "___1", ""),
    (0x08, 0x0F, "STREAM", "__01", "F"),
    (0x10, 0x10, "MAX_DATA", "__01", ""),
    (0x11, 0x11, "MAX_STREAM_DATA", "__01", ""),
    (0x12, 0x13, "MAX_STREAMS", "__01", ""),
    (0x14, 0x14, "DATA_BLOCKED", "__01", ""),
    (0x15, 0x15, "STREAM_DATA_BLOCKED", "__01", ""),
    (0x16, 0x17, "STREAMS_BLOCKED", "__01", ""),
    (0x18, 0x18, "NEW_CONNECTION_ID", "__01", "P"),
    (0x19, 0x19, "RETIRE_CONNECTION_ID", "__01", ""),
    (0x1A, 0x1A, "PATH_CHALLENGE", "__01", "P"),
    (0x1B, 0x1B, "PATH_RESPONSE", "___1", "P"),
    (0x1C, 0x1C, "CONNECTION_CLOSE", "IH01", "N"),
    (0x1D, 0x1D, "CONNECTION_CLOSE", "__01", "N"),
    (0x1E, 0x1E, "HANDSHAKE_DONE", "___1", ""),
    # draft-ietf-quic-ack-frequency: ack-eliciting, congestion controlled, and
    # not in 0-RTT (§3: min_ack_delay is not remembered across connections).
    (0x1F, 0x1F, "IMMEDIATE_ACK", "___1", ""),
    (0xAF, 0xAF, "ACK_FREQUENCY", "___1", ""),
    # RFC 9221 §4, §5: 0-RTT and 1-RTT, ack-eliciting, congestion controlled,
    # not flow controlled.
    (0x30, 0x31, "DATAGRAM", "__01", ""),
)


def _build_info() -> dict[int, FrameInfo]:
    info: dict[int, FrameInfo] = {}
    for first, last, name, pkts, spec in _TABLE_3:
        kinds = PacketKind(0)
        for letter in pkts:
            kinds |= _KIND_LETTERS.get(letter, PacketKind(0))
        row = FrameInfo(
            name=name,
            packets=kinds,
            ack_eliciting="N" not in spec,
            congestion_controlled="C" not in spec,
            probing="P" in spec,
            flow_controlled="F" in spec,
        )
        for frame_type in range(first, last + 1):
            info[frame_type] = row
    return info


#: RFC 9000 Table 3, one entry per frame type value (0x08..0x0f expanded).
FRAME_INFO: dict[int, FrameInfo] = _build_info()

#: Frame type -> packet types it may appear in.
FRAME_SPACES: dict[int, PacketKind] = {t: i.packets for t, i in FRAME_INFO.items()}

#: Packet type -> the frame types allowed in it.
ALLOWED_FRAME_TYPES: dict[PacketKind, frozenset[int]] = {
    kind: frozenset(t for t, kinds in FRAME_SPACES.items() if kinds & kind) for kind in PacketKind
}

#: Frame types that make a packet ack-eliciting (RFC 9000 §13.2: not N).
ACK_ELICITING: frozenset[int] = frozenset(t for t, i in FRAME_INFO.items() if i.ack_eliciting)
#: Frame types marked N: packets with only these are not ack-eliciting.
NOT_ACK_ELICITING: frozenset[int] = frozenset(FRAME_INFO) - ACK_ELICITING
#: Frame types counted in bytes in flight (RFC 9002 §2; not C).
CONGESTION_CONTROLLED: frozenset[int] = frozenset(
    t for t, i in FRAME_INFO.items() if i.congestion_controlled
)
#: Probing frames (RFC 9000 §9.1: P).
PROBING: frozenset[int] = frozenset(t for t, i in FRAME_INFO.items() if i.probing)
#: Flow-controlled frames (RFC 9000 §4: F).
FLOW_CONTROLLED: frozenset[int] = frozenset(t for t, i in FRAME_INFO.items() if i.flow_controlled)
#: Frame types that exist only when the ACK frequency extension is negotiated.
ACK_FREQUENCY_FRAME_TYPES: frozenset[int] = frozenset(
    {FrameType.IMMEDIATE_ACK, FrameType.ACK_FREQUENCY}
)


#: Every frame type this package can name (RFC 9000, ACK frequency, QMux).
KNOWN_FRAME_TYPES: frozenset[int] = frozenset(FRAME_INFO) | frozenset(QMuxFrameType)


def is_ack_eliciting(frame_type: int) -> bool:
    """Whether a frame of this type makes its packet ack-eliciting (RFC 9000 §13.2).

    Unknown types count as ack-eliciting, as RFC 9000 §13.2 defines only N frames
    as not ack-eliciting.
    """
    return frame_type not in NOT_ACK_ELICITING


def frame_type_name(frame_type: int) -> str:
    """A readable name for logs and error messages, e.g. ``"STREAM(0x0e)"``."""
    info = FRAME_INFO.get(frame_type)
    if info is not None:
        return f"{info.name}({frame_type:#04x})"
    if frame_type in KNOWN_FRAME_TYPES:
        return f"{QMuxFrameType(frame_type).name}({frame_type:#x})"
    return f"unknown frame type {frame_type:#x}"
