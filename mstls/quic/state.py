"""The state a QUIC connection's parts share: packet number spaces and declarations.

:class:`ConnectionState` declares every attribute the parts of
:class:`~mstls.quic.connection.QuicConnection` use (the base of the chain the
connection module's documentation describes), so each part can be read
(and type-checked) on its own.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from ..core.ack_tracker import AckTracker
from ..core.lifecycle import CloseInfo, Lifecycle, LifecycleEvent
from ..core.recovery import PacketNumberSpace
from .crypto import OneRttKeys, PacketProtection
from .crypto_stream import CryptoReceiver, CryptoSender

if TYPE_CHECKING:
    from ..core.connection_ids import LocalConnectionIds, PeerConnectionIds
    from ..core.datagrams import DatagramQueues
    from ..core.events import Event
    from ..core.recovery import Recovery
    from ..core.stream_manager import StreamManager
    from ..tls.engine import TLSHandshake
    from ..wire.transport_params import TransportParameters
    from .config import QuicConfig
    from .control_frames import ControlFrames
    from .mtu import PathMtu
    from .qlog import QlogWriter

__all__ = ["Address", "ConnectionState", "Space"]

Address = Any  # whatever the socket layer uses: (host, port) tuples


class Space:
    """One packet number space: its keys, CRYPTO stream and received packets."""

    __slots__ = (
        "acks",
        "crypto_recv",
        "crypto_send",
        "discarded",
        "next_packet_number",
        "probes",
        "recv_keys",
        "send_keys",
        "space",
    )

    def __init__(self, space: PacketNumberSpace, crypto_limit: int) -> None:
        self.space = space
        self.send_keys: PacketProtection | OneRttKeys | None = None
        self.recv_keys: PacketProtection | OneRttKeys | None = None
        self.crypto_send = CryptoSender()
        self.crypto_recv = CryptoReceiver(crypto_limit)
        self.acks = AckTracker(space)
        self.next_packet_number = 0
        self.discarded = False
        #: Probe packets requested by a PTO (RFC 9002 §6.2.4).
        self.probes = 0


class ConnectionState:
    """Attribute declarations shared by the connection's parts."""

    config: QuicConfig
    is_client: bool
    lifecycle: Lifecycle
    #: The QUIC version of our long headers, and the one the connection started in.
    version: int
    original_version: int
    #: Client: the version of the attempt a Version Negotiation packet turned down,
    #: once we reacted to one (RFC 9368 §4, :mod:`.version_retry`).
    reacted_to_version_negotiation: int | None = None
    #: The DCID the Initial keys derive from (RFC 9001 §5.2).
    initial_dcid: bytes
    #: Server: the original version's Initial receive keys, kept after a switch
    #: until a Handshake packet of the negotiated version arrives (RFC 9369 §4.1).
    original_initial_recv: PacketProtection | None
    #: The next 1-RTT packet number to skip (RFC 9000 §21.4, :mod:`.sending`).
    next_pn_skip: int
    peer_address: Address
    events: deque[Event]
    close_info: CloseInfo | None
    close_pending: bool
    #: HANDSHAKE_DONE and ACK_FREQUENCY to send, again when lost (.control_frames).
    control_frames: ControlFrames
    spaces: list[Space]
    tls: TLSHandshake
    recovery: Recovery
    streams: StreamManager
    datagrams: DatagramQueues
    local_cids: LocalConnectionIds
    peer_cids: PeerConnectionIds
    peer_cid_set: bool
    host_cid: bytes
    original_dcid: bytes
    retry_source_cid: bytes | None
    retry_token: bytes
    address_validated: bool
    bytes_received: int
    bytes_sent: int
    mtu: PathMtu
    idle_timeout: float
    idle_deadline: float
    handshake_deadline: float | None
    close_deadline: float | None
    key_discard_deadline: float | None
    last_ack_eliciting_sent: float | None
    ack_eliciting_sent_since_receive: bool
    last_sent: float
    peer_params: TransportParameters | None
    handshake_complete: bool
    handshake_confirmed: bool
    qlog: QlogWriter | None
    #: Our current max_ack_delay in seconds (the peer may change it, ack-frequency §4).
    ack_delay: float

    def _init_spaces(self, initial_dcid: bytes) -> None:
        limit = self.config.max_crypto_buffer
        self.spaces = [Space(PacketNumberSpace(i), limit) for i in range(3)]
        self.set_initial_keys(initial_dcid)

    def set_initial_keys(self, dcid: bytes) -> None:
        from .crypto import initial_protection  # noqa: PLC0415 - avoids a cycle at import

        self.initial_dcid = dcid
        send, receive = initial_protection(dcid, is_client=self.is_client, version=self.version)
        initial = self.spaces[PacketNumberSpace.INITIAL]
        initial.send_keys = send
        initial.recv_keys = receive
        if self.qlog is not None:
            self.qlog.keys_installed(None, "initial", ours=True, peers=True, trigger=None)

    def switch_version(self, version: int) -> None:
        """Move to the negotiated ``version`` (RFC 9369 §4.1): new Initial keys from
        the same DCID; a server keeps the original version's receive keys."""
        if version == self.version:
            return
        initial = self.spaces[PacketNumberSpace.INITIAL]
        previous = initial.recv_keys
        self.version = version
        self.set_initial_keys(self.initial_dcid)
        if not self.is_client and isinstance(previous, PacketProtection):
            self.original_initial_recv = previous

    # Implemented by later parts / the connection -----------------------------------------
    def _apply(
        self, event: LifecycleEvent, info: CloseInfo | None, now: float | None = None
    ) -> bool:
        raise NotImplementedError

    def fail(self, error: Any, now: float) -> None:
        raise NotImplementedError

    def enter_draining(self, info: CloseInfo, now: float) -> None:
        raise NotImplementedError

    def abandon(self, error: Any, now: float) -> None:
        raise NotImplementedError

    def on_stateless_reset(self) -> None:
        raise NotImplementedError

    def reset_idle_timer(self, now: float) -> None:
        raise NotImplementedError

    def discard_space(self, space: PacketNumberSpace) -> None:
        raise NotImplementedError

    @property
    def max_datagram_size(self) -> int:
        """Implemented by :class:`~mstls.quic.datagrams.DatagramMixin`."""
        raise NotImplementedError

    def pto_interval(self) -> float:
        """The current probe timeout without backoff (RFC 9002 §6.2.1)."""
        rtt = self.recovery.rtt
        max_ack_delay = self.peer_params.max_ack_delay / 1000 if self.peer_params else 0.025
        return rtt.smoothed_rtt + max(4 * rtt.rttvar, 0.001) + max_ack_delay
