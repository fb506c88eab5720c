"""Sending: filling datagrams from the frame producers (RFC 9000 §12.2, §13; RFC 9002 §7).

Theory of operation
-------------------
:meth:`SendingMixin.datagrams_to_send` builds datagrams until nothing is left to
send or a limit stops it: congestion window and pacing (RFC 9002 §7), the
anti-amplification limit of an unvalidated server (RFC 9000 §8.1) and a bound
on datagrams per call (one busy connection cannot starve others, brief T5).
Each datagram coalesces one packet per space that has something to say, in the
order Initial, Handshake, 1-RTT (RFC 9000 §12.2).

Inside a packet the order is: ACK (piggybacked whenever the space owes one),
CRYPTO, then for 1-RTT HANDSHAKE_DONE, PATH_RESPONSE, connection ID frames, a
keep-alive PING, and the stream manager's control and STREAM frames.  Probe
packets requested by a PTO are sent even when the congestion window is full
(RFC 9002 §7.5).  Path MTU probes are separate datagrams of PING + PADDING
whose loss is not a congestion signal (RFC 8899).
"""

from __future__ import annotations

import math
import secrets
from typing import Any

from ..core.congestion import NewReno
from ..core.lifecycle import State
from ..core.pacing import Pacer
from ..core.recovery import PacketNumberSpace, Recovery, SentPacket
from ..wire.buffer import Writer
from ..wire.frames import (
    ACK_FREQUENCY_FRAME_DECODERS,
    FRAME_DECODERS,
    AckFrequencyFrame,
    ApplicationCloseFrame,
    ConnectionCloseFrame,
    HandshakeDoneFrame,
    PathResponseFrame,
    PingFrame,
    encode_frame,
)
from ..wire.packet import PacketType
from .builder import DatagramBuilder, PacketSink
from .config import INITIAL_MAX_DATAGRAM_SIZE
from .control_frames import ControlFrames, MtuProbeOutcome
from .handshake import HandshakeMixin
from .mtu import BASE_AFTER_PTOS
from .qlog import PACKET_TYPES
from .state import Space

__all__ = ["MAX_DATAGRAMS_PER_CALL", "SendingMixin"]

#: Datagrams one call may produce (brief T5: bounded work per wake-up).
MAX_DATAGRAMS_PER_CALL = 64
#: Fewer ACKs are requested only while the congestion window holds this many
#: times the ACK threshold in packets (draft-ietf-quic-ack-frequency §9.1).
ACK_FREQUENCY_WINDOW_FACTOR = 4
#: RFC 9000 §8.1: an unvalidated server sends at most three times what it received.
AMPLIFICATION_FACTOR = 3
#: 1-RTT packet numbers are skipped at random intervals in this range, so an
#: ACK for a number never sent exposes an optimistic-ACK attack (RFC 9000 §21.4).
PN_SKIP_MIN_INTERVAL = 256
PN_SKIP_MAX_INTERVAL = 1024

_SPACE_TYPE = {
    PacketNumberSpace.INITIAL: PacketType.INITIAL,
    PacketNumberSpace.HANDSHAKE: PacketType.HANDSHAKE,
    PacketNumberSpace.APPLICATION: PacketType.ONE_RTT,
}
_PING = encode_frame(PingFrame())
APPLICATION = PacketNumberSpace.APPLICATION


