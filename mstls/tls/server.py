"""The server side of the TLS 1.3 handshake (RFC 8446 §2, Appendix A.2).

The handlers of the messages a server receives; each returns the
:class:`~mstls.tls.states.Branch` it took and the state machine
(``TRANSITIONS[Role.SERVER]`` in :mod:`mstls.tls.states`, beside the RFC's
diagram) says where that leads.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable

from ..codes import AlertDescription
from ..exceptions import CertificateError, HandshakeError
from . import extensions as ext
from .chain_verification import (
    verify_client_chain,
    verify_pinned,
)
from .cipher_suites import CipherSuite
from .config import TLSConfig
from .early_data import EarlyDataContext
from .engine import Direction, Epoch, TLSHandshake
from .extensions import ExtensionType, HandshakeType
from .groups import server_key_share
from .key_schedule import KeySchedule
from .messages import (
    HELLO_RETRY_RANDOM,
    Certificate,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    EndOfEarlyData,
    Finished,
    ServerHello,
    certificate_message,
)
from .psk import PSK_DHE_KE, binders_length, parse_offered_psks, parse_psk_modes
from .resumption import (
    QUIC_MAX_EARLY_DATA,
    AcceptedPsk,
    choose_psk,
    issue_tickets,
    peer_from_chain,
)
from .signatures import certificate_verify_content, choose_scheme, sign
from .states import Branch, Role

__all__ = ["ServerHandshake"]


class ServerHandshake(TLSHandshake):
    """Drives a TLS 1.3 handshake as the server."""

    role = Role.SERVER

    def __init__(self, config: TLSConfig, *, transport_parameters: bytes | None = None) -> None:
        super().__init__(config, transport_parameters=transport_parameters)
        #: Called with the client's transport parameters before EncryptedExtensions
        #: is built; returns the parameters we send (QUIC version negotiation).
        self.on_peer_transport_parameters: Callable[[bytes], bytes] | None = None
        if config.private_key is None or not config.certificate_chain:
            raise HandshakeError(
                AlertDescription.internal_error, "a server needs a certificate and a private key"
            )
        self.server_name = None
        self._retry_group: int | None = None
        self._client_hs_secret = b""
        self._offered_schemes: list[int] = []
        #: The ticket being resumed (RFC 8446 §2.2), once the ClientHello chose one.
        self._psk: AcceptedPsk | None = None
        #: Whether the client can use our tickets: it listed psk_dhe_ke (§4.2.9).
        self._client_takes_tickets = False
        #: 0-RTT (RFC 8446 §4.2.10): the client offered early data; we accepted it.
        self.early_data_offered = False
        self.early_data_accepted = False
        #: The limits a 0-RTT client relies on, by number (the transport sets them,
        #: RFC 9000 §7.4.1): sealed into our tickets, checked on resumption.
        self.early_data_limits: dict[int, int] = {}

    def start(self) -> None:
        """Servers wait for the ClientHello; nothing to send yet."""

    # -- ClientHello --------------------------------------------------------------------
    def _handle_client_hello(self, body: bytes, raw: bytes) -> Branch:
        hello = ClientHello.parse(body)
        self._check_client_hello(hello)
        suite = self._choose_suite(hello)
        group, share = self._choose_group(hello)
        if self._schedule is None:
            self.cipher_suite = suite
            self._schedule = KeySchedule(suite)
        elif suite != self.cipher_suite:
            raise HandshakeError(
                AlertDescription.illegal_parameter,
                "second ClientHello no longer allows the cipher suite we chose",
            )
        modes = hello.extensions.get(ExtensionType.psk_key_exchange_modes)
        self._client_takes_tickets = modes is not None and PSK_DHE_KE in parse_psk_modes(modes)
        binder_hash = self._binder_transcript_hash(hello, raw)
        self.early_data_offered = ExtensionType.early_data in hello.extensions
        self._schedule.update_transcript(raw)
        if share is None:
            self._send_hello_retry(hello, group)
            return Branch.HELLO_RETRY
        self.client_random = hello.random
        alpn = self._choose_alpn(hello)
        self._read_client_extensions(hello)
        scheme = self._choose_scheme(hello)
        if binder_hash is not None:
            self._psk = self._choose_psk(hello, suite, alpn, binder_hash)
        self.early_data_accepted = self._accepts_early_data()
        return self._send_server_flight(hello, group, share, alpn, scheme)

    @property
    def early_data_context(self) -> EarlyDataContext:
        """What 0-RTT under our tickets relies on now (:mod:`.early_data`)."""
        return EarlyDataContext(self.early_data_limits, self.config.early_data_context)

    def _accepts_early_data(self) -> bool:
        """RFC 8446 §4.2.10, §8: the first PSK was resumed with a ticket that allows
        early data, in the first ClientHello, issued under an early-data context
        we still honour (no remembered limit lowered, RFC 9000 §7.4.1; same
        settings, RFC 9001 §4.6.2), and the strike register has not seen the
        ticket.  Over QUIC the ticket carries 0xffffffff (RFC 9001 §4.6.1)."""
        psk, config = self._psk, self.config
        if not self.early_data_offered or psk is None:
            return False
        if self._retry_group is not None or psk.index != 0:
            return False
        promised = psk.contents.max_early_data
        if self.is_quic:
            if promised != QUIC_MAX_EARLY_DATA or config.max_early_data <= 0:
                return False
        elif not 0 < promised <= config.max_early_data:
            return False  # also a ticket promising more than we now take (a lowered limit)
        if not self.early_data_context.admits(psk.contents.early_context):
            return False
        register = config.strike_register
        return register is not None and register.admit(psk.identity, self.now_ms())

    # -- resumption (RFC 8446 §2.2, §4.2.11) ----------------------------------------------
    def _binder_transcript_hash(self, hello: ClientHello, raw: bytes) -> bytes | None:
        """The hash the binders cover: the transcript so far and the ClientHello
        without its binders (§4.2.11.2); None when no resumable PSK is offered."""
        offered = hello.extensions.get(ExtensionType.pre_shared_key)
        modes = hello.extensions.get(ExtensionType.psk_key_exchange_modes)
        if offered is None or self.config.ticket_keys is None:
            return None
        if modes is None:  # §4.2.9: a client offering a PSK MUST send the modes
            raise HandshakeError(
                AlertDescription.missing_extension, "pre_shared_key without psk_key_exchange_modes"
            )
        if not self._client_takes_tickets:
            return None
        binders = parse_offered_psks(offered).binders
        assert self._schedule is not None
        return self._schedule.transcript_hash_with(raw[: len(raw) - binders_length(binders)])

    def _choose_psk(
        self, hello: ClientHello, suite: CipherSuite, alpn: str | None, binder_hash: bytes
    ) -> AcceptedPsk | None:
        offered = parse_offered_psks(hello.extensions[ExtensionType.pre_shared_key])
        accepted = choose_psk(
            self.config,
            offered,
            binder_hash,
            suite=suite,
            alpn=alpn,
            server_name=self.server_name,
            quic=self.is_quic,
            now_ms=self.now_ms(),
        )
        if accepted is not None:
            self.resumed = True
            self.peer = peer_from_chain(accepted.contents.peer_chain)
        return accepted

    def _send_tickets(self) -> None:
        """NewSessionTickets after the handshake (RFC 8446 §4.6.1)."""
        config = self.config
        if (
            not self._client_takes_tickets
            or config.ticket_keys is None
            or config.session_tickets <= 0
        ):
            return
        assert self.cipher_suite is not None
        self._derive_resumption_secret()
        for ticket in issue_tickets(
            self.config,
            self.cipher_suite,
            self._resumption_secret,
            alpn=self.alpn_protocol,
            server_name=self.server_name,
            peer=self.peer,
            quic=self.is_quic,
            now_ms=self.now_ms(),
            early_context=self.early_data_context.seal(),
        ):
            self._send(Epoch.ONE_RTT, ticket)

    def _check_client_hello(self, hello: ClientHello) -> None:
        """Version, compression and extension placement (RFC 8446 §4.1.2, §4.2)."""
        versions = hello.extensions.get(ExtensionType.supported_versions)
        if versions is None or ext.TLS13 not in ext.parse_supported_versions_client(versions):
            raise HandshakeError(AlertDescription.protocol_version, "peer does not offer TLS 1.3")
        if hello.legacy_compression_methods != b"\x00":
            raise HandshakeError(
                AlertDescription.illegal_parameter, "ClientHello offers compression"
            )
        self._check_extensions_allowed(HandshakeType.client_hello, hello.extensions)
        keys = list(hello.extensions)
        if ExtensionType.pre_shared_key in keys and keys[-1] != ExtensionType.pre_shared_key:
            raise HandshakeError(
                AlertDescription.illegal_parameter, "pre_shared_key is not the last extension"
            )
        if self.is_quic and hello.legacy_session_id:
            raise HandshakeError(
                AlertDescription.illegal_parameter, "QUIC ClientHello has a legacy_session_id"
            )
        for required in (
            ExtensionType.signature_algorithms,
            ExtensionType.supported_groups,
            ExtensionType.key_share,
        ):
            if required not in hello.extensions:
                raise HandshakeError(
                    AlertDescription.missing_extension,
                    f"ClientHello has no {required.name} extension",
                )

    def _choose_suite(self, hello: ClientHello) -> CipherSuite:
        for suite in self.config.cipher_suites:
            if suite in hello.cipher_suites:
                return suite
        raise HandshakeError(
            AlertDescription.handshake_failure, "peer offered no common cipher suite"
        )

    def _choose_group(self, hello: ClientHello) -> tuple[int, bytes | None]:
        """Our most preferred group the client supports, and its share if it sent one."""
        supported = ext.parse_uint16_list(
            hello.extensions[ExtensionType.supported_groups], "supported_groups extension"
        )
        shares = ext.parse_key_share_client(hello.extensions[ExtensionType.key_share])
        for shared, _ in shares:
            if shared not in supported:
                raise HandshakeError(
                    AlertDescription.illegal_parameter,
                    f"key share for group {shared:#06x}, which is not in supported_groups",
                )
        offered = dict(shares)
        if self._retry_group is not None:
            if list(offered) != [self._retry_group]:
                raise HandshakeError(
                    AlertDescription.illegal_parameter,
                    "second ClientHello does not carry exactly the requested key share",
                )
            return self._retry_group, offered[self._retry_group]
        for group in self.config.groups:
            if group in supported:
                return group, offered.get(group)
        raise HandshakeError(
            AlertDescription.handshake_failure, "peer offered no common key exchange group"
        )

    def _choose_alpn(self, hello: ClientHello) -> str | None:
        raw = hello.extensions.get(ExtensionType.application_layer_protocol_negotiation)
        ours = list(self.config.alpn_protocols)
        if raw is None:
            if self.config.require_alpn and ours:
                raise HandshakeError(
                    AlertDescription.no_application_protocol,
                    "peer offered no application protocol (ALPN)",
                )
            return None
        theirs = ext.parse_alpn(raw)
        for protocol in ours:
            if protocol in theirs:
                return protocol
        raise HandshakeError(
            AlertDescription.no_application_protocol,
            f"no common application protocol: peer offered {theirs}, we support {ours}",
        )

    def _read_client_extensions(self, hello: ClientHello) -> None:
        raw_name = hello.extensions.get(ExtensionType.server_name)
        if raw_name is not None:
            self.server_name = ext.parse_server_name(raw_name)
        if self.is_quic:
            params = hello.extensions.get(ExtensionType.quic_transport_parameters)
            if params is None:
                raise HandshakeError(
                    AlertDescription.missing_extension, "client sent no QUIC transport parameters"
                )
            self.peer_transport_parameters = params
            hook = self.on_peer_transport_parameters
            if hook is not None:  # QUIC version negotiation (RFC 9368) may change ours
                self.transport_parameters = hook(params)

    def _choose_scheme(self, hello: ClientHello) -> int:
        theirs = ext.parse_uint16_list(
            hello.extensions[ExtensionType.signature_algorithms], "signature_algorithms extension"
        )
        assert self.config.private_key is not None
        usable = [s for s in theirs if s in self.config.signature_schemes]
        return int(choose_scheme(self.config.private_key, usable))

    def _send_hello_retry(self, hello: ClientHello, group: int) -> None:
        """RFC 8446 §4.1.4: ask for a share of ``group``."""
        if self._retry_group is not None:
            raise HandshakeError(
                AlertDescription.illegal_parameter, "second ClientHello lacks the requested share"
            )
        assert self._schedule is not None and self.cipher_suite is not None
        self._retry_group = group
        self._schedule.restart_after_hello_retry()
        retry = ServerHello(
            random=HELLO_RETRY_RANDOM,
            legacy_session_id_echo=hello.legacy_session_id,
            cipher_suite=self.cipher_suite,
            extensions={
                ExtensionType.supported_versions: ext.TLS13.to_bytes(2, "big"),
                ExtensionType.key_share: ext.encode_key_share_hello_retry(group),
            },
        )
        self._send(Epoch.INITIAL, retry)

    # -- our flight ------------------------------------------------------------------------
    def _send_server_flight(
        self, hello: ClientHello, group: int, client_share: bytes, alpn: str | None, scheme: int
    ) -> Branch:
        """RFC 8446 §4.1.3-§4.4.4: our whole flight; the branch says whether it
        asked for a client certificate."""
        schedule = self._schedule
        assert schedule is not None and self.cipher_suite is not None
        key_exchange, shared_secret = server_key_share(group, client_share)
        self.group = group
        hello_extensions: dict[int, bytes] = {
            ExtensionType.supported_versions: ext.TLS13.to_bytes(2, "big"),
            ExtensionType.key_share: ext.encode_key_share_server(group, key_exchange),
        }
        if self._psk is not None:
            hello_extensions[ExtensionType.pre_shared_key] = self._psk.index.to_bytes(2, "big")
            schedule.use_psk(self._psk.contents.psk)
            if self.early_data_accepted:  # client_early_traffic_secret over the ClientHello
                early = schedule.derive(b"c e traffic")
                self._install(Epoch.ZERO_RTT, Direction.READ, early, "CLIENT_EARLY_TRAFFIC_SECRET")
        self._send(
            Epoch.INITIAL,
            ServerHello(
                random=os.urandom(32),
                legacy_session_id_echo=hello.legacy_session_id,
                cipher_suite=self.cipher_suite,
                extensions=hello_extensions,
            ),
        )
        schedule.extract(shared_secret)
        self._client_hs_secret = schedule.derive(b"c hs traffic")
        server_hs_secret = schedule.derive(b"s hs traffic")
        self._install(
            Epoch.HANDSHAKE, Direction.WRITE, server_hs_secret, "SERVER_HANDSHAKE_TRAFFIC_SECRET"
        )
        if not self.early_data_accepted or self.is_quic:  # else on EndOfEarlyData (§4.5)
            self._install_handshake_read_key()  # QUIC has no EndOfEarlyData (RFC 9001 §8.3)
        self.alpn_protocol = alpn
        self._send(Epoch.HANDSHAKE, EncryptedExtensions(self._encrypted_extensions(alpn)))
        if self._psk is not None:  # §2.2: the PSK authenticates; no certificates
            self._send(Epoch.HANDSHAKE, Finished(schedule.finished(server_hs_secret)))
            self._derive_application_secrets()
            self._install_application_key(Direction.WRITE)
            awaits_end = self.early_data_accepted and not self.is_quic  # RFC 9001 §8.3
            return Branch.EARLY_DATA if awaits_end else Branch.RESUMED
        requesting = self._requests_client_certificate()
        if requesting:
            self._offered_schemes = [int(s) for s in self.config.signature_schemes]
            request_extensions: dict[int, bytes] = {
                ExtensionType.signature_algorithms: ext.encode_uint16_list(self._offered_schemes)
            }
            self._send(Epoch.HANDSHAKE, CertificateRequest(b"", request_extensions))
        self._send(Epoch.HANDSHAKE, certificate_message(self.config.certificate_chain))
        key = self.config.private_key
        assert key is not None
        content = certificate_verify_content(schedule.transcript_hash(), is_server=True)
        self._send(Epoch.HANDSHAKE, CertificateVerify(scheme, sign(key, scheme, content)))
        self._send(Epoch.HANDSHAKE, Finished(schedule.finished(server_hs_secret)))
        self._derive_application_secrets()
        self._install_application_key(Direction.WRITE)
        return Branch.CERTIFICATE_REQUESTED if requesting else Branch.NEXT

    def _install_handshake_read_key(self) -> None:
        self._install(
            Epoch.HANDSHAKE,
            Direction.READ,
            self._client_hs_secret,
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        )

    def _handle_end_of_early_data(self, body: bytes, raw: bytes) -> Branch:
        """The client's early data ends; its Finished comes under the handshake key (§4.5)."""
        EndOfEarlyData.parse(body)
        assert self._schedule is not None
        self._schedule.update_transcript(raw)
        self._install_handshake_read_key()
        return Branch.NEXT

    def _encrypted_extensions(self, alpn: str | None) -> dict[int, bytes]:
        extensions: dict[int, bytes] = {}
        if self.early_data_accepted:
            extensions[ExtensionType.early_data] = b""
        if alpn is not None:
            extensions[ExtensionType.application_layer_protocol_negotiation] = ext.encode_alpn(
                [alpn]
            )
        if self.transport_parameters is not None:
            extensions[ExtensionType.quic_transport_parameters] = self.transport_parameters
        return extensions

    def _requests_client_certificate(self) -> bool:
        config = self.config
        return bool(
            config.request_client_certificate
            or config.require_client_certificate
            or config.pinned_sha256
        )

    # -- the client's flight --------------------------------------------------------------
    def _handle_client_certificate(self, body: bytes, raw: bytes) -> Branch:
        message = Certificate.parse(body)
        assert self._schedule is not None
        if not message.entries:
            if self.config.require_client_certificate:
                raise CertificateError(
                    AlertDescription.certificate_required,
                    "client certificate required but the client sent none",
                )
            self._schedule.update_transcript(raw)
            return Branch.EMPTY_CERTIFICATE
        chain = self._parse_peer_chain(message)
        if self.config.pinned_sha256:
            self.peer = verify_pinned(chain, self.config.pinned_sha256)
        else:
            self.peer = verify_client_chain(chain, self._trusted_roots(), self.now())
        self._schedule.update_transcript(raw)
        return Branch.NEXT

    def _handle_client_certificate_verify(self, body: bytes, raw: bytes) -> Branch:
        self._check_certificate_verify(body, raw, self._offered_schemes)
        return Branch.NEXT

    def _handle_client_finished(self, body: bytes, raw: bytes) -> Branch:
        schedule = self._schedule
        assert schedule is not None and self.cipher_suite is not None
        expected = schedule.finished(self._client_hs_secret)
        if not hmac.compare_digest(expected, Finished.parse(body).verify_data):
            raise HandshakeError(
                AlertDescription.decrypt_error, "client Finished verify_data does not match"
            )
        schedule.update_transcript(raw)
        self._install_application_key(Direction.READ)
        self._complete()
        self._send_tickets()
        return Branch.NEXT


# Outside the class body, so that mypyc can compile this module (a class body may
# not name its own methods there; issue 15: engine, client and server are next).
ServerHandshake.HANDLERS = {
    HandshakeType.client_hello: ServerHandshake._handle_client_hello,
    HandshakeType.certificate: ServerHandshake._handle_client_certificate,
    HandshakeType.certificate_verify: ServerHandshake._handle_client_certificate_verify,
    HandshakeType.finished: ServerHandshake._handle_client_finished,
    HandshakeType.end_of_early_data: ServerHandshake._handle_end_of_early_data,
    HandshakeType.key_update: TLSHandshake._handle_key_update,
}
