"""0-RTT of a QMux client (draft-ietf-quic-qmux "Using 0-RTT", RFC 9000 §7.4.1, RFC 8446 §2.3).

Theory of operation
-------------------
A client resuming with a ticket that allows early data writes, under the TLS
early key, its QX_TRANSPORT_PARAMETERS record first (it must be the first
frame, §4.2) and then records carrying frames of *replay-safe* streams only:
the streams the application opened with ``early=True``
(:meth:`EarlySender.mark`).  Their limits come from the server's transport
parameters remembered with the ticket (:attr:`StoredTicket.transport_parameters
<mstls.tls.ticket_store.StoredTicket>`, set from the QX_TRANSPORT_PARAMETERS of
the connection that received it): RFC 9000 §7.4.1 lets the client use them
until the server's new ones arrive.  Early records stop when the ticket's
max_early_data_size is used up or when the early key is dropped (the server's
flight was processed); later frames wait for the server's parameters.

The server's new parameters are checked against the remembered ones: accepting
0-RTT, a server must not reduce them (§7.4.1, a PROTOCOL_VIOLATION here).  When
the server rejects 0-RTT, the TLS layer sends every early byte again, first,
under the 1-RTT key (:mod:`mstls.tls.early_data`), so the server sees the same
QMux byte stream either way and the application needs to do nothing; if the
rejecting server's new limits are below what the early frames already used,
the connection fails with a PROTOCOL_VIOLATION naming the parameter, as the
resent frames could not be taken; likewise when the rejecting server chose
another application protocol than the ticket's (RFC 9001 §4.6.2).  Below that,
the rejecting server's limits are put in force, lower ones too (§4.6.2: what
the client assumed may be wrong).

Server: early records are ordinary input that arrives before the handshake
ends.  Our tickets remember our own limits (:func:`early_data_limits`, sealed
by the TLS engine, :mod:`mstls.tls.early_data`); a ticket issued while any of
them was higher than now gets its 0-RTT rejected, the PSK still resumed
(§7.4.1).
"""

from __future__ import annotations

from ..codes import TransportErrorCode
from ..core.stream_manager import StreamManager
from ..exceptions import Error, ProtocolError
from ..tls.client import ClientHandshake
from ..tls.tcp import TLSConnection
from ..wire.transport_params import (
    DEFAULT_MAX_RECORD_SIZE,
    TransportParameterId,
    TransportParameters,
    decode_transport_parameters,
    encode_transport_parameters,
    validate_qmux_parameters,
)
from .config import QMuxConfig

__all__ = [
    "MIN_EARLY_RECORD",
    "REMEMBERED_LIMITS",
    "EarlySender",
    "early_data_limits",
    "keep_strike_register",
    "remember_parameters",
]

#: Early room below which no further early record is started (bytes).
MIN_EARLY_RECORD = 64
#: The remembered parameters a 0-RTT client relies on (RFC 9000 §7.4.1; RFC 9221 §3
#: for max_datagram_frame_size, though datagrams never go early).
REMEMBERED_LIMITS = (
    "initial_max_data",
    "initial_max_stream_data_bidi_local",
    "initial_max_stream_data_bidi_remote",
    "initial_max_stream_data_uni",
    "initial_max_streams_bidi",
    "initial_max_streams_uni",
    "max_record_size",
    "max_datagram_frame_size",
)


def early_data_limits(params: TransportParameters) -> dict[int, int]:
    """Server: our remembered limits by parameter id, for our tickets (§7.4.1)."""
    return {
        int(TransportParameterId[name.upper()]): getattr(params, name) for name in REMEMBERED_LIMITS
    }


def remember_parameters(tls: TLSConnection, params: TransportParameters) -> None:
    """Client: let tickets received from now on remember the server's ``params``."""
    tls.handshake.ticket_transport_parameters = encode_transport_parameters(params)


def keep_strike_register(old: QMuxConfig, new: QMuxConfig) -> QMuxConfig:
    """``new`` with ``old``'s strike register: a listener keeps its anti-replay
    memory (RFC 8446 §8) across ``update_config``, so a flight recorded before
    the update is still refused after it."""
    if old.tls.strike_register is not None and new.tls.strike_register is not None:
        new.tls.strike_register = old.tls.strike_register
    return new


