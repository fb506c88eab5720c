"""QUIC 0-RTT (RFC 9001 §4.6, §4.9.3, §5.3; RFC 9000 §7.4.1, §12.3, §17.2.3).

Theory of operation
-------------------
Client: a ticket for QUIC allows 0-RTT with max_early_data_size 0xffffffff
(RFC 9001 §4.6.1, :mod:`mstls.tls.resumption`) and remembers the server's
transport parameters that §7.4.1 lists (:func:`remembered_parameters`, kept
with the ticket in the client's store).  When the TLS engine offers early data
it installs the 0-RTT write key (client_early_traffic_secret); the stream
layer then runs on the remembered limits and 0-RTT long-header packets, in the
application packet number space, carry the frames of *replay-safe* streams
only (:meth:`ZeroRttMixin.mark_early`, ``open_stream(early=True)``).  0-RTT
ends when the 1-RTT keys are installed (§4.9.3).  When the server's
EncryptedExtensions have no early_data the server rejected it: every 0-RTT
packet is forgotten as lost (not a congestion signal) and its stream data goes
again in 1-RTT packets, so the server's application sees the same bytes.
Accepting 0-RTT, the server must not reduce the remembered limits (§7.4.1): a
reduction is a PROTOCOL_VIOLATION.  Rejecting it, the server's new limits are
put in force, lower ones too (RFC 9001 §4.6.2: what the client assumed may be
wrong); only early frames already beyond them (they could not be sent again)
fail the connection.

Server: with 0-RTT accepted by the TLS engine (ticket allows it, strike
register admits it), 0-RTT packets, coalesced with the Initial or after it, are
decrypted with the 0-RTT read key and their frames delivered before the
handshake completes; their packet numbers are acknowledged in 1-RTT ACKs (the
space is shared, §12.3).  The key is dropped with the handshake's completion.
The server's tickets remember its own limits (:func:`early_data_limits`, the
TLS engine seals them, :mod:`mstls.tls.early_data`); a ticket issued while any
of them was higher than now gets its 0-RTT rejected, the PSK still resumed
(§7.4.1: a server accepting 0-RTT must not reduce them).
"""

from __future__ import annotations

import attrs

from ..codes import TransportErrorCode
from ..core.recovery import PacketNumberSpace
from ..exceptions import Error, ProtocolError
from ..tls.client import ClientHandshake
from ..wire.packet import PacketType
from ..wire.transport_params import (
    TransportParameterId,
    TransportParameters,
    decode_transport_parameters,
    encode_transport_parameters,
)
from .black_hole import BlackHoleMixin
from .builder import DatagramBuilder
from .crypto import PacketProtection
from .state import Space

__all__ = ["REMEMBERED_LIMITS", "ZeroRttMixin", "early_data_limits", "remembered_parameters"]

#: The server's transport parameters a 0-RTT client remembers and uses as its
#: limits (RFC 9000 §7.4.1); ``disable_active_migration`` is remembered too.
REMEMBERED_LIMITS = (
    "active_connection_id_limit",
    "initial_max_data",
    "initial_max_stream_data_bidi_local",
    "initial_max_stream_data_bidi_remote",
    "initial_max_stream_data_uni",
    "initial_max_streams_bidi",
    "initial_max_streams_uni",
    "max_datagram_frame_size",
)
_APPLICATION = PacketNumberSpace.APPLICATION


def remembered_parameters(params: TransportParameters) -> bytes:
    """The encoded subset of the server's ``params`` a ticket remembers (§7.4.1)."""
    kept = {name: getattr(params, name) for name in REMEMBERED_LIMITS}
    return encode_transport_parameters(
        TransportParameters(disable_active_migration=params.disable_active_migration, **kept)
    )


def early_data_limits(params: TransportParameters) -> dict[int, int]:
    """Server: our remembered limits by parameter id, for our tickets (§7.4.1).
    ``disable_active_migration`` counts as the limit "migration allowed" (1/0):
    turning it on would break a client relying on the remembered value."""
    limits = {
        int(TransportParameterId[name.upper()]): getattr(params, name) for name in REMEMBERED_LIMITS
    }
    limits[int(TransportParameterId.DISABLE_ACTIVE_MIGRATION)] = (
        0 if params.disable_active_migration else 1
    )
    return limits


def _ticket_parameters(tls: object) -> tuple[TransportParameters, str | None] | None:
    """The offered ticket's remembered parameters and ALPN; None (no 0-RTT) if
    absent or unreadable (a store written by someone else is never a failure)."""
    ticket = tls.offered_ticket if isinstance(tls, ClientHandshake) else None
    if ticket is None or not ticket.transport_parameters:
        return None
    try:
        decoded = decode_transport_parameters(ticket.transport_parameters)
    except Error:
        return None
    kept = {name: getattr(decoded, name) for name in REMEMBERED_LIMITS}
    return attrs.evolve(TransportParameters(), **kept), ticket.alpn_protocol


