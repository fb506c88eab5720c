"""The client side of the TLS 1.3 handshake (RFC 8446 §2, Appendix A.1).

The handlers of the messages a client receives; each returns the
:class:`~mstls.tls.states.Branch` it took and the state machine
(``TRANSITIONS[Role.CLIENT]`` in :mod:`mstls.tls.states`, beside the RFC's
diagram) says where that leads.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os

from cryptography.hazmat.primitives.serialization import Encoding

from ..codes import AlertDescription
from ..exceptions import HandshakeError, TLSError
from . import extensions as ext
from .chain_verification import (
    unverified_peer,
    verify_pinned,
    verify_server_chain,
)
from .cipher_suites import CipherSuite, suite_hash
from .config import TLSConfig
from .engine import Direction, Epoch, InstallKey, TLSHandshake
from .extensions import ExtensionType, HandshakeType
from .groups import KeyShareClient, NamedGroup
from .key_schedule import KeySchedule
from .messages import (
    LEGACY_VERSION,
    Certificate,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    EndOfEarlyData,
    Finished,
    ServerHello,
    frame_message,
)
from .psk import (
    PSK_DHE_KE,
    binders_length,
    compute_binder,
    encode_offered_psks,
    encode_psk_modes,
    obfuscated_age,
)
from .resumption import QUIC_MAX_EARLY_DATA, peer_from_chain, take_ticket
from .signatures import (
    SignatureScheme,
    certificate_verify_content,
    choose_scheme,
    schemes_for_key,
    sign,
)
from .states import STARTED, Branch, HandshakeState, Role
from .ticket_store import StoredTicket

__all__ = ["ClientHandshake"]

#: Signature schemes we accept in certificates (signature_algorithms_cert,
#: RFC 8446 §4.2.3): chains are checked by ``cryptography``'s verifier, which
#: knows these, while CertificateVerify stays limited to our three schemes.
CERTIFICATE_SIGNATURE_SCHEMES = (
    SignatureScheme.ed25519,
    SignatureScheme.ecdsa_secp256r1_sha256,
    SignatureScheme.ecdsa_secp384r1_sha384,
    SignatureScheme.rsa_pss_rsae_sha256,
    SignatureScheme.rsa_pss_rsae_sha384,
    SignatureScheme.rsa_pkcs1_sha256,
)
#: The last 8 bytes of ServerHello.random of a server that could do TLS 1.3 but
#: negotiated TLS 1.2 (``...01``) or below (``...00``) (RFC 8446 §4.1.3).
DOWNGRADE_SENTINELS = (b"DOWNGRD\x01", b"DOWNGRD\x00")


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class ClientHandshake(TLSHandshake):
    """Drives a TLS 1.3 handshake as the client."""

    role = Role.CLIENT

    def __init__(self, config: TLSConfig, *, transport_parameters: bytes | None = None) -> None:
        super().__init__(config, transport_parameters=transport_parameters)
        self._shares: dict[int, KeyShareClient] = {}
        self._hello: ClientHello | None = None
        self._hello_raw = b""
        self._server_hs_secret = b""
        self._client_hs_secret = b""
        self._certificate_request: CertificateRequest | None = None
        #: Whether a HelloRetryRequest was answered (diagnostics; the state table
        #: is what refuses a second one).
        self._hello_retried = False
        #: The stored ticket offered in the ClientHello (RFC 8446 §4.2.11), if any.
        self._offer: StoredTicket | None = None
        #: 0-RTT (RFC 8446 §2.3, §4.2.10): offered, and then accepted (None: not yet known).
        self.early_data_offered = False
        self.early_data_accepted: bool | None = None
        #: Most early data bytes the server takes (the ticket's max_early_data_size).
        self.max_early_data = 0
        if config.verify_peer and not config.pinned_sha256 and not config.server_name:
            raise HandshakeError(
                AlertDescription.internal_error,
                "server_name is required to verify the server certificate",
            )

    @property
    def offered_ticket(self) -> StoredTicket | None:
        """The stored ticket offered in the ClientHello, if any (its remembered
        transport parameters set the 0-RTT limits, RFC 9000 §7.4.1)."""
        return self._offer

    # -- ClientHello ------------------------------------------------------------------
    def start(self) -> None:
        """Queue the ClientHello (RFC 8446 §4.1.2)."""
        if self.state is not HandshakeState.START:
            raise TLSError(AlertDescription.internal_error, "handshake already started")
        self.client_random = os.urandom(32)
        self._offer = take_ticket(self.config, quic=self.is_quic, now_ms=self.now_ms())
        for group in self.config.initial_share_groups():
            self._shares[group] = KeyShareClient.generate(group)
        self._hello = self._build_hello(cookie=None)
        self._hello_raw = self._send(Epoch.INITIAL, self._hello)
        if ExtensionType.early_data in self._hello.extensions:
            self._start_early_data()
        self.state = STARTED[self.role]

    def _start_early_data(self) -> None:
        """client_early_traffic_secret over the ClientHello (RFC 8446 §7.1)."""
        offer = self._offer
        assert offer is not None
        suite = CipherSuite(offer.cipher_suite)
        schedule = KeySchedule(suite)
        schedule.use_psk(offer.psk)
        schedule.update_transcript(self._hello_raw)
        secret = schedule.derive(b"c e traffic")
        self.early_data_offered = True
        self.max_early_data = offer.max_early_data
        self._output.append(InstallKey(Epoch.ZERO_RTT, Direction.WRITE, suite, secret))
        if self._keylog is not None:
            self._keylog.log("CLIENT_EARLY_TRAFFIC_SECRET", self.client_random, secret)

    def _build_hello(self, cookie: bytes | None) -> ClientHello:
        config = self.config
        extensions: dict[int, bytes] = {}
        name = config.server_name
        if name and not _is_ip_literal(name):
            extensions[ExtensionType.server_name] = ext.encode_server_name(name)
        extensions[ExtensionType.supported_versions] = ext.encode_supported_versions_client(
            [ext.TLS13]
        )
        extensions[ExtensionType.supported_groups] = ext.encode_uint16_list(config.groups)
        extensions[ExtensionType.signature_algorithms] = ext.encode_uint16_list(
            config.signature_schemes
        )
        extensions[ExtensionType.signature_algorithms_cert] = ext.encode_uint16_list(
            CERTIFICATE_SIGNATURE_SCHEMES
        )
        extensions[ExtensionType.key_share] = ext.encode_key_share_client(
            [(group, share.public_bytes()) for group, share in self._shares.items()]
        )
        if config.alpn_protocols:
            extensions[ExtensionType.application_layer_protocol_negotiation] = ext.encode_alpn(
                config.alpn_protocols
            )
        if cookie is not None:
            extensions[ExtensionType.cookie] = cookie
        if self.transport_parameters is not None:
            extensions[ExtensionType.quic_transport_parameters] = self.transport_parameters
        hello = ClientHello(
            random=self.client_random,
            legacy_session_id=b"",  # RFC 9001 §8.4; no middlebox compatibility mode
            cipher_suites=[int(s) for s in config.cipher_suites],
            extensions=extensions,
        )
        if config.ticket_store is not None:
            # §4.2.9: without the modes a server may send no tickets at all.
            extensions[ExtensionType.psk_key_exchange_modes] = encode_psk_modes([PSK_DHE_KE])
        offer = self._offer
        if offer is not None:
            if self._wants_early_data(offer):
                extensions[ExtensionType.early_data] = b""
            self._add_psk(hello, offer)
        return hello

    def _wants_early_data(self, offer: StoredTicket) -> bool:
        """0-RTT only when enabled, allowed by the ticket (over QUIC: 0xffffffff,
        RFC 9001 §4.6.1), and never in a second ClientHello (RFC 8446 §4.1.2)."""
        if self.is_quic and offer.max_early_data != QUIC_MAX_EARLY_DATA:
            return False
        return self.config.early_data and offer.max_early_data > 0 and not self._hello_retried

    def _add_psk(self, hello: ClientHello, offer: StoredTicket) -> None:
        """psk_key_exchange_modes and, last, pre_shared_key with its binder
        (RFC 8446 §4.2.9, §4.2.11.1-2)."""
        algorithm = suite_hash(CipherSuite(offer.cipher_suite))
        age = obfuscated_age(max(0, self.now_ms() - offer.received_ms), offer.age_add)
        identities = [(offer.ticket, age)]
        placeholder = [bytes(algorithm.digest_size)]
        hello.extensions[ExtensionType.pre_shared_key] = encode_offered_psks(
            identities, placeholder
        )
        framed = frame_message(hello.msg_type, hello.encode())
        truncated = framed[: len(framed) - binders_length(placeholder)]
        if self._schedule is not None:  # after a HelloRetryRequest
            transcript = self._schedule.transcript_hash_with(truncated)
        else:
            transcript = hashlib.new(algorithm.name, truncated).digest()
        binder = compute_binder(algorithm, offer.psk, transcript)
        hello.extensions[ExtensionType.pre_shared_key] = encode_offered_psks(identities, [binder])

    # -- ServerHello / HelloRetryRequest ---------------------------------------------
    def _handle_server_hello(self, body: bytes, raw: bytes) -> Branch:
        hello = ServerHello.parse(body)
        self._check_common_hello(hello)
        if hello.is_hello_retry_request:
            self._handle_hello_retry(hello, raw)
            return Branch.HELLO_RETRY
        self._check_extensions_allowed(HandshakeType.server_hello, hello.extensions)
        self._check_offered(hello.extensions, "ServerHello")
        if ExtensionType.key_share not in hello.extensions:
            raise HandshakeError(AlertDescription.missing_extension, "ServerHello has no key_share")
        group, key_exchange = ext.parse_key_share_server(hello.extensions[ExtensionType.key_share])
        share = self._shares.get(group)
        if share is None:
            raise HandshakeError(
                AlertDescription.illegal_parameter,
                f"server chose key share group {group:#06x} for which we sent no share",
            )
        shared_secret = share.finish(key_exchange)
        self.group = group
        schedule = self._schedule_for(CipherSuite(hello.cipher_suite))
        self._check_selected_psk(hello, schedule)
        schedule.update_transcript(raw)
        schedule.extract(shared_secret)
        self._client_hs_secret = schedule.derive(b"c hs traffic")
        self._server_hs_secret = schedule.derive(b"s hs traffic")
        self._install(
            Epoch.HANDSHAKE,
            Direction.READ,
            self._server_hs_secret,
            "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        )
        if not self.early_data_offered or self.is_quic:  # else after EndOfEarlyData (§4.5)
            self._install_handshake_write_key()  # QUIC has no EndOfEarlyData (RFC 9001 §8.3)
        self._shares.clear()
        return Branch.NEXT

    def _install_handshake_write_key(self) -> None:
        self._install(
            Epoch.HANDSHAKE,
            Direction.WRITE,
            self._client_hs_secret,
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        )

    def _check_selected_psk(self, hello: ServerHello, schedule: KeySchedule) -> None:
        """RFC 8446 §4.2.11: the server resumed our ticket, with a suite of its hash."""
        selected = hello.extensions.get(ExtensionType.pre_shared_key)
        if selected is None:
            self._offer = None  # declined: a full handshake
            return
        index = ext.parse_uint16(selected, "pre_shared_key extension")
        offer = self._offer
        if offer is None or index != 0:
            raise HandshakeError(
                AlertDescription.illegal_parameter,
                f"server selected PSK identity {index}, which we did not offer",
            )
        if suite_hash(CipherSuite(offer.cipher_suite)).name != schedule.algorithm.name:
            raise HandshakeError(
                AlertDescription.illegal_parameter,
                "server resumed a PSK with a cipher suite of another hash",
            )
        schedule.use_psk(offer.psk)
        self.resumed = True

    def _check_common_hello(self, hello: ServerHello) -> None:
        """Checks shared by ServerHello and HelloRetryRequest (RFC 8446 §4.1.3,
        §4.1.4), the version first (§4.2.1: before the rest is processed)."""
        assert self._hello is not None
        if hello.random[-8:] in DOWNGRADE_SENTINELS:
            # §4.1.3: MUST be checked in a ServerHello of TLS 1.2 or below; we also
            # refuse it in TLS 1.3 ones, where it can only come from a broken server.
            raise HandshakeError(
                AlertDescription.illegal_parameter, "downgrade sentinel in ServerHello"
            )
        versions = hello.extensions.get(ExtensionType.supported_versions)
        if versions is None:
            # Appendix D.1: the server chose legacy_version, which we do not support.
            raise HandshakeError(AlertDescription.protocol_version, "peer does not support TLS 1.3")
        selected = ext.parse_uint16(versions, "supported_versions extension")
        if selected != ext.TLS13:
            raise HandshakeError(
                AlertDescription.illegal_parameter,
                f"server selected version {selected:#06x}, which we did not offer",
            )
        if hello.legacy_version != LEGACY_VERSION:
            raise HandshakeError(
                AlertDescription.illegal_parameter,
                f"ServerHello legacy_version is {hello.legacy_version:#06x}, not 0x0303",
            )
        if hello.legacy_session_id_echo != self._hello.legacy_session_id:
            raise HandshakeError(
                AlertDescription.illegal_parameter, "ServerHello does not echo our session id"
            )
        if hello.legacy_compression_method != 0:
            raise HandshakeError(AlertDescription.illegal_parameter, "ServerHello uses compression")
        if hello.cipher_suite not in self._hello.cipher_suites:
            raise HandshakeError(
                AlertDescription.illegal_parameter,
                f"server chose cipher suite {hello.cipher_suite:#06x}, which we did not offer",
            )
        if self.cipher_suite is not None and hello.cipher_suite != self.cipher_suite:
            raise HandshakeError(
                AlertDescription.illegal_parameter,
                "ServerHello cipher suite differs from the HelloRetryRequest's",
            )

    def _check_offered(
        self, extensions: dict[int, bytes], where: str, *, except_for: int | None = None
    ) -> None:
        """RFC 8446 §4.2: the server may only answer extensions we sent."""
        assert self._hello is not None
        for ext_type in extensions:
            if ext_type not in self._hello.extensions and ext_type != except_for:
                raise HandshakeError(
                    AlertDescription.unsupported_extension,
                    f"{where} contains extension {ext_type}, which we did not offer",
                )

    def _schedule_for(self, suite: CipherSuite) -> KeySchedule:
        if self._schedule is None:
            self.cipher_suite = suite
            self._schedule = KeySchedule(suite)
            self._schedule.update_transcript(self._hello_raw)
        return self._schedule

    def _handle_hello_retry(self, hello: ServerHello, raw: bytes) -> None:
        """RFC 8446 §4.1.4: answer a HelloRetryRequest with a new ClientHello;
        a second one is an ``unexpected_message`` (the table has no such branch)."""
        self._check_branch(Branch.HELLO_RETRY, "a second HelloRetryRequest")
        self._hello_retried = True
        if self.early_data_offered:
            self.early_data_accepted = False  # §4.1.2: the early data is lost
        self._check_extensions_allowed("hello_retry_request", hello.extensions)
        # §4.2: a cookie is the one extension a HelloRetryRequest may send unasked.
        self._check_offered(hello.extensions, "HelloRetryRequest", except_for=ExtensionType.cookie)
        cookie = hello.extensions.get(ExtensionType.cookie)
        key_share = hello.extensions.get(ExtensionType.key_share)
        if key_share is None and cookie is None:
            raise HandshakeError(
                AlertDescription.illegal_parameter, "HelloRetryRequest would change nothing"
            )
        schedule = self._schedule_for(CipherSuite(hello.cipher_suite))
        schedule.restart_after_hello_retry()
        schedule.update_transcript(raw)
        offer = self._offer
        if offer is not None and (
            suite_hash(CipherSuite(offer.cipher_suite)).name != schedule.algorithm.name
        ):
            self._offer = None  # §4.1.4: a PSK of another hash cannot be offered again
        if key_share is not None:
            group = ext.parse_key_share_hello_retry(key_share)
            if group not in self.config.groups or group in self._shares:
                raise HandshakeError(
                    AlertDescription.illegal_parameter,
                    f"HelloRetryRequest asks for group {group:#06x}, which is not acceptable",
                )
            self._shares = {group: KeyShareClient.generate(NamedGroup(group))}
        self._hello = self._build_hello(cookie=cookie)
        self._hello_raw = self._send(Epoch.INITIAL, self._hello)

    # -- encrypted flight --------------------------------------------------------------
    def _handle_encrypted_extensions(self, body: bytes, raw: bytes) -> Branch:
        message = EncryptedExtensions.parse(body)
        self._check_extensions_allowed(HandshakeType.encrypted_extensions, message.extensions)
        self._check_offered(message.extensions, "EncryptedExtensions")
        alpn = message.extensions.get(ExtensionType.application_layer_protocol_negotiation)
        if alpn is not None:
            names = ext.parse_alpn(alpn)
            if len(names) != 1 or names[0] not in self.config.alpn_protocols:
                raise HandshakeError(
                    AlertDescription.illegal_parameter,
                    f"server selected application protocol {names!r}, which we did not offer",
                )
            self.alpn_protocol = names[0]
        elif self.config.require_alpn and self.config.alpn_protocols:
            raise HandshakeError(
                AlertDescription.no_application_protocol,
                "server selected no application protocol (ALPN)",
            )
        if self.is_quic:
            params = message.extensions.get(ExtensionType.quic_transport_parameters)
            if params is None:
                raise HandshakeError(
                    AlertDescription.missing_extension, "server sent no QUIC transport parameters"
                )
            self.peer_transport_parameters = params
        assert self._schedule is not None
        self._schedule.update_transcript(raw)
        if self.early_data_offered and self.early_data_accepted is None:
            self.early_data_accepted = ExtensionType.early_data in message.extensions
            if self.early_data_accepted and not self.resumed:
                raise HandshakeError(
                    AlertDescription.illegal_parameter,
                    "server accepted early data without resuming our ticket",
                )
        if self.resumed:
            assert self._offer is not None
            self.peer = peer_from_chain(self._offer.peer_chain)
            return Branch.RESUMED
        return Branch.NEXT

    def _handle_certificate_request(self, body: bytes, raw: bytes) -> Branch:
        request = CertificateRequest.parse(body)
        if request.context:
            raise HandshakeError(
                AlertDescription.illegal_parameter,
                "CertificateRequest context must be empty during the handshake",
            )
        self._check_extensions_allowed(HandshakeType.certificate_request, request.extensions)
        schemes = request.extensions.get(ExtensionType.signature_algorithms)
        if schemes is None:
            raise HandshakeError(
                AlertDescription.missing_extension, "CertificateRequest has no signature_algorithms"
            )
        # A non-empty list (§4.2.3), checked even when we have no certificate to send.
        ext.parse_uint16_list(schemes, "signature_algorithms extension")
        self._certificate_request = request
        assert self._schedule is not None
        self._schedule.update_transcript(raw)
        return Branch.NEXT

    def _handle_certificate(self, body: bytes, raw: bytes) -> Branch:
        message = Certificate.parse(body)
        if not message.entries:
            raise HandshakeError(AlertDescription.decode_error, "server sent no certificate")
        assert self._hello is not None
        # §4.4.2: the server's certificate extensions must answer ours (§4.2).
        chain = self._parse_peer_chain(message, solicited=self._hello.extensions)
        config = self.config
        if config.pinned_sha256:
            self.peer = verify_pinned(chain, config.pinned_sha256)
        elif config.verify_peer:
            assert config.server_name is not None
            self.peer = verify_server_chain(
                chain, config.server_name, self._trusted_roots(), self.now()
            )
        else:
            self.peer = unverified_peer(chain)
        assert self._schedule is not None
        self._schedule.update_transcript(raw)
        return Branch.NEXT

    def _handle_certificate_verify(self, body: bytes, raw: bytes) -> Branch:
        self._check_certificate_verify(body, raw, self.config.signature_schemes)
        return Branch.NEXT

    def _handle_finished(self, body: bytes, raw: bytes) -> Branch:
        schedule = self._schedule
        assert schedule is not None
        expected = schedule.finished(self._server_hs_secret)
        if not hmac.compare_digest(expected, Finished.parse(body).verify_data):
            raise HandshakeError(
                AlertDescription.decrypt_error, "server Finished verify_data does not match"
            )
        schedule.update_transcript(raw)
        self._derive_application_secrets()
        self._install_application_key(Direction.READ)
        if self.early_data_offered and not self.is_quic:
            if self.early_data_accepted:
                self._send(Epoch.ZERO_RTT, EndOfEarlyData())  # §4.5, under the early key
            self._install_handshake_write_key()
        if self._certificate_request is not None:
            self._send_client_certificate(self._certificate_request)
        self._send(Epoch.HANDSHAKE, Finished(schedule.finished(self._client_hs_secret)))
        self._install_application_key(Direction.WRITE)
        if self.config.ticket_store is not None:
            self._derive_resumption_secret()
        self._complete()
        return Branch.NEXT

    def _send_client_certificate(self, request: CertificateRequest) -> None:
        """RFC 8446 §4.4.2: send our chain and sign the transcript.

        §4.4.2.3: with no suitable certificate -- none configured, or a key that
        can sign with none of the schemes the server accepts -- the Certificate
        is empty and the server decides.
        """
        config = self.config
        key = config.private_key
        scheme = self._client_scheme(request) if key is not None else None
        chain = list(config.certificate_chain) if scheme is not None else []
        self._send(
            Epoch.HANDSHAKE,
            Certificate(
                request.context,
                [(c.public_bytes(Encoding.DER), {}) for c in chain],
            ),
        )
        if scheme is None:
            return
        assert key is not None and self._schedule is not None
        content = certificate_verify_content(self._schedule.transcript_hash(), is_server=False)
        self._send(Epoch.HANDSHAKE, CertificateVerify(scheme, sign(key, scheme, content)))

    def _client_scheme(self, request: CertificateRequest) -> SignatureScheme | None:
        """Our scheme for the CertificateVerify, or None if our key fits none the
        server accepts (§4.4.2.2, §4.3.2)."""
        key = self.config.private_key
        assert key is not None
        peer_schemes = ext.parse_uint16_list(
            request.extensions[ExtensionType.signature_algorithms], "signature_algorithms"
        )
        usable = [s for s in peer_schemes if s in self.config.signature_schemes]
        if not set(schemes_for_key(key)) & set(usable):
            return None
        return choose_scheme(key, usable)


# Outside the class body, so that mypyc can compile this module (a class body may
# not name its own methods there; issue 15: engine, client and server are next).
ClientHandshake.HANDLERS = {
    HandshakeType.server_hello: ClientHandshake._handle_server_hello,
    HandshakeType.encrypted_extensions: ClientHandshake._handle_encrypted_extensions,
    HandshakeType.certificate_request: ClientHandshake._handle_certificate_request,
    HandshakeType.certificate: ClientHandshake._handle_certificate,
    HandshakeType.certificate_verify: ClientHandshake._handle_certificate_verify,
    HandshakeType.finished: ClientHandshake._handle_finished,
    HandshakeType.key_update: TLSHandshake._handle_key_update,
    HandshakeType.new_session_ticket: TLSHandshake._handle_new_session_ticket,
}
