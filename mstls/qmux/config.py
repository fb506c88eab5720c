"""Configuration of a QMux connection: TLS settings plus transport settings.

Mirrors :class:`~mstls.quic.config.QuicConfig` for what both transports share
(timeouts, flow-control windows, stream limits) and adds what only QMux has:
the record sizes (draft-ietf-quic-qmux-02 §3.2, §5.2) and the closing wait.
:meth:`QMuxConfig.transport_parameters` produces only the parameters QMux
permits (§5.1); every limit is a field with a named default.
"""

from __future__ import annotations

import attrs

from ..core.datagrams import (
    DEFAULT_DATAGRAM_RECEIVE_QUEUE,
    DEFAULT_DATAGRAM_SEND_QUEUE,
    validate_datagram_queue,
)
from ..core.stream_limits import DEFAULT_MAX_TRACKED_STREAMS, validate_tracked_streams
from ..tls.config import TLSConfig
from ..wire.buffer import VARINT_MAX
from ..wire.transport_params import DEFAULT_MAX_RECORD_SIZE, TransportParameters

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_RECORD_SIZE",
    "DEFAULT_RECORD_SIZE",
    "MAX_SEND_PER_CALL",
    "MIN_SEND_RECORD_SIZE",
    "QMuxConfig",
]

DEFAULT_IDLE_TIMEOUT = 30.0
#: Overall deadline for TLS plus the peer's QX_TRANSPORT_PARAMETERS (the seeds' T1).
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
#: How long a closing or draining connection waits for the peer's graceful
#: shutdown (close_notify or TCP FIN) before it is freed (brief T3; TCP has no PTO).
DEFAULT_CLOSE_TIMEOUT = 3.0
#: Server: seconds a new TCP connection may take to deliver its whole ClientHello
#: (slowloris, issue 11); far below the handshake timeout, which applies after it.
DEFAULT_CLIENT_HELLO_TIMEOUT = 2.0
#: Bytes of QMux records one :meth:`~mstls.qmux.connection.QMuxConnection.data_to_send`
#: call produces at most (brief T5: bounded work per wake-up).  One default record's
#: worth: the buffer handed to the driver then stays below glibc's mmap threshold
#: (128 KiB), so it is recycled by malloc instead of being mapped, faulted in and
#: unmapped on every call (issue 15: ~15% of the blocking sender's CPU under load).
MAX_SEND_PER_CALL = 64 << 10
#: Our default record size (Frames field) both ways: with its 4-byte Size a record
#: is exactly four full TLS records (RFC 8446 §5.1: 2^14 bytes each), so bulk data
#: costs one record's frame work per 64 KiB instead of per 16 KiB.  A peer that
#: keeps the §5.2 default (16382) still gets records of that size.
DEFAULT_RECORD_SIZE = 4 * 2**14 - 4
#: Smallest record we agree to build: room for the control frames and a useful
#: STREAM frame.
MIN_SEND_RECORD_SIZE = 1200


def _check_max_record_size(
    instance: QMuxConfig, attribute: attrs.Attribute[int], value: int
) -> None:
    if not DEFAULT_MAX_RECORD_SIZE <= value <= VARINT_MAX:
        raise ValueError(
            f"max_record_size {value} outside {DEFAULT_MAX_RECORD_SIZE}..{VARINT_MAX} "
            "(draft-ietf-quic-qmux-02 §5.2)"
        )


def _check_send_record_size(
    instance: QMuxConfig, attribute: attrs.Attribute[int], value: int
) -> None:
    if not MIN_SEND_RECORD_SIZE <= value <= VARINT_MAX:
        raise ValueError(f"send_record_size {value} outside {MIN_SEND_RECORD_SIZE}..{VARINT_MAX}")


def _check_queue(instance: QMuxConfig, attribute: attrs.Attribute[int], value: int) -> None:
    validate_datagram_queue(attribute.name, value)


def _check_positive(instance: QMuxConfig, attribute: attrs.Attribute[float], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, not {value}")


@attrs.define
class QMuxConfig:
    """Settings for one QMux endpoint role; ``tls`` is the handshake configuration.

    ``idle_timeout`` 0 means no idle timeout of ours (the peer's may still apply).
    """

    tls: TLSConfig
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    handshake_timeout: float = attrs.field(
        default=DEFAULT_HANDSHAKE_TIMEOUT, validator=_check_positive
    )
    #: Server: the ClientHello must be complete this many seconds after the connection
    #: started, or the connection fails (a slow sender holds no handshake slot long).
    client_hello_timeout: float = attrs.field(
        default=DEFAULT_CLIENT_HELLO_TIMEOUT, validator=_check_positive
    )
    #: Send a QX_PING request when the connection was quiet this long (None: never).
    keepalive_interval: float | None = None
    close_timeout: float = attrs.field(default=DEFAULT_CLOSE_TIMEOUT, validator=_check_positive)
    initial_max_data: int = 1 << 20
    initial_max_stream_data: int = 256 << 10
    max_data_window: int = 16 << 20
    max_stream_data_window: int = 8 << 20
    max_streams_bidi: int = 128
    max_streams_uni: int = 128
    #: Streams tracked at once, both sides' together; ``max_streams_bidi`` and
    #: ``max_streams_uni`` may not exceed it.  At most
    #: :data:`~mstls.core.stream_limits.MAX_TRACKED_STREAMS_LIMIT` (2^20).
    max_tracked_streams: int = attrs.field(
        default=DEFAULT_MAX_TRACKED_STREAMS, validator=validate_tracked_streams
    )
    #: Largest record Frames field we accept; advertised only above the default (§5.2).
    max_record_size: int = attrs.field(
        default=DEFAULT_RECORD_SIZE, validator=_check_max_record_size
    )
    #: Largest record Frames field we send (capped by the peer's max_record_size).
    send_record_size: int = attrs.field(
        default=DEFAULT_RECORD_SIZE, validator=_check_send_record_size
    )
    max_send_per_call: int = MAX_SEND_PER_CALL
    #: RFC 9221 (usable with QMux, draft-ietf-quic-qmux §8.1): the
    #: max_datagram_frame_size we advertise (0: no datagrams) and the queue bounds.
    max_datagram_frame_size: int = 0
    datagram_send_queue: int = attrs.field(
        default=DEFAULT_DATAGRAM_SEND_QUEUE, validator=_check_queue
    )
    datagram_receive_queue: int = attrs.field(
        default=DEFAULT_DATAGRAM_RECEIVE_QUEUE, validator=_check_queue
    )

    def transport_parameters(self) -> TransportParameters:
        """Our transport parameters: only those QMux permits (draft-ietf-quic-qmux-02 §5.1)."""
        window = self.initial_max_stream_data
        return TransportParameters(
            max_idle_timeout=int(self.idle_timeout * 1000),
            initial_max_data=self.initial_max_data,
            initial_max_stream_data_bidi_local=window,
            initial_max_stream_data_bidi_remote=window,
            initial_max_stream_data_uni=window,
            initial_max_streams_bidi=self.max_streams_bidi,
            initial_max_streams_uni=self.max_streams_uni,
            # Equal to the default it is not encoded, as §5.2 allows.
            max_record_size=self.max_record_size,
            max_datagram_frame_size=self.max_datagram_frame_size,
        )
