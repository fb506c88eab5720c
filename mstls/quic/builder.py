"""Building UDP datagrams of coalesced, protected QUIC packets (RFC 9000 §12.2, §17).

Theory of operation
-------------------
A :class:`DatagramBuilder` fills one datagram.  For each packet the connection
calls :meth:`DatagramBuilder.open_packet`, which reserves the header and the
AEAD tag and returns a :class:`PacketSink` (a :class:`~mstls.core.sending.FrameSink`)
that frame producers write into.  Packets are protected only in
:meth:`DatagramBuilder.finish`, because a datagram that carries an
ack-eliciting Initial packet must be padded to 1200 bytes (RFC 9000 §14.1)
and the padding goes into the last packet.  Long headers are written with a
2-byte Length field so their size is known before the payload is.

Each finished packet is described by a :class:`BuiltPacket` (number, space,
size, ack-eliciting, in-flight, the frame records) for loss recovery.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core.recovery import PacketNumberSpace
from ..core.sending import SentRecord
from ..wire.packet import QUIC_VERSION_1, PacketType, encode_long_header, encode_short_header

__all__ = ["AEAD_TAG_LENGTH", "BuiltPacket", "DatagramBuilder", "PacketSink"]

AEAD_TAG_LENGTH = 16
#: Bytes of packet number we always write; keeps header sizes predictable.
PACKET_NUMBER_LENGTH = 4
#: A long header's Length field is always 2 bytes (values < 16384).
LENGTH_FIELD_SIZE = 2
#: Smallest datagram carrying an ack-eliciting Initial packet (RFC 9000 §14.1).
MIN_INITIAL_DATAGRAM = 1200


class PacketSink:
    """The payload of one packet under construction (a FrameSink)."""

    __slots__ = ("ack_eliciting", "capacity", "in_flight", "payload", "records")

    def __init__(self, capacity: int) -> None:
        self.payload = bytearray()
        self.capacity = capacity
        self.records: list[SentRecord] = []
        self.ack_eliciting = False
        self.in_flight = False

    @property
    def remaining(self) -> int:
        return self.capacity - len(self.payload)

    def add(
        self,
        frame: bytes | bytearray | memoryview,
        record: SentRecord | None = None,
        *,
        ack_eliciting: bool = True,
    ) -> None:
        self.payload += frame
        if record is not None:
            self.records.append(record)
        if ack_eliciting:
            self.ack_eliciting = True
            self.in_flight = True

    def add_parts(
        self,
        header: bytes,
        payload: bytes | bytearray | memoryview,
        record: SentRecord | None = None,
    ) -> None:
        self.payload += header
        self.payload += payload
        if record is not None:
            self.records.append(record)
        self.ack_eliciting = True
        self.in_flight = True

    def pad(self, n: int) -> None:
        """PADDING frames (zero bytes); padded packets count as in flight (RFC 9002 §2)."""
        if n > 0:
            self.payload += bytes(n)
            self.in_flight = True


class BuiltPacket:
    """What recovery (and qlog) needs to know about a sent packet."""

    __slots__ = (
        "ack_eliciting",
        "in_flight",
        "is_mtu_probe",
        "packet_number",
        "packet_type",
        "payload",
        "records",
        "size",
        "space",
    )

    def __init__(
        self,
        space: PacketNumberSpace,
        packet_type: PacketType,
        packet_number: int,
        sink: PacketSink,
        size: int,
    ) -> None:
        self.space = space
        self.packet_type = packet_type
        self.packet_number = packet_number
        self.size = size
        #: The plaintext frames (a reference to the sink's buffer, for qlog).
        self.payload = sink.payload
        self.ack_eliciting = sink.ack_eliciting
        self.in_flight = sink.in_flight
        self.records = sink.records
        self.is_mtu_probe = False


Encryptor = Callable[[bytes, Any, int], bytearray]


class _Pending:
    __slots__ = ("encrypt", "header_args", "packet_number", "packet_type", "sink", "space")

    def __init__(
        self,
        space: PacketNumberSpace,
        packet_type: PacketType,
        header_args: dict[str, Any],
        packet_number: int,
        encrypt: Encryptor,
        sink: PacketSink,
    ) -> None:
        self.space = space
        self.packet_type = packet_type
        self.header_args = header_args
        self.packet_number = packet_number
        self.encrypt = encrypt
        self.sink = sink


class DatagramBuilder:
    """Fills one datagram of at most ``max_size`` bytes with coalesced packets."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._used = 0
        self._packets: list[_Pending] = []
        self.pad_to_initial_minimum = False

    @property
    def remaining(self) -> int:
        return self.max_size - self._used

    @property
    def empty(self) -> bool:
        return not self._packets

    @staticmethod
    def header_size(packet_type: PacketType, dcid: bytes, scid: bytes, token: bytes) -> int:
        if packet_type is PacketType.ONE_RTT:
            return 1 + len(dcid) + PACKET_NUMBER_LENGTH
        size = 1 + 4 + 1 + len(dcid) + 1 + len(scid) + LENGTH_FIELD_SIZE + PACKET_NUMBER_LENGTH
        if packet_type is PacketType.INITIAL:
            size += len(token) + (1 if len(token) < 64 else 2 if len(token) < 16384 else 4)
        return size

    def open_packet(
        self,
        space: PacketNumberSpace,
        packet_type: PacketType,
        packet_number: int,
        encrypt: Encryptor,
        *,
        dcid: bytes,
        scid: bytes = b"",
        token: bytes = b"",
        key_phase: int = 0,
        min_payload: int = 0,
        version: int = QUIC_VERSION_1,
    ) -> PacketSink | None:
        """Reserve room for a packet; ``None`` when fewer than ``min_payload`` bytes fit."""
        overhead = self.header_size(packet_type, dcid, scid, token) + AEAD_TAG_LENGTH
        capacity = self.remaining - overhead
        if capacity < max(min_payload, 4):
            return None
        sink = PacketSink(capacity)
        if packet_type is PacketType.ONE_RTT:
            args: dict[str, Any] = {"dcid": dcid, "key_phase": key_phase}
        else:
            args = {"dcid": dcid, "scid": scid, "token": token, "version": version}
        self._packets.append(_Pending(space, packet_type, args, packet_number, encrypt, sink))
        return sink

    def close_packet(self, sink: PacketSink) -> bool:
        """Account for a packet's final payload; an empty packet is withdrawn."""
        pending = self._packets[-1]
        assert pending.sink is sink
        if not sink.payload:
            self._packets.pop()
            return False
        dcid = pending.header_args["dcid"]
        scid = pending.header_args.get("scid", b"")
        token = pending.header_args.get("token", b"")
        self._used += (
            self.header_size(pending.packet_type, dcid, scid, token)
            + len(sink.payload)
            + AEAD_TAG_LENGTH
        )
        return True

    def finish(self) -> tuple[bytes, list[BuiltPacket]]:
        """Pad if needed, protect every packet and return the datagram."""
        if not self._packets:
            return b"", []
        if self.pad_to_initial_minimum and self._used < MIN_INITIAL_DATAGRAM:
            last = self._packets[-1].sink
            grow = min(MIN_INITIAL_DATAGRAM, self.max_size) - self._used
            last.pad(grow)
            self._used += grow
        out = bytearray()
        built: list[BuiltPacket] = []
        for p in self._packets:
            # A 4-byte packet number always leaves room to sample (RFC 9001 §5.4.2).
            payload = p.sink.payload
            header = self._header(p)
            packet = p.encrypt(header, payload, p.packet_number)
            built.append(BuiltPacket(p.space, p.packet_type, p.packet_number, p.sink, len(packet)))
            out += packet
        self._packets = []
        return bytes(out), built

    @staticmethod
    def _header(p: _Pending) -> bytes:
        if p.packet_type is PacketType.ONE_RTT:
            return encode_short_header(
                p.header_args["dcid"],
                p.packet_number,
                PACKET_NUMBER_LENGTH,
                key_phase=p.header_args["key_phase"],
            )
        return encode_long_header(
            p.packet_type,
            p.header_args["dcid"],
            p.header_args["scid"],
            p.packet_number,
            PACKET_NUMBER_LENGTH,
            length=PACKET_NUMBER_LENGTH + len(p.sink.payload) + AEAD_TAG_LENGTH,
            token=p.header_args["token"],
            length_size=LENGTH_FIELD_SIZE,
            version=p.header_args["version"],
        )
