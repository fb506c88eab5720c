"""The sans-I/O TLS 1.3 handshake engine shared by client and server.

Theory of operation
-------------------
The engine never sees records or packets.  Its input is handshake bytes at an
*epoch* (Initial, 0-RTT, Handshake, 1-RTT: the QUIC names, which the TCP record
layer maps to "plaintext", "handshake keys", "application keys"); its output
is an ordered list pulled with :meth:`TLSHandshake.pull_output`:

* :class:`SendHandshake` — bytes to send at an epoch (QUIC: CRYPTO frames at
  that level; TCP: handshake records under that epoch's write key);
* :class:`InstallKey` — a traffic secret for one direction of an epoch became
  available; everything after it in the list uses it;
* :class:`HandshakeCompleted` and :class:`SessionTicketReceived`.

The order matters for TCP: a record layer that applies the list in order
always protects each message with the right key.  QUIC only needs per-level
bytes and keys, which the same list provides.

Dispatch is a table (RFC 8446 Appendix A, :mod:`mstls.tls.states`):
``TRANSITIONS[role][(state, msg_type)]`` gives the epoch the message must
arrive at and the next state for each branch; the role's ``HANDLERS`` give the
handler for the message type, which returns the branch it took.  Anything not
in the table is an ``unexpected_message`` alert naming the state and the
message.  Every failure is raised as :class:`~mstls.exceptions.TLSError`
carrying the alert to send; the engine is unusable afterwards.

RFC 8446 §5.1: handshake messages must not span a key change, so when the
read epoch advances any bytes left at the old epoch are an error.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import ClassVar

import attrs
from cryptography import x509

from ..codes import AlertDescription
from ..exceptions import CertificateError, HandshakeError, TLSError, kept
from .cert_files import load_roots
from .cipher_suites import CipherSuite
from .config import TLSConfig
from .extensions import ALLOWED_IN, HandshakeType
from .key_schedule import KeySchedule, next_traffic_secret
from .keylog import KeyLogger, keylog_from_environment
from .messages import (
    Certificate,
    CertificateVerify,
    HandshakeReader,
    KeyUpdate,
    NewSessionTicket,
    frame_message,
)
from .peer_identity import VerifiedPeer
from .resumption import stored_ticket, ticket_key
from .signatures import certificate_verify_content, verify
from .states import TRANSITIONS, Branch, Epoch, HandshakeState, Role, Transition
from .x509_fields import MAX_CERTIFICATE_CHAIN_LENGTH, parse_certificate_der

__all__ = [
    "Direction",
    "Epoch",
    "HandshakeCompleted",
    "InstallKey",
    "Output",
    "SendHandshake",
    "SessionTicketReceived",
    "TLSHandshake",
]


class Direction(Enum):
    READ = "read"
    WRITE = "write"


@attrs.frozen
class SendHandshake:
    """Handshake bytes to send at ``epoch``."""

    epoch: Epoch
    data: bytes


@attrs.frozen
class InstallKey:
    """A traffic secret for one direction of ``epoch`` is ready."""

    epoch: Epoch
    direction: Direction
    cipher_suite: CipherSuite
    secret: bytes


@attrs.frozen
class HandshakeCompleted:
    """The handshake finished: what was negotiated and who the peer is."""

    alpn_protocol: str | None
    cipher_suite: CipherSuite
    group: int
    peer: VerifiedPeer | None
    server_name: str | None
    #: Whether a session ticket was resumed (RFC 8446 §2.2): no certificates were sent.
    resumed: bool = False


@attrs.frozen
class SessionTicketReceived:
    """The server sent a NewSessionTicket (RFC 8446 §4.6.1)."""

    ticket: NewSessionTicket


Output = SendHandshake | InstallKey | HandshakeCompleted | SessionTicketReceived
#: ``handler(engine, body, raw) -> the branch it took``.
Handler = Callable[..., Branch]


class TLSHandshake:
    """Role-independent machinery; :class:`ClientHandshake` and
    :class:`ServerHandshake` provide the handlers, :mod:`mstls.tls.states`
    the transitions."""

    role: ClassVar[Role]
    #: ``message type -> handler``; which states accept it is the table's business.
    HANDLERS: ClassVar[dict[int, Handler]]

    def __init__(
        self,
        config: TLSConfig,
        *,
        transport_parameters: bytes | None = None,
    ) -> None:
        self.config = config
        #: Our QUIC transport parameters; ``None`` for TLS over TCP.
        self.transport_parameters = transport_parameters
        self.peer_transport_parameters: bytes | None = None
        #: The peer's transport parameters (encoded) that tickets received from now
        #: on remember, for 0-RTT (RFC 9000 §7.4.1); the transport sets them.
        self.ticket_transport_parameters = b""
        self.state = HandshakeState.START
        #: The transition being taken while a handler runs.
        self._transition: Transition | None = None
        self.alpn_protocol: str | None = None
        self.cipher_suite: CipherSuite | None = None
        self.group: int = 0
        self.peer: VerifiedPeer | None = None
        self.server_name: str | None = config.server_name
        self.client_random = b""
        self.handshake_complete = False
        #: Whether this handshake resumed a session with a PSK (RFC 8446 §2.2).
        self.resumed = False
        #: resumption_master_secret (RFC 8446 §7.1), once both Finished are known.
        self._resumption_secret = b""
        self.failed: TLSError | None = None
        self._schedule: KeySchedule | None = None
        self._readers = {e: HandshakeReader(config.max_handshake_message_size) for e in Epoch}
        self._read_epoch = Epoch.INITIAL
        self._output: list[Output] = []
        self._app_secrets: dict[Direction, bytes] = {}
        self._peer_chain_certs: list[x509.Certificate] = []
        self._keylog: KeyLogger | None = (
            KeyLogger(config.keylog) if config.keylog is not None else keylog_from_environment()
        )

    # -- properties -------------------------------------------------------------
    @property
    def is_client(self) -> bool:
        return self.role is Role.CLIENT

    @property
    def is_quic(self) -> bool:
        """QUIC mode (RFC 9001): transport parameters travel in the handshake."""
        return self.transport_parameters is not None

    def now(self) -> datetime:
        """Wall-clock time used for certificate validity."""
        return self.config.verify_time or datetime.now(UTC)

    def now_ms(self) -> int:
        """Wall-clock milliseconds, for ticket ages (RFC 8446 §4.6.1)."""
        return int(self.now().timestamp() * 1000)

    def start(self) -> None:
        """Begin the handshake: a client queues its ClientHello; a server waits."""
        raise NotImplementedError

    # -- input --------------------------------------------------------------------
    def receive(self, epoch: Epoch, data: bytes | bytearray | memoryview) -> None:
        """Feed handshake bytes that arrived at ``epoch``; may raise :class:`TLSError`."""
        if self.failed is not None:
            raise kept(self.failed)
        try:
            reader = self._readers[epoch]
            reader.feed(data)
            while (message := reader.next_message()) is not None:
                msg_type, body, raw = message
                self._dispatch(epoch, msg_type, body, raw)
        except TLSError as exc:
            self.failed = kept(exc)
            raise

    def _dispatch(self, epoch: Epoch, msg_type: int, body: bytes, raw: bytes) -> None:
        """RFC 8446 Appendix A: the table decides before the body is parsed."""
        transition = TRANSITIONS[self.role].get((self.state, msg_type))
        if transition is None:
            raise self._unexpected(_type_name(msg_type))
        if epoch != transition.epoch:
            raise TLSError(
                AlertDescription.unexpected_message,
                f"{_type_name(msg_type)} arrived at epoch {epoch.name}, "
                f"expected {transition.epoch.name}",
            )
        self._transition = transition
        branch = self.HANDLERS[msg_type](self, body, raw)
        self._transition = None
        self.state = self._next_state(transition, branch, _type_name(msg_type))

    def _next_state(self, transition: Transition, branch: Branch, what: str) -> HandshakeState:
        state = transition.next.get(branch)
        if state is None:
            raise self._unexpected(what if branch is Branch.NEXT else f"{what} ({branch.value})")
        return state

    def _check_branch(self, branch: Branch, what: str) -> None:
        """Refuse ``branch`` of the message being handled, before its side effects,
        when the table has no such branch from this state."""
        assert self._transition is not None
        if not self._transition.allows(branch):
            raise self._unexpected(what)

    def _unexpected(self, what: str) -> TLSError:
        return TLSError(
            AlertDescription.unexpected_message,
            f"{self.role.value} received {what} in state {self.state.value}",
        )

    # -- output -------------------------------------------------------------------
    def pull_output(self) -> list[Output]:
        """Everything produced since the last call, in order."""
        out, self._output = self._output, []
        return out

    def _send(self, epoch: Epoch, message: object) -> bytes:
        """Frame ``message`` (which has ``msg_type`` and ``encode()``), queue it at
        ``epoch`` and add it to the transcript; returns the framed bytes."""
        raw = frame_message(message.msg_type, message.encode())  # type: ignore[attr-defined]
        if self._schedule is not None:
            self._schedule.update_transcript(raw)
        last = self._output[-1] if self._output else None
        if isinstance(last, SendHandshake) and last.epoch == epoch:
            self._output[-1] = SendHandshake(epoch, last.data + raw)
        else:
            self._output.append(SendHandshake(epoch, raw))
        return raw

    def _install(self, epoch: Epoch, direction: Direction, secret: bytes, label: str) -> None:
        assert self.cipher_suite is not None
        if direction is Direction.READ:
            self._advance_read_epoch(epoch)
        self._output.append(InstallKey(epoch, direction, self.cipher_suite, secret))
        if self._keylog is not None and label:
            self._keylog.log(label, self.client_random, secret)

    def _advance_read_epoch(self, epoch: Epoch) -> None:
        """RFC 8446 §5.1: no message may straddle a key change."""
        old = self._readers[self._read_epoch]
        if old.pending:
            raise TLSError(
                AlertDescription.unexpected_message,
                "handshake message spans a change of keys",
            )
        self._read_epoch = epoch

    # -- shared checks --------------------------------------------------------------
    def _check_extensions_allowed(self, where: object, extensions: dict[int, bytes]) -> None:
        """RFC 8446 §4.2: a known extension in the wrong message is illegal_parameter."""
        for ext_type in extensions:
            allowed = ALLOWED_IN.get(ext_type)
            if allowed is not None and where not in allowed:
                raise TLSError(
                    AlertDescription.illegal_parameter,
                    f"extension {ext_type} is not allowed in {where}",
                )

    # -- after the handshake ------------------------------------------------------------
    def _derive_application_secrets(self) -> None:
        """Master secret and the first application traffic secrets (RFC 8446 §7.1).

        Called with the transcript ending at the server's Finished.
        """
        schedule = self._schedule
        assert schedule is not None
        schedule.extract(None)
        self._app_secrets[Direction.WRITE if self.is_client else Direction.READ] = schedule.derive(
            b"c ap traffic"
        )
        self._app_secrets[Direction.READ if self.is_client else Direction.WRITE] = schedule.derive(
            b"s ap traffic"
        )
        if self._keylog is not None:
            client = self._app_secrets[Direction.WRITE if self.is_client else Direction.READ]
            server = self._app_secrets[Direction.READ if self.is_client else Direction.WRITE]
            self._keylog.log("CLIENT_TRAFFIC_SECRET_0", self.client_random, client)
            self._keylog.log("SERVER_TRAFFIC_SECRET_0", self.client_random, server)
            self._keylog.log("EXPORTER_SECRET", self.client_random, schedule.derive(b"exp master"))

    # -- the peer's certificate (RFC 8446 §4.4.2, §4.4.3), shared by both roles ----------
    def _parse_peer_chain(
        self, message: Certificate, *, solicited: Collection[int] | None = None
    ) -> list[x509.Certificate]:
        """Check a non-empty Certificate message and parse its chain (untrusted input).

        With ``solicited``, an entry extension not in it is ``unsupported_extension``
        (RFC 8446 §4.2, §4.4.2).
        """
        peer = "server" if self.is_client else "client"
        if message.context:
            raise HandshakeError(
                AlertDescription.illegal_parameter, f"{peer} Certificate has a request context"
            )
        if len(message.entries) > MAX_CERTIFICATE_CHAIN_LENGTH:
            raise CertificateError(
                AlertDescription.bad_certificate,
                f"{peer} certificate chain of {len(message.entries)} certificates exceeds "
                f"the limit of {MAX_CERTIFICATE_CHAIN_LENGTH}",
            )
        for _, entry_extensions in message.entries:
            self._check_extensions_allowed(HandshakeType.certificate, entry_extensions)
            if solicited is not None:
                self._check_solicited(peer, entry_extensions, solicited)
        chain = [parse_certificate_der(der) for der, _ in message.entries]
        self._peer_chain_certs = chain
        return chain

    @staticmethod
    def _check_solicited(
        peer: str, extensions: Collection[int], solicited: Collection[int]
    ) -> None:
        for ext_type in extensions:
            if ext_type not in solicited:
                raise HandshakeError(
                    AlertDescription.unsupported_extension,
                    f"{peer} Certificate entry contains extension {ext_type}, "
                    "which was not requested",
                )

    def _trusted_roots(self) -> list[x509.Certificate]:
        roots = self.config.trusted_roots
        return list(roots) if roots is not None else load_roots()

    def _check_certificate_verify(self, body: bytes, raw: bytes, offered: Sequence[int]) -> None:
        """The peer's signature over the transcript so far (RFC 8446 §4.4.3)."""
        message = CertificateVerify.parse(body)
        peer = "server" if self.is_client else "client"
        if message.algorithm not in offered:
            raise HandshakeError(
                AlertDescription.illegal_parameter,
                f"{peer} signed with scheme {message.algorithm:#06x}, which we did not offer",
            )
        assert self._schedule is not None
        content = certificate_verify_content(
            self._schedule.transcript_hash(), is_server=self.is_client
        )
        leaf = self._peer_chain_certs[0]
        verify(leaf.public_key(), message.algorithm, message.signature, content)
        self._schedule.update_transcript(raw)

    def _complete(self) -> None:
        """The handshake is done (RFC 8446 §2): report what was negotiated."""
        assert self.cipher_suite is not None
        self.handshake_complete = True
        self._output.append(
            HandshakeCompleted(
                alpn_protocol=self.alpn_protocol,
                cipher_suite=self.cipher_suite,
                group=self.group,
                peer=self.peer,
                server_name=self.server_name,
                resumed=self.resumed,
            )
        )

    def _install_application_key(self, direction: Direction) -> None:
        self._install(Epoch.ONE_RTT, direction, self._app_secrets[direction], "")

    def send_key_update(self, request_update: bool = True) -> None:
        """Send KeyUpdate and switch our write key (RFC 8446 §4.6.3); TCP only.

        QUIC has its own key update (RFC 9001 §6) and forbids this message.
        """
        if self.is_quic:
            raise TLSError(AlertDescription.internal_error, "QUIC does not use TLS KeyUpdate")
        if not self.handshake_complete:
            raise TLSError(AlertDescription.internal_error, "KeyUpdate before the handshake")
        self._send(Epoch.ONE_RTT, KeyUpdate(request_update))
        self._step_secret(Direction.WRITE)

    def _step_secret(self, direction: Direction) -> None:
        assert self.cipher_suite is not None
        secret = next_traffic_secret(self.cipher_suite, self._app_secrets[direction])
        self._app_secrets[direction] = secret
        if direction is Direction.READ:
            self._advance_read_epoch(Epoch.ONE_RTT)
        self._output.append(InstallKey(Epoch.ONE_RTT, direction, self.cipher_suite, secret))

    def _handle_key_update(self, body: bytes, raw: bytes) -> Branch:
        if self.is_quic:
            # RFC 9001 §6: a TLS KeyUpdate is an unexpected_message (0x010a).
            raise TLSError(AlertDescription.unexpected_message, "TLS KeyUpdate received in QUIC")
        update = KeyUpdate.parse(body)
        self._step_secret(Direction.READ)
        if update.request_update:
            self.send_key_update(request_update=False)
        return Branch.NEXT

    def _handle_new_session_ticket(self, body: bytes, raw: bytes) -> Branch:
        ticket = NewSessionTicket.parse(body)
        self._check_extensions_allowed(HandshakeType.new_session_ticket, ticket.extensions)
        self._output.append(SessionTicketReceived(ticket))
        store = self.config.ticket_store
        if store is not None and self._resumption_secret and self.cipher_suite is not None:
            kept_ticket = stored_ticket(
                ticket,
                self.cipher_suite,
                self._resumption_secret,
                alpn=self.alpn_protocol,
                server_name=self.config.server_name,
                peer=self.peer,
                now_ms=self.now_ms(),
                transport_parameters=self.ticket_transport_parameters,
            )
            if kept_ticket is not None:
                store.add(
                    ticket_key(self.config.server_name, self.alpn_protocol, self.is_quic),
                    kept_ticket,
                )
        return Branch.NEXT

    def _derive_resumption_secret(self) -> None:
        """resumption_master_secret (RFC 8446 §7.1): the transcript ends at the
        client's Finished."""
        assert self._schedule is not None
        self._resumption_secret = self._schedule.derive(b"res master")


def _type_name(msg_type: int) -> str:
    try:
        return HandshakeType(msg_type).name
    except ValueError:
        return f"handshake message type {msg_type}"
