"""Material for fuzzing the QUIC connection and endpoint: real datagrams, forged packets.

* :func:`captured_datagrams` records every datagram of an in-memory handshake
  and a short two-way data transfer (Initial, Handshake and 1-RTT packets,
  coalesced as the stack sends them), so mutations start from real traffic.
* :func:`protect_one_rtt` / :func:`protect_long` build *valid* protected
  packets carrying arbitrary payload bytes with a connection's own send keys,
  so fuzzed frames get past the AEAD and reach the frame handlers.
* :func:`forged_initial` builds a client Initial for a fresh server from the
  public Initial keys (RFC 9001 §5.2): anyone can, so its frames are untrusted.
* :func:`mutate` applies one structure-aware mutation to a datagram.

Everything is deterministic: no clock, and randomness only from hypothesis.
"""

from __future__ import annotations

import functools
import random

import attrs

from mstls.core.recovery import PacketNumberSpace, SentPacket
from mstls.exceptions import DecryptionFailed
from mstls.quic.connection import QuicConnection
from mstls.quic.crypto import initial_protection
from mstls.wire.buffer import encode_varint
from mstls.wire.frames import CryptoFrame, decode_frames
from mstls.wire.packet import PacketType, encode_long_header, encode_short_header, parse_header

from .pair import Pair

__all__ = [
    "AEAD_TAG",
    "MUTATIONS",
    "Captured",
    "captured_datagrams",
    "established_pair",
    "first_initial_cids",
    "forged_initial",
    "initial_crypto",
    "mutate",
    "protect_long",
    "protect_one_rtt",
    "split_packets",
]

#: Bytes the AEAD appends (all QUIC v1 suites, RFC 9001 §5.3).
AEAD_TAG = 16
#: Packet number bytes written by the forging helpers (always room to sample, §5.4.2).
PN_LENGTH = 4
#: Bytes of the Length field the forging helpers write (any packet size fits).
LENGTH_SIZE = 4
#: A client Initial datagram is padded to this size (RFC 9000 §14.1).
INITIAL_DATAGRAM = 1200
#: Bytes moved each way by the capture run (a few 1-RTT packets with STREAM frames).
CAPTURE_TRANSFER = 6000

_LONG_SPACE_TYPE = {
    PacketNumberSpace.INITIAL: PacketType.INITIAL,
    PacketNumberSpace.HANDSHAKE: PacketType.HANDSHAKE,
}


@attrs.frozen
class Captured:
    """One datagram seen on the simulated wire."""

    to_server: bool
    data: bytes
    established: bool  # sent once both ends had completed the handshake


def established_pair() -> Pair:
    """A fresh pair whose handshake is complete and confirmed on both ends."""
    pair = Pair()
    pair.handshake()
    pair.run_until(lambda: not pair.in_flight)
    return pair


