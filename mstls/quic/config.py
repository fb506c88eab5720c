"""Configuration of a QUIC connection: TLS settings plus transport settings.

Every limit the connection enforces is a field here with a named default, so
operators and tests can tune it (RFC 9000 §18.2 for the transport parameters).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import attrs

from ..core.datagrams import (
    DEFAULT_DATAGRAM_RECEIVE_QUEUE,
    DEFAULT_DATAGRAM_SEND_QUEUE,
    validate_datagram_queue,
)
from ..core.stateless_reset import StatelessResetKey
from ..core.stream_limits import DEFAULT_MAX_TRACKED_STREAMS, validate_tracked_streams
from ..exceptions import ConfigurationError
from ..tls.config import TLSConfig
from ..wire.packet import QUIC_VERSION_1, QUIC_VERSION_2, SUPPORTED_VERSIONS
from ..wire.transport_params import TransportParameters, VersionInformation

__all__ = [
    "DEFAULT_CID_LENGTH",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "INITIAL_MAX_DATAGRAM_SIZE",
    "MAX_CRYPTO_BUFFER",
    "QuicConfig",
]

#: RFC 9000 §14: every QUIC path carries 1200-byte datagrams; we start there.
INITIAL_MAX_DATAGRAM_SIZE = 1200
#: Length of the connection IDs we issue.
DEFAULT_CID_LENGTH = 8
DEFAULT_IDLE_TIMEOUT = 30.0
#: Overall handshake deadline (the seeds' T1), independent of retransmissions.
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
#: Out-of-order CRYPTO data buffered per level (RFC 9000 §7.5: at least 4096).
MAX_CRYPTO_BUFFER = 1 << 17
#: Largest datagram PMTU probing tries (loopback and jumbo-frame LANs go high).
DEFAULT_PMTU_MAX = 16384
#: RFC 8899 §5.1.1: PMTU_RAISE_TIMER is 600 s.
DEFAULT_PMTU_RAISE_INTERVAL = 600.0


def _check_queue(_config: object, field: attrs.Attribute[int], value: int) -> None:
    try:
        validate_datagram_queue(field.name, value)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


def _check_versions(_config: object, _field: object, versions: tuple[int, ...]) -> None:
    unknown = [v for v in versions if v not in SUPPORTED_VERSIONS]
    if not versions or unknown or len(set(versions)) != len(versions):
        supported = ", ".join(f"{v:#010x}" for v in SUPPORTED_VERSIONS)
        raise ConfigurationError(
            f"versions: expected distinct versions among {supported}, got {list(versions)}"
        )


@attrs.define
class QuicConfig:
    """Settings for one QUIC endpoint role; ``tls`` is the handshake configuration."""

    tls: TLSConfig
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    #: Send a PING when nothing was sent for this long (None: never).
    keepalive_interval: float | None = None
    initial_max_data: int = 1 << 20
    initial_max_stream_data: int = 256 << 10
    max_data_window: int = 16 << 20
    max_stream_data_window: int = 8 << 20
    #: Bytes of application data buffered per stream before write() blocks; with
    #: large datagrams (PMTU) a round trip can carry more than the 1 MiB default.
    send_buffer_size: int = 4 << 20
    max_streams_bidi: int = 128
    max_streams_uni: int = 128
    #: Streams tracked at once, both sides' together; ``max_streams_bidi`` and
    #: ``max_streams_uni`` may not exceed it.  At most
    #: :data:`~mstls.core.stream_limits.MAX_TRACKED_STREAMS_LIMIT` (2^20).
    max_tracked_streams: int = attrs.field(
        default=DEFAULT_MAX_TRACKED_STREAMS, validator=validate_tracked_streams
    )
    max_ack_delay_ms: int = 25
    #: draft-ietf-quic-ack-frequency: advertise min_ack_delay (so the peer may ask us
    #: to acknowledge less often) and ask a peer that advertises it to acknowledge
    #: every ``ack_eliciting_threshold + 1`` ack-eliciting packets.
    ack_frequency: bool = True
    min_ack_delay_us: int = 1000
    ack_eliciting_threshold: int = 9
    ack_delay_exponent: int = 3
    active_connection_id_limit: int = 8
    cid_length: int = DEFAULT_CID_LENGTH
    #: The max_udp_payload_size we advertise (what we accept).
    max_udp_payload_size: int = 65527
    #: Path MTU discovery (RFC 8899 DPLPMTUD with PADDING+PING probes).
    pmtu_discovery: bool = True
    pmtu_max: int = DEFAULT_PMTU_MAX
    #: Seconds before a finished (or, after a black hole, restarted) search looks
    #: for a larger PMTU again (RFC 8899 §5.1.1 PMTU_RAISE_TIMER).
    pmtu_raise_interval: float = DEFAULT_PMTU_RAISE_INTERVAL
    #: Mark packets ECT(0) where the socket allows and validate the path's ECN
    #: (RFC 9000 §13.4); ECN counts of received packets are reported either way.
    ecn: bool = True
    max_crypto_buffer: int = MAX_CRYPTO_BUFFER
    stateless_reset_key: StatelessResetKey | None = None
    #: Makes the connection IDs we issue (e.g. ``QuicLbConfig.generate`` for IDs a
    #: load balancer can route); must return ``cid_length`` bytes.  Default: random.
    cid_generator: Callable[[int], bytes] | None = None
    #: Batch datagrams with UDP GSO and GRO where the kernel has them (Linux); False,
    #: or ``MSTLS_NO_GSO=1`` in the environment, sends and reads one datagram per
    #: system call (for packet captures on ``lo``, see :mod:`mstls.io.udp`).
    udp_offload: bool = True
    #: Server: send disable_active_migration and drop non-probing packets from
    #: new peer addresses instead of following them (RFC 9000 §9, §18.2).
    disable_active_migration: bool = False
    #: Server: an ``(IPv4 address, port)`` sent in preferred_address (RFC 9000
    #: §9.6); the driver must receive there too.  Client: ``follow_preferred_address``
    #: moves to a server's preferred address once the handshake is confirmed.
    preferred_address: tuple[str, int] | None = None
    follow_preferred_address: bool = True
    #: Write a qlog trace per connection into this directory (None: off).
    qlog_dir: str | os.PathLike[str] | None = None
    #: QUIC versions we speak, in our order of preference (RFC 9368).  A client
    #: offers them all (version_information); a server moves a client to the first
    #: of these that the client offers (compatible negotiation, RFC 9368 §2.3).
    versions: tuple[int, ...] = attrs.field(
        default=(QUIC_VERSION_1, QUIC_VERSION_2), converter=tuple, validator=_check_versions
    )
    #: The version a client starts in (default: the first of ``versions``); e.g.
    #: ``versions=(QUIC_VERSION_2, QUIC_VERSION_1), initial_version=QUIC_VERSION_1``
    #: reaches v1-only servers and is moved to v2 by those that speak it.
    initial_version: int | None = None
    #: RFC 9221: the max_datagram_frame_size we advertise (0: no datagrams; 65535
    #: accepts any DATAGRAM frame that fits a packet, §3), and the bounds of the
    #: send and receive queues (:mod:`mstls.core.datagrams`).
    max_datagram_frame_size: int = 0
    datagram_send_queue: int = attrs.field(
        default=DEFAULT_DATAGRAM_SEND_QUEUE, validator=_check_queue
    )
    datagram_receive_queue: int = attrs.field(
        default=DEFAULT_DATAGRAM_RECEIVE_QUEUE, validator=_check_queue
    )

    def __attrs_post_init__(self) -> None:
        if self.initial_version is not None and self.initial_version not in self.versions:
            raise ConfigurationError(
                f"initial_version {self.initial_version:#010x} is not one of versions"
            )

    @property
    def start_version(self) -> int:
        """The version a client's first Initial uses."""
        return self.versions[0] if self.initial_version is None else self.initial_version

    def new_cid(self) -> bytes:
        """A fresh connection ID of ``cid_length`` bytes from the generator."""
        return (self.cid_generator or os.urandom)(self.cid_length)

    def transport_parameters(self, source_cid: bytes) -> TransportParameters:
        """Our transport parameters (RFC 9000 §18.2); the caller adds role-specific ones."""
        window = self.initial_max_stream_data
        return TransportParameters(
            max_idle_timeout=int(self.idle_timeout * 1000),
            max_udp_payload_size=self.max_udp_payload_size,
            initial_max_data=self.initial_max_data,
            initial_max_stream_data_bidi_local=window,
            initial_max_stream_data_bidi_remote=window,
            initial_max_stream_data_uni=window,
            initial_max_streams_bidi=self.max_streams_bidi,
            initial_max_streams_uni=self.max_streams_uni,
            ack_delay_exponent=self.ack_delay_exponent,
            max_ack_delay=self.max_ack_delay_ms,
            active_connection_id_limit=self.active_connection_id_limit,
            initial_source_connection_id=source_cid,
            min_ack_delay=self.min_ack_delay_us if self.ack_frequency else None,
            version_information=VersionInformation(self.start_version, self.versions),
            max_datagram_frame_size=self.max_datagram_frame_size,
            disable_active_migration=self.disable_active_migration,
        )
