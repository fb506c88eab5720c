"""Receiving: datagrams → packets → frames → handlers (RFC 9000 §12, §17; RFC 9001 §5).

Theory of operation
-------------------
A datagram may hold several coalesced packets (§12.2); each is parsed, its
protection removed with the keys of its packet number space, and its frames
decoded and dispatched through :data:`FRAME_HANDLERS`.  Whether a frame type is
allowed in a packet type comes from RFC 9000 Table 3
(:data:`~mstls.wire.frame_types.ALLOWED_FRAME_TYPES`); anything else is a
PROTOCOL_VIOLATION naming the frame.

Packets that cannot be decrypted are dropped (RFC 9001 §5.2), not fatal; a
short-header packet that cannot be decrypted is checked against the peer's
stateless reset tokens (RFC 9000 §10.3.1).  Duplicates are dropped before
their frames are processed (§12.3).  Every byte here is untrusted input: the
only exceptions that leave a handler are the project's protocol errors, which
close the connection with their code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..codes import TransportErrorCode
from ..core.lifecycle import CloseInfo, State
from ..core.recovery import PacketNumberSpace
from ..core.stateless_reset import is_stateless_reset
from ..core.stream_manager import STREAM_FRAME_HANDLERS
from ..exceptions import DecodeError, DecryptionFailed, ProtocolError
from ..wire.buffer import Reader
from ..wire.frame_types import ACK_ELICITING, ALLOWED_FRAME_TYPES, FrameType, PacketKind
from ..wire.frames import (
    AckFrame,
    AckFrequencyFrame,
    ApplicationCloseFrame,
    ConnectionCloseFrame,
    CryptoFrame,
    NewConnectionIdFrame,
    NewTokenFrame,
    PathChallengeFrame,
    RetireConnectionIdFrame,
    decode_frame,
)
from ..wire.packet import PacketHeader, PacketType, parse_header
from .builder import MIN_INITIAL_DATAGRAM
from .crypto import OneRttKeys, PacketProtection
from .datagrams import DATAGRAM_HANDLERS
from .paths import PathsMixin
from .retry import verify_retry
from .sending import SendingMixin
from .state import ConnectionState
from .version_retry import on_version_negotiation

__all__ = ["FRAME_HANDLERS", "MAX_PENDING_PATH_RESPONSES", "ReceivingMixin"]

#: PATH_RESPONSE frames waiting to be sent, at most; older challenges go unanswered.
MAX_PENDING_PATH_RESPONSES = 4

_PACKET_SPACE = {
    PacketType.INITIAL: PacketNumberSpace.INITIAL,
    PacketType.ZERO_RTT: PacketNumberSpace.APPLICATION,  # RFC 9000 §12.3
    PacketType.HANDSHAKE: PacketNumberSpace.HANDSHAKE,
    PacketType.ONE_RTT: PacketNumberSpace.APPLICATION,
}
_PACKET_KIND = {
    PacketType.INITIAL: PacketKind.INITIAL,
    PacketType.ZERO_RTT: PacketKind.ZERO_RTT,
    PacketType.HANDSHAKE: PacketKind.HANDSHAKE,
    PacketType.ONE_RTT: PacketKind.ONE_RTT,
}


class _Context:
    """What a frame handler may need to know about the packet it came in."""

    __slots__ = ("dcid", "now", "space")

    def __init__(self, space: PacketNumberSpace, dcid: bytes, now: float) -> None:
        self.space = space
        self.dcid = dcid
        self.now = now


def _too_small_for_initial(conn: ConnectionState, datagram: memoryview) -> bool:
    """RFC 9000 §14.1: a server discards Initial packets in datagrams under 1200 bytes."""
    return not conn.is_client and len(datagram) < MIN_INITIAL_DATAGRAM


class ReceivingMixin(SendingMixin):
    """The receive path of :class:`~mstls.quic.connection.QuicConnection`."""

    #: Packets decrypted and not duplicates (statistics).
    packets_received: int

    def handle_timer(self, now: float) -> None:
        """Implemented by :class:`~mstls.quic.connection.QuicConnection`."""
        raise NotImplementedError

    def receive_datagram(
        self,
        data: bytes | bytearray | memoryview,
        addr: Any,
        now: float,
        ecn: int = 0,
        *,
        local: Any = None,
    ) -> None:
        """Process one UDP datagram from the peer at ``addr`` (untrusted input).

        ``ecn`` is the ECN codepoint it arrived with (RFC 9000 §13.4.1,
        :mod:`.ecn_marking`); ``local`` tags the driver's socket it arrived on
        (:mod:`.paths`).
        """
        state = self.lifecycle.state
        if state is State.DRAINING or state is State.TERMINATED:
            return
        handshake_deadline = self.handshake_deadline
        if now >= self.idle_deadline or (
            handshake_deadline is not None and now >= handshake_deadline
        ):
            # docs/error-model.md T1-T5: a passed deadline fires before later input.
            self.handle_timer(now)
            if self.lifecycle.state is not state:
                return
        self.receive_codepoint = ecn
        view = memoryview(data)
        self.bytes_received += len(view)
        if self.recovery.amplification_blocked:
            self.recovery.amplification_blocked = False  # more credit: re-arm (§6.2.2.1)
        self.arrival_path = self._arrival(addr, local)
        received = self.packets_received
        try:
            self._receive_packets(view, now)
        finally:
            self._after_datagram_on_path(len(view), self.packets_received > received)

    def _receive_packets(self, view: memoryview, now: float) -> None:
        pos = 0
        while pos < len(view):
            try:
                header = parse_header(view, pos, self.config.cid_length)
            except DecodeError:
                return  # the rest of the datagram cannot be parsed: drop it (§12.2)
            kind = header.packet_type
            if kind is PacketType.VERSION_NEGOTIATION:
                self._on_version_negotiation(header, now)
                return
            if kind is PacketType.RETRY:
                self._on_retry(view, header, now)
                return
            if (
                kind in _PACKET_SPACE
                and header.fixed_bit
                and not self._receive_packet(view, pos, header, now)
                and kind is PacketType.ONE_RTT
                and is_stateless_reset(view, self.peer_cids.reset_tokens())
            ):
                self.on_stateless_reset()
                return
            pos = header.packet_end
            if self.lifecycle.state is State.TERMINATED:
                return
        if self.lifecycle.state is State.CLOSING:
            self.close_pending = True  # answer with CONNECTION_CLOSE again (§10.2.1)

    # -- one packet ---------------------------------------------------------------------
    def _receive_packet(self, view: memoryview, pos: int, header: PacketHeader, now: float) -> bool:
        """Decrypt and process one packet; False if it could not be decrypted."""
        space_id = _PACKET_SPACE[header.packet_type]
        space = self.spaces[space_id]
        keys: Any = space.recv_keys
        if header.packet_type is PacketType.ZERO_RTT:
            keys = self.zero_rtt_recv  # server only (RFC 9001 §4.6.1, early.py)
        if header.is_long and header.version != self.version:
            keys = self._keys_for_version(header.version, space_id)
        if keys is None:
            return False  # keys not yet available, or discarded (RFC 9001 §4.9, §5.7)
        if space_id == PacketNumberSpace.INITIAL and _too_small_for_initial(self, view):
            return True  # RFC 9000 §14.1: dropped, as if never received
        packet = view[pos : header.packet_end]
        try:
            _header, payload, pn = keys.decrypt_packet(
                packet, header.pn_offset - pos, space.acks.largest_received
            )
        except DecryptionFailed:
            return False
        except ProtocolError as exc:  # reserved bits set, KEY_UPDATE_ERROR
            self.fail(exc, now)
            return True
        if space.acks.is_duplicate(pn):
            return True
        largest = space.acks.largest_received
        if not self._admit_on_path(header, payload, pn, largest):
            return True  # RFC 9000 §9: migration disabled, dropped
        self.packets_received += 1
        if self.qlog is not None:
            self._qlog_received(header, pn, header.packet_end - pos, payload, keys, now)
        self._on_first_packets(header, space_id)
        try:
            ack_eliciting, ping_only = self._process_frames(
                payload, _PACKET_KIND[header.packet_type], _Context(space_id, header.dcid, now)
            )
        except ProtocolError as exc:
            self.fail(exc, now)
            return True
        space.acks.on_packet_received(
            pn,
            ack_eliciting,
            now,
            self.receive_codepoint or None,
            ping_only=ping_only,
        )
        self._after_packet_on_path(now)
        self.reset_idle_timer(now)
        self.ack_eliciting_sent_since_receive = False
        if isinstance(keys, OneRttKeys) and keys.has_previous and self.key_discard_deadline is None:
            self.key_discard_deadline = now + 3 * self.pto_interval()
        return True

    def _keys_for_version(
        self, version: int | None, space: PacketNumberSpace
    ) -> PacketProtection | OneRttKeys | None:
        """Keys for a long header of a version other than ours (RFC 9369 §4.1), or
        ``None`` to drop it.  A client follows the server to the first other version
        it sees (if it offered it); a server still opens the original version's
        Initials; every other packet of another version is dropped."""
        if version is None:
            return None
        if self.is_client:
            moved = self.version != self.original_version
            # Once the ServerHello was read in our version, that is the negotiated one.
            settled = self.spaces[PacketNumberSpace.HANDSHAKE].recv_keys is not None
            if moved or settled or version not in self.config.versions:
                return None
            self.switch_version(version)
            return self.spaces[space].recv_keys
        if space == PacketNumberSpace.INITIAL and version == self.original_version:
            return self.original_initial_recv
        return None

    def _qlog_received(
        self, header: PacketHeader, pn: int, length: int, payload: bytes, keys: Any, now: float
    ) -> None:
        """``transport:packet_received`` with its frames, and a key update the
        packet revealed (RFC 9001 §6.2; qlog is on)."""
        assert self.qlog is not None
        one_rtt = header.packet_type is PacketType.ONE_RTT
        peer = self.peer_params
        self.qlog.packet(
            now,
            "transport:packet_received",
            header.packet_type,
            pn,
            length,
            payload,
            dcid=header.dcid,
            scid=None if one_rtt else header.scid,
            ack_delay_exponent=peer.ack_delay_exponent if one_rtt and peer is not None else 3,
        )
        if isinstance(keys, OneRttKeys):
            self.qlog.one_rtt_generations(
                now, keys.send_generation, keys.receive_generation, "remote_update"
            )

    def _on_first_packets(self, header: PacketHeader, space: PacketNumberSpace) -> None:
        """Learn the server's CID; validate the client's address (RFC 9000 §7.2, §8.1)."""
        if self.is_client and not self.peer_cid_set and header.is_long:
            self.peer_cids.replace_initial(bytes(header.scid))
            self.peer_cid_set = True
        if not self.is_client and space == PacketNumberSpace.HANDSHAKE:
            self.address_validated = True
            self.discard_space(PacketNumberSpace.INITIAL)  # RFC 9001 §4.9.1
            self.recovery.peer_address_validated = True

    def _process_frames(self, payload: bytes, kind: PacketKind, ctx: _Context) -> tuple[bool, bool]:
        """Decode and dispatch every frame; returns whether any was ack-eliciting,
        and whether PING was the only ack-eliciting frame type (then the packet is
        acknowledged at once, :mod:`mstls.core.ack_tracker`)."""
        if not payload:
            raise ProtocolError("packet without frames", frame_type=None)
        allowed = ALLOWED_FRAME_TYPES[kind]
        reader = Reader(payload)
        ack_eliciting = False
        only_ping = True
        while not reader.eof():
            frame = decode_frame(reader, self.frame_decoders)
            frame_type = frame.frame_type
            if frame_type not in allowed:
                raise ProtocolError(
                    f"frame type {frame_type:#x} is not allowed in {kind.name} packets",
                    frame_type=frame_type,
                )
            if frame_type in ACK_ELICITING:
                ack_eliciting = True
                if frame_type != FrameType.PING:
                    only_ping = False
            handler = FRAME_HANDLERS.get(frame_type)
            if handler is not None:
                handler(self, frame, ctx)
            else:
                # Stream and flow-control frames go to the stream manager (shared
                # with QMux): one table for every connection, no bound methods each.
                stream_handler = STREAM_FRAME_HANDLERS.get(frame_type)
                if stream_handler is not None:
                    stream_handler(self.streams, frame)
        return ack_eliciting, ack_eliciting and only_ping

    # -- handlers -------------------------------------------------------------------------
    def _on_ack(self, frame: AckFrame, ctx: _Context) -> None:
        exponent = (
            self.peer_params.ack_delay_exponent
            if self.peer_params is not None and ctx.space == PacketNumberSpace.APPLICATION
            else 3
        )
        result = self.recovery.on_ack_received(ctx.space, frame, exponent, ctx.now)
        self.on_ack_result(result, ctx.now)

    def _on_crypto(self, frame: CryptoFrame, ctx: _Context) -> None:
        self.receive_crypto(ctx.space, frame, ctx.now)

    def _on_new_token(self, frame: NewTokenFrame, ctx: _Context) -> None:
        if not self.is_client:
            raise ProtocolError(
                "a client sent NEW_TOKEN",
                error_code=TransportErrorCode.PROTOCOL_VIOLATION,
                frame_type=FrameType.NEW_TOKEN,
            )

    def _on_new_connection_id(self, frame: NewConnectionIdFrame, ctx: _Context) -> None:
        self.peer_cids.on_new_connection_id(frame)

    def _on_retire_connection_id(self, frame: RetireConnectionIdFrame, ctx: _Context) -> None:
        self.local_cids.on_retire_connection_id(frame, ctx.dcid)

    def _on_path_challenge(self, frame: PathChallengeFrame, ctx: _Context) -> None:
        """RFC 9000 §8.2.2: echo the data, at most once per challenge.

        Only the newest :data:`MAX_PENDING_PATH_RESPONSES` wait while congestion
        control holds them back, so a flood of challenges cannot grow our state.
        """
        if not self._on_path_challenge_frame(bytes(frame.data)):
            return  # answered on the path it came from (RFC 9000 §8.2.2, paths.py)
        pending = self.pending_path_responses
        pending.append(bytes(frame.data))
        if len(pending) > MAX_PENDING_PATH_RESPONSES:
            del pending[0]

    def _on_connection_close(
        self, frame: ConnectionCloseFrame | ApplicationCloseFrame, ctx: _Context
    ) -> None:
        is_application = isinstance(frame, ApplicationCloseFrame)
        info = CloseInfo(
            frame.error_code,
            None if is_application else frame.offending_frame_type,  # type: ignore[union-attr]
            frame.reason_text,
            by_peer=True,
            is_application=is_application,
        )
        self.enter_draining(info, ctx.now)

    def _on_ack_frequency(self, frame: AckFrequencyFrame, ctx: _Context) -> None:
        """draft-ietf-quic-ack-frequency §4: acknowledge less (or more) often."""
        if frame.requested_max_ack_delay < self.config.min_ack_delay_us:
            raise ProtocolError(
                "ACK_FREQUENCY asks for a max_ack_delay below our min_ack_delay",
                frame_type=FrameType.ACK_FREQUENCY,
            )
        if frame.sequence_number < self.ack_frequency_received:
            return  # an older request arrived late
        self.ack_frequency_received = frame.sequence_number + 1
        acks = self.spaces[PacketNumberSpace.APPLICATION].acks
        acks.set_ack_frequency(frame.ack_eliciting_threshold, frame.reordering_threshold)
        self.ack_delay = frame.requested_max_ack_delay / 1_000_000

    def _on_immediate_ack(self, frame: Any, ctx: _Context) -> None:
        self.spaces[ctx.space].acks.request_immediate_ack(ctx.now)

    def _on_handshake_done(self, frame: Any, ctx: _Context) -> None:
        self.on_handshake_done(ctx.now)

    # -- version negotiation and Retry (client) -------------------------------------------
    def _on_version_negotiation(self, header: PacketHeader, now: float) -> None:
        """RFC 9000 §6.2, RFC 9368 §4: retry once in a common version, or abandon."""
        on_version_negotiation(self, header, now)  # type: ignore[arg-type]

    def _on_retry(self, view: memoryview, header: PacketHeader, now: float) -> None:
        """RFC 9000 §17.2.5.2: accept one valid Retry before any Initial from the server."""
        if not self.is_client or self.peer_cid_set or self.retry_source_cid is not None:
            return
        if not header.token:
            return  # a client MUST discard a Retry with an empty token (§17.2.5.2)
        packet = bytes(view[: header.packet_end])
        scid = bytes(header.scid)
        if header.version != self.original_version:
            return  # RFC 9369 §4.1: a Retry of another version is ignored
        if scid == self.peer_cids.current or not verify_retry(
            self.original_dcid, packet, self.original_version
        ):
            return
        self.retry_source_cid = scid
        self.retry_token = bytes(header.token or b"")
        self.peer_cids.replace_initial(scid)
        self.set_initial_keys(scid)
        # The first Initial packets will never be acknowledged: their CRYPTO data
        # goes out again, with new packet numbers (§17.2.5.3: numbers are not reset).
        self.recovery.requeue_unacked(PacketNumberSpace.INITIAL)
        self.spaces[PacketNumberSpace.INITIAL].crypto_send.requeue_unacknowledged()
        self.resend_zero_rtt(now)  # the server dropped them too (.early)


FRAME_HANDLERS: dict[int, Callable[[Any, Any, _Context], None]] = {
    FrameType.ACK: ReceivingMixin._on_ack,
    FrameType.ACK_ECN: ReceivingMixin._on_ack,
    FrameType.CRYPTO: ReceivingMixin._on_crypto,
    FrameType.NEW_TOKEN: ReceivingMixin._on_new_token,
    FrameType.NEW_CONNECTION_ID: ReceivingMixin._on_new_connection_id,
    FrameType.RETIRE_CONNECTION_ID: ReceivingMixin._on_retire_connection_id,
    FrameType.PATH_CHALLENGE: ReceivingMixin._on_path_challenge,
    FrameType.PATH_RESPONSE: PathsMixin._on_path_response,
    FrameType.CONNECTION_CLOSE: ReceivingMixin._on_connection_close,
    FrameType.CONNECTION_CLOSE_APPLICATION: ReceivingMixin._on_connection_close,
    FrameType.HANDSHAKE_DONE: ReceivingMixin._on_handshake_done,
    FrameType.ACK_FREQUENCY: ReceivingMixin._on_ack_frequency,
    FrameType.IMMEDIATE_ACK: ReceivingMixin._on_immediate_ack,
    **DATAGRAM_HANDLERS,
}