def _remembered(tls: TLSConnection) -> tuple[TransportParameters, str | None] | None:
    """The offered ticket's remembered parameters and application protocol."""
    handshake = tls.handshake
    ticket = handshake.offered_ticket if isinstance(handshake, ClientHandshake) else None
    if ticket is None or not ticket.transport_parameters:
        return None
    try:
        params = decode_transport_parameters(ticket.transport_parameters)
        validate_qmux_parameters(params)
    except Error:  # a store written by someone else: no 0-RTT, never a failure
        return None
    return params, ticket.alpn_protocol


class EarlySender:
    """A QMux client's 0-RTT state: remembered limits and the replay-safe streams."""

    __slots__ = ("alpn", "remembered", "streams", "used")

    def __init__(self) -> None:
        #: The server's remembered parameters while 0-RTT is in use, else None.
        self.remembered: TransportParameters | None = None
        #: Streams the application marked replay-safe.
        self.streams: set[int] = set()
        #: Whether any early record was sent.
        self.used = False
        #: The application protocol the early data was written for (the ticket's).
        self.alpn: str | None = None

    def begin(self, tls: TLSConnection, streams: StreamManager) -> bool:
        """After the ClientHello: whether 0-RTT is on (then the stream layer runs
        on the remembered limits and writes only replay-safe streams)."""
        if tls.early_room <= 0:
            return False
        remembered = _remembered(tls)
        if remembered is None:
            return False
        params, self.alpn = remembered
        self.remembered = params
        streams.set_peer_parameters(params)
        streams.send_only = self.streams
        return True

    def mark(self, stream_id: int) -> None:
        """Let ``stream_id``'s frames go in early data (the application says its
        data is replay-safe, RFC 8446 §8)."""
        self.streams.add(stream_id)

    def room(self, tls: TLSConnection) -> int:
        """Bytes an early record may take now (0: no early record)."""
        if self.remembered is None:
            return 0
        room = tls.early_room
        return room if room >= MIN_EARLY_RECORD else 0

    @staticmethod
    def record_capacity(room: int) -> int:
        """Frames bytes of one early record: within the room and the smallest
        max_record_size any server has (§5.2), so a resend always fits."""
        return min(room - 8, DEFAULT_MAX_RECORD_SIZE)

    def finish(
        self, params: TransportParameters, tls: TLSConnection, streams: StreamManager
    ) -> None:
        """The server's parameters arrived: end 0-RTT; raise :class:`ProtocolError`
        if they break what the early frames relied on (module documentation)."""
        remembered = self.remembered
        if remembered is None:
            return
        self.remembered = None
        streams.send_only = None
        if tls.early_data_accepted:
            for name in REMEMBERED_LIMITS:
                before, now = getattr(remembered, name), getattr(params, name)
                if now < before:
                    raise ProtocolError(
                        f"server accepted 0-RTT and reduced the remembered {name} from "
                        f"{before} to {now} (RFC 9000 §7.4.1)",
                        error_code=TransportErrorCode.PROTOCOL_VIOLATION,
                    )
            return
        if self.used and tls.alpn_protocol != self.alpn:
            raise ProtocolError(
                f"server rejected 0-RTT and chose ALPN {tls.alpn_protocol!r}: the early "
                f"data re-sent was written for {self.alpn!r} (RFC 9001 §4.6.2)",
                error_code=TransportErrorCode.PROTOCOL_VIOLATION,
            )
        # early records fit any server's max_record_size (record_capacity)
        overrun = streams.restart_peer_parameters(params)  # RFC 9001 §4.6.2
        if overrun is not None:
            raise ProtocolError(
                f"server rejected 0-RTT with {overrun} {getattr(params, overrun)}, below "
                f"what the early data already used (remembered "
                f"{getattr(remembered, overrun)}, RFC 9000 §7.4.1)",
                error_code=TransportErrorCode.PROTOCOL_VIOLATION,
            )
