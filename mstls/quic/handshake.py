"""The TLS handshake inside QUIC (RFC 9001 §4) and the transport parameters (RFC 9000 §7.3-§7.4).

CRYPTO data received at a level is reassembled and fed to the TLS engine at
the matching epoch; the engine's ordered output becomes CRYPTO data to send
and packet protection keys.  Keys are discarded on the RFC 9001 §4.9 schedule:
Initial keys when the client first sends (the server first receives) a
Handshake packet, Handshake keys when the handshake is confirmed (server: when
it completes; client: on HANDSHAKE_DONE).  1-RTT key updates follow §6.
"""

from __future__ import annotations

from ..codes import TransportErrorCode
from ..core.events import HandshakeCompletedEvent
from ..core.lifecycle import LifecycleEvent
from ..core.recovery import PacketNumberSpace
from ..core.stream_manager import StreamManager
from ..exceptions import ProtocolError, TransportParameterError
from ..tls.cipher_suites import CipherSuite
from ..tls.client import ClientHandshake
from ..tls.engine import Direction, Epoch, HandshakeCompleted, InstallKey, SendHandshake
from ..tls.server import ServerHandshake
from ..wire.frames import CryptoFrame
from ..wire.transport_params import (
    TransportParameters,
    VersionInformation,
    decode_transport_parameters,
    encode_transport_parameters,
    validate_peer_parameters,
)
from .crypto import OneRttKeys, PacketProtection
from .early import ZeroRttMixin, early_data_limits, remembered_parameters
from .negotiation import check_client_information, check_server_information, choose_version
from .qlog import key_type
from .version_retry import check_reacted_server_information
from .versions import quic_version

__all__ = ["EPOCH_SPACE", "HandshakeMixin"]

#: TLS epochs to packet number spaces (RFC 9001 §4.1.4).
EPOCH_SPACE = {
    Epoch.INITIAL: PacketNumberSpace.INITIAL,
    Epoch.ZERO_RTT: PacketNumberSpace.APPLICATION,
    Epoch.HANDSHAKE: PacketNumberSpace.HANDSHAKE,
    Epoch.ONE_RTT: PacketNumberSpace.APPLICATION,
}
#: CRYPTO data of a space goes to this epoch (never 0-RTT: it has no CRYPTO frames).
SPACE_EPOCH = {
    PacketNumberSpace.INITIAL: Epoch.INITIAL,
    PacketNumberSpace.HANDSHAKE: Epoch.HANDSHAKE,
    PacketNumberSpace.APPLICATION: Epoch.ONE_RTT,
}
#: Packet number spaces to the qlog key levels (quic-events KeyType).
SPACE_LEVEL = {
    PacketNumberSpace.INITIAL: "initial",
    PacketNumberSpace.HANDSHAKE: "handshake",
    PacketNumberSpace.APPLICATION: "1rtt",
}