def _echo_transfer(pair: Pair, size: int) -> None:
    client = pair.client
    sid = client.streams.open_stream()
    client.streams.write(sid, bytes(range(256)) * (size // 256), fin=True)
    got = bytearray()
    server_sid: list[int] = []

    def done() -> bool:
        server = pair.server
        if not server_sid:
            server_sid.extend(server.streams.accept_pending())
            if server_sid:
                server.streams.write(server_sid[0], b"pong" * (size // 4), fin=True)
        if server_sid:
            server.streams.read(server_sid[0], 1 << 20)
        data, fin = client.streams.read(sid, 1 << 20)
        got.extend(data)
        return fin

    pair.run_until(done)


@functools.cache
def captured_datagrams() -> tuple[Captured, ...]:
    """Every datagram of one handshake and a small echo exchange, in sending order."""
    log: list[Captured] = []
    state = {"established": False}

    def record(data: bytes, to_server: bool) -> bytes:
        log.append(Captured(to_server, bytes(data), state["established"]))
        return data

    pair = Pair(tamper=record)
    pair.handshake()
    state["established"] = True
    _echo_transfer(pair, CAPTURE_TRANSFER)
    pair.run_until(lambda: not pair.in_flight)
    return tuple(log)


def split_packets(datagram: bytes, cid_length: int = 8) -> list[bytes]:
    """The coalesced packets of a datagram (the last runs to the end if unparsable)."""
    out: list[bytes] = []
    pos = 0
    while pos < len(datagram):
        try:
            end = parse_header(datagram, pos, cid_length).packet_end
        except Exception:
            end = len(datagram)
        if end <= pos:
            end = len(datagram)
        out.append(datagram[pos:end])
        pos = end
    return out


def _crypto_stream(payloads: list[bytes]) -> bytes:
    """Reassemble the CRYPTO frames of some packet payloads (they carry no gaps)."""
    parts: dict[int, bytes] = {}
    for payload in payloads:
        for frame in decode_frames(payload):
            if isinstance(frame, CryptoFrame):
                parts[frame.offset] = bytes(frame.data)
    out = bytearray()
    for offset in sorted(parts):
        out[offset : offset + len(parts[offset])] = parts[offset]
    return bytes(out)


def first_initial_cids() -> tuple[bytes, bytes]:
    """``(DCID, SCID)`` of the captured client's first Initial (its ClientHello names the SCID)."""
    header = parse_header(captured_datagrams()[0].data, 0, 8)
    return bytes(header.dcid), bytes(header.scid)


@functools.cache
def initial_crypto() -> tuple[bytes, bytes]:
    """``(ClientHello, ServerHello)``: the Initial CRYPTO streams of the captured handshake."""
    corpus = captured_datagrams()
    dcid, _ = first_initial_cids()
    client_keys, server_keys = initial_protection(dcid, is_client=True)
    sides: dict[bool, list[bytes]] = {True: [], False: []}
    for item in corpus:
        for packet in split_packets(item.data):
            header = parse_header(packet, 0, 8)
            if header.packet_type is not PacketType.INITIAL:
                continue
            keys = client_keys if item.to_server else server_keys
            try:
                _, payload, _ = keys.decrypt_packet(packet, header.pn_offset, -1)
            except DecryptionFailed:
                continue  # sent after a Retry or with other keys: not ours
            sides[item.to_server].append(payload)
    return _crypto_stream(sides[True]), _crypto_stream(sides[False])


# -- forging protected packets -----------------------------------------------------------


def _take_packet_number(sender: QuicConnection, space_id: PacketNumberSpace, now: float) -> int:
    """The sender's next packet number, recorded as sent (not in flight).

    The peer never takes the forged packet for a duplicate, the sender's own
    later packets stay unique, and the peer's ACK of it is no "ACK of a packet
    never sent" (which would close the sender, RFC 9000 §13.1).
    """
    space = sender.spaces[space_id]
    pn = space.next_packet_number
    space.next_packet_number += 1
    sender.recovery.on_packet_sent(
        SentPacket(pn, space_id, 0, ack_eliciting=False, in_flight=False), now
    )
    return pn


def protect_one_rtt(sender: QuicConnection, payload: bytes, now: float) -> bytes:
    """A 1-RTT packet from ``sender`` to its peer carrying ``payload`` as frames."""
    keys = sender.spaces[PacketNumberSpace.APPLICATION].send_keys
    assert keys is not None, "the sender has no 1-RTT keys"
    pn = _take_packet_number(sender, PacketNumberSpace.APPLICATION, now)
    header = encode_short_header(sender.peer_cids.current, pn, PN_LENGTH)
    return bytes(keys.encrypt_packet(header, payload, pn))


def protect_long(
    sender: QuicConnection,
    space_id: PacketNumberSpace,
    payload: bytes,
    now: float,
    *,
    pad_to: int = 0,
) -> bytes:
    """An Initial or Handshake packet from ``sender`` carrying ``payload`` as frames."""
    keys = sender.spaces[space_id].send_keys
    assert keys is not None, f"the sender has no {space_id.name} keys"
    pn = _take_packet_number(sender, space_id, now)
    packet_type = _LONG_SPACE_TYPE[space_id]
    token = sender.retry_token if packet_type is PacketType.INITIAL and sender.is_client else b""
    dcid, scid = sender.peer_cids.current, sender.host_cid
    overhead = (
        len(
            encode_long_header(
                packet_type,
                dcid,
                scid,
                pn,
                PN_LENGTH,
                length=64 + PN_LENGTH,
                token=token,
                length_size=LENGTH_SIZE,
            )
        )
        + AEAD_TAG
    )
    if pad_to and overhead + len(payload) < pad_to:
        payload = payload + bytes(pad_to - overhead - len(payload))  # PADDING frames
    header = encode_long_header(
        packet_type,
        dcid,
        scid,
        pn,
        PN_LENGTH,
        length=PN_LENGTH + len(payload) + AEAD_TAG,
        token=token,
        length_size=LENGTH_SIZE,
    )
    return bytes(keys.encrypt_packet(header, payload, pn))


def forged_initial(
    dcid: bytes,
    scid: bytes,
    payload: bytes,
    *,
    pn: int = 0,
    token: bytes = b"",
    pad_to: int = INITIAL_DATAGRAM,
) -> bytes:
    """A client Initial to a server that has never heard of ``dcid``, padded to ``pad_to``."""
    keys, _ = initial_protection(dcid, is_client=True)
    base = len(
        encode_long_header(
            PacketType.INITIAL,
            dcid,
            scid,
            pn,
            PN_LENGTH,
            length=64 + PN_LENGTH,
            token=token,
            length_size=LENGTH_SIZE,
        )
    )
    padding = max(0, pad_to - base - AEAD_TAG - len(payload), 4 - len(payload))
    payload = payload + bytes(padding)
    header = encode_long_header(
        PacketType.INITIAL,
        dcid,
        scid,
        pn,
        PN_LENGTH,
        length=PN_LENGTH + len(payload) + AEAD_TAG,
        token=token,
        length_size=LENGTH_SIZE,
    )
    return bytes(keys.encrypt_packet(header, payload, pn))


# -- mutations ---------------------------------------------------------------------------


def _flip_bits(data: bytearray, rng: random.Random) -> bytearray:
    for _ in range(rng.randint(1, 8)):
        if data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return data


def _truncate(data: bytearray, rng: random.Random) -> bytearray:
    return data[: rng.randrange(len(data) + 1)]


def _insert(data: bytearray, rng: random.Random) -> bytearray:
    at = rng.randrange(len(data) + 1)
    return data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) + data[at:]


def _delete(data: bytearray, rng: random.Random) -> bytearray:
    if not data:
        return data
    at = rng.randrange(len(data))
    return data[:at] + data[at + rng.randint(1, 16) :]


def _set_byte(data: bytearray, rng: random.Random, offsets: tuple[int, ...]) -> bytearray:
    """Overwrite a header byte with an interesting value."""
    at = rng.choice(offsets)
    if at < len(data):
        data[at] = rng.choice((0x00, 0x01, 0x14, 0x15, 0x3F, 0x40, 0x7F, 0x80, 0xC0, 0xFF))
    return data


def _dcid_length(data: bytearray, rng: random.Random) -> bytearray:
    return _set_byte(data, rng, (5,))  # long header: byte 5 is the DCID length


def _first_byte(data: bytearray, rng: random.Random) -> bytearray:
    if data:
        data[0] = rng.randrange(256)
    return data


def _version(data: bytearray, rng: random.Random) -> bytearray:
    if len(data) >= 5 and data[0] & 0x80:
        version = rng.choice((0, 2, 0x6B3343CF, 0xFF00001D, 0x1A2A3A4A, rng.getrandbits(32)))
        data[1:5] = version.to_bytes(4, "big")
    return data


def _long_field(data: bytearray, rng: random.Random) -> bytearray:
    """Rewrite the token length or Length varint of a long header with a new value."""
    if len(data) < 7 or not data[0] & 0x80:
        return data
    pos = 6 + data[5]
    if pos >= len(data):
        return data
    pos += 1 + data[pos]  # after the SCID: token length (Initial) or Length
    if pos >= len(data):
        return data
    value = rng.choice(
        (0, 1, 63, 64, 1199, 1200, 16383, 1 << 20, (1 << 62) - 1, rng.randrange(len(data) + 64))
    )
    old = 1 << (data[pos] >> 6)
    return data[:pos] + encode_varint(value) + data[pos + old :]


def _splice(data: bytearray, rng: random.Random) -> bytearray:
    """Reorder, duplicate or drop the coalesced packets of the datagram."""
    packets = split_packets(bytes(data))
    choice = rng.randrange(3)
    if choice == 0:
        rng.shuffle(packets)
    elif choice == 1 and packets:
        packets.insert(rng.randrange(len(packets) + 1), rng.choice(packets))
    elif packets:
        del packets[rng.randrange(len(packets))]
    return bytearray(b"".join(packets))


def _graft(data: bytearray, rng: random.Random) -> bytearray:
    """Append a packet of another captured datagram (cross-connection coalescing)."""
    corpus = captured_datagrams()
    other = split_packets(rng.choice(corpus).data)
    return data + rng.choice(other)


MUTATIONS = (
    _flip_bits,
    _truncate,
    _insert,
    _delete,
    _dcid_length,
    _first_byte,
    _version,
    _long_field,
    _splice,
    _graft,
)


def mutate(data: bytes, seed: int, rounds: int = 1) -> bytes:
    """``rounds`` structure-aware mutations of ``data`` chosen by ``seed``."""
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(rounds):
        out = rng.choice(MUTATIONS)(out, rng)
    return bytes(out)