class ZeroRttMixin(BlackHoleMixin):
    """0-RTT state and packets of :class:`~mstls.quic.connection.QuicConnection`."""

    #: Client: the 0-RTT write key while 0-RTT packets may be sent.
    zero_rtt_send: PacketProtection | None
    #: Server: the 0-RTT read key while 0-RTT packets are accepted.
    zero_rtt_recv: PacketProtection | None
    #: Client: the remembered limits in use, until the server's parameters arrive.
    zero_rtt_remembered: TransportParameters | None
    #: Client: the streams the application marked replay-safe.
    zero_rtt_streams: set[int]
    #: Client: 0-RTT packets were sent.
    zero_rtt_sent: bool
    #: Client: the application protocol the 0-RTT data was written for (the ticket's).
    zero_rtt_alpn: str | None

    def _init_zero_rtt(self) -> None:
        self.zero_rtt_send = None
        self.zero_rtt_recv = None
        self.zero_rtt_remembered = None
        self.zero_rtt_streams = set()
        self.zero_rtt_sent = False
        self.zero_rtt_alpn = None

    # -- public ----------------------------------------------------------------------
    @property
    def early_data_possible(self) -> bool:
        """Client: 0-RTT is in use, so replay-safe streams may send before the handshake."""
        return self.zero_rtt_send is not None and self.zero_rtt_remembered is not None

    def mark_early(self, stream_id: int) -> None:
        """Client: ``stream_id``'s data is replay-safe and may go in 0-RTT packets."""
        self.zero_rtt_streams.add(stream_id)

    @property
    def early_data_accepted(self) -> bool | None:
        """Whether 0-RTT data was accepted (RFC 8446 §4.2.10): None until known,
        False after a handshake without it (rejected data is resent in 1-RTT)."""
        accepted: bool | None = getattr(self.tls, "early_data_accepted", None)
        if accepted is None and self.handshake_complete:
            return False
        return accepted

    # -- keys (handshake.py) ---------------------------------------------------------
    def _install_zero_rtt_key(self, protection: PacketProtection, now: float) -> None:
        """The 0-RTT key: the client's write key (then 0-RTT starts if the ticket
        remembers the server's limits), the server's read key (RFC 9001 §5.1)."""
        if not self.is_client:
            self.zero_rtt_recv = protection
            return
        remembered = _ticket_parameters(self.tls)
        if remembered is None:
            return  # early data offered, but no limits to send it under
        params, self.zero_rtt_alpn = remembered
        self.zero_rtt_send = protection
        self.zero_rtt_remembered = params
        self.streams.set_peer_parameters(params)
        self.streams.send_only = self.zero_rtt_streams

    def _end_zero_rtt(self) -> None:
        """1-RTT keys are in place: no more 0-RTT packets (RFC 9001 §4.9.3)."""
        self.zero_rtt_send = None
        self.zero_rtt_recv = None
        if self.is_client:
            self.streams.send_only = None

    def _finish_zero_rtt(self, params: TransportParameters, now: float) -> None:
        """Client, on the server's parameters: check them against the remembered
        ones if 0-RTT was accepted; if it was rejected, resend its data in 1-RTT."""
        remembered = self.zero_rtt_remembered
        if remembered is None:
            return
        self.zero_rtt_remembered = None
        if self.early_data_accepted:
            for name in REMEMBERED_LIMITS:
                before, after = getattr(remembered, name), getattr(params, name)
                if after < before:
                    raise ProtocolError(
                        f"server accepted 0-RTT and reduced the remembered {name} from "
                        f"{before} to {after} (RFC 9000 §7.4.1)",
                        error_code=TransportErrorCode.PROTOCOL_VIOLATION,
                    )
            return
        self.zero_rtt_send = None
        overrun = self.streams.restart_peer_parameters(params)  # RFC 9001 §4.6.2
        if self.zero_rtt_sent:
            self.resend_zero_rtt(now)
            self._check_rejecting_server()
        if overrun is not None:
            raise ProtocolError(
                f"server rejected 0-RTT with {overrun} {getattr(params, overrun)}, "
                f"below what the early data already used (remembered "
                f"{getattr(remembered, overrun)}, RFC 9000 §7.4.1)",
                error_code=TransportErrorCode.PROTOCOL_VIOLATION,
            )

    def resend_zero_rtt(self, now: float) -> None:
        """Forget the outstanding 0-RTT packets as lost, without a congestion signal,
        and hand their frames back to be sent again (rejected 0-RTT, RFC 9001 §4.6.2;
        a Retry, RFC 9000 §17.2.5.3).  Called before any 1-RTT packet was sent,
        so every outstanding application packet is a 0-RTT one."""
        if self.zero_rtt_sent:
            self.recovery.release_larger_than(_APPLICATION, 0, now)

    def _check_rejecting_server(self) -> None:
        """RFC 9001 §4.6.2: resent early data was written for the ticket's ALPN."""
        alpn = self.zero_rtt_alpn
        if self.tls.alpn_protocol != alpn:
            raise ProtocolError(
                f"server rejected 0-RTT and chose ALPN {self.tls.alpn_protocol!r}: the "
                f"early data sent again was written for {alpn!r} (RFC 9001 §4.6.2)",
                error_code=TransportErrorCode.PROTOCOL_VIOLATION,
            )

    # -- sending (sending.py) ----------------------------------------------------------
    def _fill_zero_rtt(
        self, builder: DatagramBuilder, space: Space, now: float, congestion_ok: bool
    ) -> None:
        """A 0-RTT packet of replay-safe stream frames (RFC 9001 §4.6.1, §17.2.3)."""
        keys = self.zero_rtt_send
        if keys is None or space.send_keys is not None or not congestion_ok:
            return
        if not self.streams.has_data_to_send():
            return
        sink = builder.open_packet(
            _APPLICATION,
            PacketType.ZERO_RTT,
            space.next_packet_number,
            keys.encrypt_packet,
            dcid=self.peer_cids.current,
            scid=self.host_cid,
            version=self.version,
        )
        if sink is None:
            return
        self.streams.write_frames(sink, now)
        if builder.close_packet(sink):
            space.next_packet_number += 1
            self.zero_rtt_sent = True