class HandshakeMixin(ZeroRttMixin):
    """TLS glue, key installation and discarding, transport parameters."""

    _one_rtt_secrets: dict[Direction, tuple[CipherSuite, bytes]]
    local_params: TransportParameters
    #: Server: the client's parameters as :meth:`_negotiate_version` decoded them,
    #: with the bytes they came from, until :meth:`_apply_peer_parameters` takes them.
    _decoded_peer_params: tuple[bytes, TransportParameters] | None

    def _init_handshake(self, now: float) -> None:
        self.handshake_complete = False
        self.handshake_confirmed = False
        self._one_rtt_secrets = {}
        self.retry_token = b""
        params = self.config.transport_parameters(self.host_cid)
        if not self.is_client:
            params.original_destination_connection_id = self.original_dcid
            params.stateless_reset_token = self.local_cids.initial_reset_token
            params.retry_source_connection_id = self.retry_source_cid
            params.preferred_address = self._preferred_address_parameter()  # paths.py
        self.local_params = params
        self._decoded_peer_params = None
        if self.qlog is not None:
            self.qlog.parameters_set(now, "local", params)
        if self.is_client:
            encoded = encode_transport_parameters(params)
            self.tls = ClientHandshake(self.config.tls, transport_parameters=encoded)
        else:
            # Encoded once, by _negotiate_version, when the ClientHello brings the
            # client's parameters: ours name the version chosen then (RFC 9368 §3).
            server = ServerHandshake(self.config.tls, transport_parameters=b"")
            server.early_data_limits = early_data_limits(params)  # RFC 9000 §7.4.1
            self.tls = server
        self.streams = StreamManager(
            self.is_client,
            params,
            max_stream_window=self.config.max_stream_data_window,
            max_connection_window=self.config.max_data_window,
            send_buffer_size=self.config.send_buffer_size,
            max_tracked_streams=self.config.max_tracked_streams,
        )

    def start_handshake(self, now: float) -> None:
        self.tls.start()
        self.process_tls_output(now)

    # -- CRYPTO in ---------------------------------------------------------------------
    def receive_crypto(self, space: PacketNumberSpace, frame: CryptoFrame, now: float) -> None:
        data = self.spaces[space].crypto_recv.receive(frame.offset, frame.data)
        if not data:
            return
        tls = self.tls
        if isinstance(tls, ServerHandshake):
            # The engine asks for our parameters once it has the client's (RFC 9368
            # §3, _negotiate_version).  The hook is ours only for this call: one kept
            # by the engine would make a reference cycle (connection -> engine ->
            # connection), and a dropped handshake would wait for the cyclic
            # collector (issue 11, tests/quic/test_connection_freed.py).
            tls.on_peer_transport_parameters = self._negotiate_version
            try:
                tls.receive(SPACE_EPOCH[space], data)
            finally:
                tls.on_peer_transport_parameters = None
        else:
            tls.receive(SPACE_EPOCH[space], data)
        self.process_tls_output(now)

    def process_tls_output(self, now: float) -> None:
        for item in self.tls.pull_output():
            if isinstance(item, SendHandshake):
                self.spaces[EPOCH_SPACE[item.epoch]].crypto_send.write(item.data)
            elif isinstance(item, InstallKey):
                self._install_key(item, now)
            elif isinstance(item, HandshakeCompleted):
                self._on_handshake_completed(item, now)
        if self.peer_params is None and self.tls.peer_transport_parameters is not None:
            self._apply_peer_parameters(self.tls.peer_transport_parameters, now)

    def _install_key(self, item: InstallKey, now: float) -> None:
        space = self.spaces[EPOCH_SPACE[item.epoch]]
        if item.epoch == Epoch.ONE_RTT:
            self._one_rtt_secrets[item.direction] = (item.cipher_suite, item.secret)
            if len(self._one_rtt_secrets) == 2 and space.send_keys is None:
                suite, send = self._one_rtt_secrets[Direction.WRITE]
                _, receive = self._one_rtt_secrets[Direction.READ]
                keys = OneRttKeys(suite, send, receive, version=quic_version(self.version))
                space.send_keys = keys
                space.recv_keys = keys
                if self.qlog is not None:
                    self.qlog.keys_installed(now, "1rtt", ours=True, peers=True)
                self._end_zero_rtt()  # RFC 9001 §4.9.3 (early.py)
            return
        if item.epoch == Epoch.ZERO_RTT:
            version = quic_version(self.version)
            self._install_zero_rtt_key(
                PacketProtection(item.cipher_suite, item.secret, version=version), now
            )
            return
        if self.qlog is not None:
            ours = item.direction is Direction.WRITE
            self.qlog.keys_installed(now, "handshake", ours=ours, peers=not ours)
        protection = PacketProtection(
            item.cipher_suite, item.secret, version=quic_version(self.version)
        )
        if item.epoch == Epoch.HANDSHAKE:
            self.recovery.has_handshake_keys = True
        if item.direction is Direction.WRITE:
            space.send_keys = protection
        else:
            space.recv_keys = protection

    def _on_handshake_completed(self, item: HandshakeCompleted, now: float) -> None:
        self.handshake_complete = True
        self.handshake_deadline = None
        self._apply(LifecycleEvent.HANDSHAKE_DONE, None, now)
        self.events.append(
            HandshakeCompletedEvent(
                alpn_protocol=item.alpn_protocol,
                cipher_suite=int(item.cipher_suite),
                peer=item.peer,
                server_name=item.server_name,
                resumed=item.resumed,
            )
        )
        if not self.is_client:
            # RFC 9001 §4.1.2: the server's handshake is confirmed on completion.
            self.control_frames.handshake_done_pending = True
            self._confirm_handshake()

    def on_handshake_done(self, now: float) -> None:
        """HANDSHAKE_DONE (RFC 9000 §19.20): only a server may send it."""
        if not self.is_client:
            raise ProtocolError(
                "a client sent HANDSHAKE_DONE",
                error_code=TransportErrorCode.PROTOCOL_VIOLATION,
                frame_type=0x1E,
            )
        self._confirm_handshake()
        self._follow_preferred_address(now)  # RFC 9000 §9.6 (paths.py)

    def _confirm_handshake(self) -> None:
        if self.handshake_confirmed:
            return
        self.handshake_confirmed = True
        if self.qlog is not None:
            self.qlog.state_updated(None, "handshake_confirmed")
        self.recovery.on_handshake_confirmed()
        self.discard_space(PacketNumberSpace.HANDSHAKE)

    def discard_space(self, space: PacketNumberSpace) -> None:
        """Drop a space's keys and in-flight state (RFC 9001 §4.9, RFC 9002 §6.4)."""
        state = self.spaces[space]
        if state.discarded:
            return
        state.discarded = True
        state.send_keys = None
        state.recv_keys = None
        if space == PacketNumberSpace.INITIAL:
            self.original_initial_recv = None
        state.probes = 0
        self.recovery.discard_space(space)
        if self.qlog is not None:
            self.qlog.keys_discarded(None, SPACE_LEVEL[space])

    # -- key update (RFC 9001 §6) ---------------------------------------------------------
    def request_key_update(self) -> None:
        """Start a 1-RTT key update; only once the handshake is confirmed (§6.1)."""
        keys = self.spaces[PacketNumberSpace.APPLICATION].send_keys
        if not self.handshake_confirmed or not isinstance(keys, OneRttKeys):
            raise ProtocolError("key update before the handshake is confirmed")
        keys.initiate_update()
        if self.qlog is not None:
            self.qlog.one_rtt_generations(
                None, keys.send_generation, keys.receive_generation, "local_update"
            )

    def discard_previous_keys(self, now: float | None = None) -> None:
        """Drop the previous generation's receive keys (RFC 9001 §6.5)."""
        keys = self.spaces[PacketNumberSpace.APPLICATION].recv_keys
        if isinstance(keys, OneRttKeys):
            if self.qlog is not None and keys.has_previous:
                peer = key_type(not self.is_client, "1rtt")
                self.qlog.key_discarded(now, peer, generation=keys.receive_generation - 1)
            keys.discard_previous()
        self.key_discard_deadline = None

    # -- transport parameters (RFC 9000 §7.3, §7.4, §18) -------------------------------------
    def _negotiate_version(self, raw: bytes) -> bytes:
        """Server, on the client's parameters, before answering: pick the version
        (RFC 9368 §2.3, :mod:`.negotiation`), switch to it, and return our parameters
        with version_information naming it."""
        try:
            decoded = decode_transport_parameters(raw)
        except TransportParameterError:
            client = None  # _apply_peer_parameters reports it
        else:
            self._decoded_peer_params = (raw, decoded)  # decoded once: see _apply_peer_parameters
            client = decoded.version_information
        self.switch_version(choose_version(self.config.versions, self.original_version, client))
        self.local_params.version_information = VersionInformation(
            self.version, self.config.versions
        )
        return encode_transport_parameters(self.local_params)

    def _apply_peer_parameters(self, raw: bytes, now: float) -> None:
        cached = self._decoded_peer_params
        self._decoded_peer_params = None
        params = cached[1] if cached is not None and cached[0] is raw else None
        if params is None:
            params = decode_transport_parameters(raw)
        validate_peer_parameters(params, peer_is_server=self.is_client)
        self._check_connection_ids(params)
        if self.is_client:
            check_server_information(
                params.version_information, self.version, self.original_version
            )
            if self.reacted_to_version_negotiation is not None:
                check_reacted_server_information(
                    params.version_information,
                    self.config.versions,
                    self.original_version,
                    self.version,
                )
        else:
            check_client_information(params.version_information, self.original_version)
        self.peer_params = params
        if self.qlog is not None:
            self.qlog.parameters_set(now, "remote", params)
        self.streams.set_peer_parameters(params)
        if params.max_idle_timeout:
            peer_idle = params.max_idle_timeout / 1000
            self.idle_timeout = (
                min(self.idle_timeout, peer_idle) if self.idle_timeout else peer_idle
            )
        self.recovery.max_ack_delay = params.max_ack_delay / 1000
        self.local_cids.set_peer_limit(params.active_connection_id_limit)
        self.mtu.set_peer_limit(params.max_udp_payload_size)
        self.datagrams.set_peer_limit(params.max_datagram_frame_size)  # RFC 9221 §3
        if self.is_client and params.stateless_reset_token is not None:
            self.peer_cids.set_initial_reset_token(params.stateless_reset_token)
        if self.is_client:  # RFC 9000 §7.4.1: tickets remember them; 0-RTT ends (early.py)
            self.tls.ticket_transport_parameters = remembered_parameters(params)
            self._finish_zero_rtt(params, now)
        self._learn_preferred_address(params)  # RFC 9000 §9.6 (paths.py)

    def _check_connection_ids(self, params: TransportParameters) -> None:
        """RFC 9000 §7.3: the IDs in the parameters must match those in the packets."""
        expected_source = self.peer_cids.current
        if params.initial_source_connection_id != expected_source:
            raise TransportParameterError("initial_source_connection_id does not match the packets")
        if not self.is_client:
            return
        if params.original_destination_connection_id != self.original_dcid:
            raise TransportParameterError(
                "original_destination_connection_id does not match our first Destination CID"
            )
        if params.retry_source_connection_id != self.retry_source_cid:
            raise TransportParameterError(
                "retry_source_connection_id does not match the Retry packet"
            )