class SendingMixin(HandshakeMixin):
    """The send path of :class:`~mstls.quic.connection.QuicConnection`."""

    #: QUIC packets sent, coalesced ones counted one by one (statistics).
    packets_sent: int
    #: :meth:`ping` asked for a PING not yet sent.
    ping_pending: bool
    pacing_deadline: float | None
    ack_frequency_sequence: int
    ack_threshold_sent: int
    ack_frequency_received: int

    def _init_sending(self) -> None:
        congestion = NewReno(INITIAL_MAX_DATAGRAM_SIZE)
        self.recovery = Recovery(
            max_ack_delay=self.config.max_ack_delay_ms / 1000,
            congestion=congestion,
            pacer=Pacer(),
            is_client=self.is_client,
        )
        self.recovery.peer_address_validated = self.address_validated
        self.next_pn_skip = _pn_skip_interval()
        self.pending_path_responses = []
        self.packets_sent = 0
        self.close_pending = False
        self.ping_pending = False
        self.pacing_deadline = None
        self.ack_delay = self.config.max_ack_delay_ms / 1000
        # ACK_FREQUENCY we send: sequence numbers, the threshold in force at the
        # peer (1 is RFC 9000's default); lost ones are sent again (.control_frames).
        self.control_frames = ControlFrames()
        self.ack_frequency_sequence = 0
        self.ack_threshold_sent = 1
        self.ack_frequency_received = 0
        self.frame_decoders = (
            ACK_FREQUENCY_FRAME_DECODERS if self.config.ack_frequency else FRAME_DECODERS
        )

    # -- public ---------------------------------------------------------------------------
    def datagrams_to_send(self, now: float) -> list[bytes]:
        """Datagrams to send to :attr:`peer_address` now, in order."""
        state = self.lifecycle.state
        if state is State.DRAINING or state is State.TERMINATED:
            return []
        if state is State.CLOSING:
            return self._close_datagrams(now)
        out: list[bytes] = []
        self.pacing_deadline = None
        self.send_codepoint = self._next_send_codepoint()  # .ecn_marking
        if not self._may_send(now):
            # Nothing owed at all: no builder, no limits (the driver asks after every
            # input and every application call; most of those asks find nothing).
            probe = self._mtu_probe(now)
            return [probe] if probe else out
        while len(out) < MAX_DATAGRAMS_PER_CALL:
            datagram = self._next_datagram(now)
            if not datagram:
                break
            out.append(datagram)
            if not self._may_send(now):
                break  # the common end (one PING, one ACK): no empty builder pass
        if len(out) < MAX_DATAGRAMS_PER_CALL:
            probe = self._mtu_probe(now)
            if probe:
                out.append(probe)
        return out

    def send_deadline(self) -> float | None:
        """When sending must happen even without new input: a delayed ACK, pacing."""
        best = self.pacing_deadline
        max_ack_delay = self.ack_delay
        for space in self.spaces:
            if space.recv_keys is not None and not space.discarded:
                deadline = space.acks.ack_deadline(max_ack_delay)
                if deadline is not None and (best is None or deadline < best):
                    best = deadline
        keepalive = self.config.keepalive_interval
        if keepalive is not None and self.handshake_complete:
            deadline = self.last_sent + keepalive
            if best is None or deadline < best:
                best = deadline
        return best

    # -- datagram assembly ---------------------------------------------------------------
    def _datagram_limit(self) -> int:
        if self.handshake_confirmed:  # the base size after a PTO (RFC 8899 §4.3, .mtu)
            mtu = self.mtu
            size = mtu.current if self.recovery.pto_count < BASE_AFTER_PTOS else mtu.base
        else:
            size = INITIAL_MAX_DATAGRAM_SIZE
        if not self.address_validated:
            allowance = AMPLIFICATION_FACTOR * self.bytes_received - self.bytes_sent
            size = min(size, allowance)
            # RFC 9002 §6.2.2.1: no PTO while the limit forbids sending anyway.
            self.recovery.amplification_blocked = allowance < INITIAL_MAX_DATAGRAM_SIZE
        elif self.recovery.amplification_blocked:
            self.recovery.amplification_blocked = False
        return self.path_limit(size)  # an unvalidated new path (RFC 9000 §9.3, paths.py)

    def _next_datagram(self, now: float) -> bytes:
        limit = self._datagram_limit()
        if limit < 64:
            return b""
        congestion_ok = self.recovery.congestion.can_send(limit)
        if congestion_ok:
            wait = self.recovery.pacer.next_send_time(now, limit)
            if wait is not None and wait > now:
                self.pacing_deadline = wait
                congestion_ok = False
        builder = DatagramBuilder(limit)
        for space in self.spaces:
            if space.send_keys is not None and not space.discarded:
                self._fill_space(builder, space, now, congestion_ok)
            elif space.space == APPLICATION and self.zero_rtt_send is not None:
                self._fill_zero_rtt(builder, space, now, congestion_ok)  # .early
        data, packets = builder.finish()
        if not packets:
            return b""
        self._on_datagram_sent(data, packets, now)
        return data

    def _on_datagram_sent(
        self, data: bytes, packets: list[Any], now: float, path: Any = None
    ) -> None:
        self.bytes_sent += len(data)
        (path or self.path).bytes_sent += len(data)
        self.packets_sent += len(packets)
        self.last_sent = now
        marked = self.send_codepoint != 0
        for built in packets:
            packet = SentPacket(
                packet_number=built.packet_number,
                space=built.space,
                size=built.size,
                ack_eliciting=built.ack_eliciting,
                in_flight=built.in_flight,
                is_mtu_probe=built.is_mtu_probe,
                records=built.records,
                ecn_marked=marked,
            )
            self.recovery.on_packet_sent(packet, now)
            if self.qlog is not None:
                self._qlog_sent(built, now)
            if built.ack_eliciting:
                if not self.ack_eliciting_sent_since_receive:
                    # RFC 9000 §10.1: only the first ack-eliciting packet sent after
                    # a receipt restarts the timer, so probes into a silent path
                    # cannot keep a dead connection alive.
                    self.reset_idle_timer(now)
                    self.ack_eliciting_sent_since_receive = True
                self.last_ack_eliciting_sent = now
            if self.is_client and built.space == PacketNumberSpace.HANDSHAKE:
                self._discard_initial_once()

    def _qlog_sent(self, built: Any, now: float) -> None:
        """``transport:packet_sent`` with the packet's frames (qlog is on)."""
        assert self.qlog is not None
        one_rtt = built.space == APPLICATION
        self.qlog.packet(
            now,
            "transport:packet_sent",
            built.packet_type,
            built.packet_number,
            built.size,
            built.payload,
            dcid=self.peer_cids.current,
            scid=None if one_rtt else self.host_cid,
            ack_delay_exponent=self.config.ack_delay_exponent if one_rtt else 3,
        )

    def _discard_initial_once(self) -> None:
        """RFC 9001 §4.9.1: a client drops Initial keys when it first sends a Handshake packet."""
        if not self.spaces[PacketNumberSpace.INITIAL].discarded:
            self.discard_space(PacketNumberSpace.INITIAL)

    def _may_send(self, now: float) -> bool:
        """Cheap: could :meth:`_next_datagram` produce anything now, limits aside?

        False only when no space owes anything (the ``congestion_ok`` case of
        :meth:`_wants_to_send` is the widest) and no limit state needs the full
        pass: an unvalidated address updates ``amplification_blocked`` there, and
        0-RTT has its own filler."""
        if not self.address_validated or self.recovery.amplification_blocked:
            return True
        for space in self.spaces:
            if space.send_keys is not None and not space.discarded:
                if self._wants_to_send(space, now, True):
                    return True
            elif space.space == APPLICATION and self.zero_rtt_send is not None:
                return True
        return False

    def _wants_to_send(self, space: Space, now: float, congestion_ok: bool) -> bool:
        if space.probes:
            return True
        deadline = space.acks.ack_deadline(self.ack_delay)
        if deadline is not None and deadline <= now:
            return True
        if not congestion_ok:
            return False
        if space.crypto_send.has_data():
            return True
        if space.space != PacketNumberSpace.APPLICATION or not self.handshake_complete:
            return False
        return bool(
            self.control_frames.handshake_done_pending
            or self.pending_path_responses
            or self.path_frames_due
            or self.local_cids.has_pending_frames
            or self.peer_cids.has_pending_frames
            or self.streams.has_data_to_send()
            or self.datagrams.has_data_to_send
            or self.ping_pending
            or self._keepalive_due(now)
        )

    def _keepalive_due(self, now: float) -> bool:
        """Due at the very deadline :meth:`send_deadline` reports (the same sum: with
        ``now - last_sent >= interval`` rounding could leave it due but never sent,
        and the driver spinning on a passed deadline)."""
        interval = self.config.keepalive_interval
        return interval is not None and now >= self.last_sent + interval

    def _fill_space(
        self, builder: DatagramBuilder, space: Space, now: float, congestion_ok: bool
    ) -> None:
        keys = space.send_keys
        if keys is None or space.discarded or not self._wants_to_send(space, now, congestion_ok):
            return
        sink = self._open_packet(builder, space)
        if sink is None:
            return
        if space.acks.has_new_packets:
            self._write_ack(sink, space, now)
        if congestion_ok or space.probes:
            space.crypto_send.write_frames(sink)
            if space.space == PacketNumberSpace.APPLICATION and self.handshake_complete:
                self._write_application_frames(sink, now)
        if space.probes and not sink.ack_eliciting and sink.remaining >= 1:
            sink.add(_PING)
        if space.probes and sink.ack_eliciting:
            space.probes -= 1
        if builder.close_packet(sink):
            space.next_packet_number += 1
            if space.next_packet_number >= self.next_pn_skip and space.space == APPLICATION:
                self._skip_packet_number(space)
            if space.space == PacketNumberSpace.INITIAL and (self.is_client or sink.ack_eliciting):
                builder.pad_to_initial_minimum = True  # RFC 9000 §14.1

    def _skip_packet_number(self, space: Space) -> None:
        """Leave one 1-RTT packet number unused (RFC 9000 §21.4); an ACK for it
        is a PROTOCOL_VIOLATION (:meth:`~mstls.core.recovery.Recovery.skip_packet_number`)."""
        self.recovery.skip_packet_number(APPLICATION, space.next_packet_number)
        space.next_packet_number += 1
        self.next_pn_skip = space.next_packet_number + _pn_skip_interval()

    def _open_packet(self, builder: DatagramBuilder, space: Space) -> PacketSink | None:
        keys = space.send_keys
        assert keys is not None
        packet_type = _SPACE_TYPE[space.space]
        token = self.retry_token if packet_type is PacketType.INITIAL and self.is_client else b""
        return builder.open_packet(
            space.space,
            packet_type,
            space.next_packet_number,
            keys.encrypt_packet,
            dcid=self.peer_cids.current,
            scid=self.host_cid,
            token=token,
            version=self.version,
        )

    def _write_ack(self, sink: PacketSink, space: Space, now: float) -> None:
        exponent = (
            self.config.ack_delay_exponent if space.space == PacketNumberSpace.APPLICATION else 3
        )
        frame = space.acks.build_ack_frame(now, exponent)
        if frame is None:
            return
        w = Writer()
        frame.encode(w)
        if len(w) > sink.remaining:
            return
        largest = frame.ranges[0][1]
        sink.add(w.buffer, space.acks.ack_record(largest), ack_eliciting=False)
        space.acks.on_ack_sent(now, largest)

    def _write_application_frames(self, sink: PacketSink, now: float) -> None:
        control = self.control_frames
        if control.handshake_done_pending and sink.remaining >= 1:
            control.handshake_done_pending = False
            lost = control.resend_handshake_done
            sink.add(encode_frame(HandshakeDoneFrame()), (_ignore, lost, ()))
        responded = bool(self.pending_path_responses)
        while self.pending_path_responses and sink.remaining >= 9:
            data = self.pending_path_responses.pop(0)
            sink.add(encode_frame(PathResponseFrame(data)))
        self.local_cids.write_frames(sink)
        self.peer_cids.write_frames(sink)
        if (self.ping_pending or self._keepalive_due(now)) and sink.remaining >= 1:
            self.ping_pending = False
            sink.add(_PING)
        self._write_ack_frequency(sink)
        challenged = self._write_path_challenge(sink)
        if self.datagrams.has_data_to_send:  # before streams: latency (RFC 9221 §5)
            self.datagrams.write_frames(sink, self.max_datagram_size)
        self.streams.write_frames(sink, now)
        if challenged or responded:
            self._pad_challenge(sink)  # RFC 9000 §8.2.1, §8.2.2: in >= 1200 bytes

    def _wanted_ack_threshold(self) -> int:
        """How many ack-eliciting packets the peer may wait for before acknowledging.

        draft-ietf-quic-ack-frequency §9.1: fewer ACKs only while the congestion
        window holds several times that many packets, so loss recovery keeps its
        feedback; a small window (loss, slow start) gets the RFC 9000 default.
        """
        cc = self.recovery.congestion
        wanted = self.config.ack_eliciting_threshold
        if cc.cwnd < ACK_FREQUENCY_WINDOW_FACTOR * (wanted + 1) * cc.max_datagram_size:
            return 1
        return wanted

    def _write_ack_frequency(self, sink: PacketSink) -> None:
        """Tell a peer that supports it how often to acknowledge (ack-frequency §4)."""
        if self.peer_params is None or self.peer_params.min_ack_delay is None:
            return
        wanted = self._wanted_ack_threshold()
        if wanted == self.ack_threshold_sent and not self.control_frames.ack_frequency_pending:
            return
        delay_us = max(self.peer_params.min_ack_delay, self.peer_params.max_ack_delay * 1000)
        frame = encode_frame(AckFrequencyFrame(self.ack_frequency_sequence, wanted, delay_us, 1))
        if len(frame) <= sink.remaining:
            self.ack_frequency_sequence += 1
            self.ack_threshold_sent = wanted
            self.control_frames.ack_frequency_pending = False
            sink.add(frame, (_ignore, self.control_frames.resend_ack_frequency, ()))

    # -- path MTU probes (RFC 8899, RFC 9000 §14.3) ---------------------------------------
    def _mtu_probe(self, now: float) -> bytes:
        if not self.handshake_confirmed or not self.address_validated or not self.path.validated:
            return b""  # an unvalidated new path: amplification limit (RFC 9000 §9.3)
        size = self.mtu.probe_size(now)
        space = self.spaces[PacketNumberSpace.APPLICATION]
        if size is None or space.send_keys is None:
            return b""
        if not self.recovery.congestion.can_send(size):
            return b""
        builder = DatagramBuilder(size)
        sink = self._open_packet(builder, space)
        if sink is None:
            return b""
        outcome = MtuProbeOutcome(self.mtu, self.recovery.congestion)
        sink.add(_PING, (outcome.acked, outcome.lost, (size, now)))
        sink.pad(sink.remaining)
        builder.close_packet(sink)
        space.next_packet_number += 1
        data, packets = builder.finish()
        for built in packets:
            built.is_mtu_probe = True
        self.mtu.on_probe_sent(size)
        self._on_datagram_sent(data, packets, now)
        return data

    # -- closing (RFC 9000 §10.2) ---------------------------------------------------------
    def _close_datagrams(self, now: float) -> list[bytes]:
        if not self.close_pending or self.close_info is None:
            return []
        self.close_pending = False
        info = self.close_info
        builder = DatagramBuilder(self._datagram_limit() or INITIAL_MAX_DATAGRAM_SIZE)
        for space in self.spaces:
            if space.send_keys is None or space.discarded:
                continue
            one_rtt = space.space == PacketNumberSpace.APPLICATION
            if info.is_application and one_rtt:
                frame: Any = ApplicationCloseFrame(info.error_code, info.reason.encode()[:256])
            elif info.is_application:
                # §10.2.3: no application details before 1-RTT keys.
                frame = ConnectionCloseFrame(0x0C, 0, b"")
            else:
                frame = ConnectionCloseFrame(
                    info.error_code, info.frame_type or 0, info.reason.encode()[:256]
                )
            encoded = encode_frame(frame)
            sink = self._open_packet(builder, space)
            if sink is None or len(encoded) > sink.remaining:
                continue
            sink.add(encoded)
            if builder.close_packet(sink):
                space.next_packet_number += 1
                if space.space == PacketNumberSpace.INITIAL:
                    builder.pad_to_initial_minimum = self.is_client
        data, packets = builder.finish()
        if data:
            self.bytes_sent += len(data)
            self.packets_sent += len(packets)
            if self.qlog is not None:
                for built in packets:
                    self._qlog_sent(built, now)
        return [data] if data else []

    # -- recovery hooks ----------------------------------------------------------------------
    def on_ack_result(self, result: Any, now: float) -> None:
        """After an ACK: the frame records did the work; qlog the new metrics."""
        if self.qlog is not None:
            recovery = self.recovery
            rtt = recovery.rtt
            metrics: dict[str, float | int] = {
                "min_rtt": rtt.min_rtt * 1000.0,
                "smoothed_rtt": rtt.smoothed_rtt * 1000.0,
                "latest_rtt": rtt.latest_rtt * 1000.0,
                "rtt_variance": rtt.rttvar * 1000.0,
                "pto_count": recovery.pto_count,
                "congestion_window": recovery.congestion.cwnd,
                "bytes_in_flight": recovery.bytes_in_flight,
            }
            ssthresh = recovery.congestion.ssthresh
            if ssthresh != math.inf:
                metrics["ssthresh"] = int(ssthresh)
            self._qlog_lost(getattr(result, "lost", ()), now, None)
            self.qlog.metrics_updated(now, metrics)
        self._check_black_hole(result, now)

    def on_loss_detection_timeout(self, now: float) -> None:
        """RFC 9002 §6.2.4: a PTO asks for probes; CRYPTO data is resent in them."""
        result = self.recovery.on_loss_detection_timeout(now)
        if self.qlog is not None:
            self._qlog_lost(getattr(result, "lost", ()), now, "time_threshold")
        self._check_black_hole(result, now)
        probe_space = getattr(result, "probe_space", None)
        count = getattr(result, "probe_count", 0)
        if probe_space is None or not count:
            return
        space = self.spaces[probe_space]
        if space.discarded or space.send_keys is None:
            return
        space.probes = count
        space.crypto_send.requeue_unacknowledged()

    def _qlog_lost(self, lost: Any, now: float, trigger: str | None) -> None:
        """``recovery:packet_lost`` per packet declared lost (RFC 9002 §6.1)."""
        assert self.qlog is not None
        for packet in lost:
            data: dict[str, Any] = {
                "header": {
                    "packet_type": PACKET_TYPES[_SPACE_TYPE[packet.space]],
                    "packet_number": packet.packet_number,
                }
            }
            if trigger is not None:
                data["trigger"] = trigger
            self.qlog.event(now, "recovery:packet_lost", data)


def _ignore(*args: Any) -> None:
    """A record callback that has nothing to do."""


def _pn_skip_interval() -> int:
    return PN_SKIP_MIN_INTERVAL + secrets.randbelow(PN_SKIP_MAX_INTERVAL - PN_SKIP_MIN_INTERVAL)
