"""Public configuration: :class:`ClientConfig` and :class:`ServerConfig`.

They take file names and plain values, check them once, and build the engine
configurations (TLS, QUIC, QMux).  A bad value raises
:class:`~mstls.exceptions.ConfigurationError` naming the option and the problem.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import attrs

from .core.admission import DEFAULT_BURST, SourceRateLimiter, check_admission
from .core.datagrams import DEFAULT_MAX_DATAGRAM_FRAME_SIZE
from .core.stream_manager import check_stream_limits
from .exceptions import ConfigurationError
from .qmux.config import DEFAULT_CLIENT_HELLO_TIMEOUT, QMuxConfig
from .quic.config import QuicConfig
from .quic.endpoint import DEFAULT_MAX_CONNECTIONS, RetryTokens, ServerEndpoint
from .quic.pending_handshakes import DEFAULT_MAX_PENDING_HANDSHAKES
from .tls.anti_replay import DEFAULT_STRIKE_REGISTER_SIZE, StrikeRegister
from .tls.certificates import load_cert_chain, load_roots, normalize_pin, server_name_subject
from .tls.config import DEFAULT_SESSION_TICKETS, TLSConfig
from .tls.resumption import TICKET_AGE_TOLERANCE_MS
from .tls.ticket_store import TicketStore
from .tls.tickets import (
    DEFAULT_TICKET_LIFETIME,
    MAX_TICKET_KEYS,
    MAX_TICKET_LIFETIME,
    TICKET_KEY_LENGTH,
    TicketKeyRing,
)

__all__ = [
    "DEFAULT_CLIENT_HELLO_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_PENDING_HANDSHAKES",
    "DEFAULT_MAX_TCP_HANDSHAKES",
    "MAX_EARLY_DATA_LIMIT",
    "STRIKE_REGISTER_SIZE",
    "ClientConfig",
    "ServerConfig",
]

#: TLS handshakes a TCP listener runs at once by default (:attr:`ServerConfig.max_tcp_handshakes`).
DEFAULT_MAX_TCP_HANDSHAKES = 128

#: The largest :attr:`ServerConfig.max_early_data` accepted (bytes of 0-RTT data per
#: connection; RFC 8446 §4.2.10 has 32 bits, a server buffers what it accepts).
MAX_EARLY_DATA_LIMIT = 16 << 20
#: Ticket identities a server's strike register remembers at most (RFC 8446 §8.2);
#: a full register refuses early data until entries expire.
STRIKE_REGISTER_SIZE = DEFAULT_STRIKE_REGISTER_SIZE

PathLike = str | os.PathLike[str]


def _strike_register() -> StrikeRegister:
    """The anti-replay register of one server configuration (RFC 8446 §8): a ticket
    admits early data once within twice the ticket-age tolerance."""
    return StrikeRegister(2 * TICKET_AGE_TOLERANCE_MS, STRIKE_REGISTER_SIZE)


def _early_data_context(value: bytes) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ConfigurationError(f"early_data_context: must be bytes, got {value!r}")
    return bytes(value)


def _max_early_data(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"max_early_data: must be an integer, got {value!r}")
    if not 0 <= value <= MAX_EARLY_DATA_LIMIT:
        raise ConfigurationError(
            f"max_early_data: must be 0 (off) to {MAX_EARLY_DATA_LIMIT} bytes, got {value!r}"
        )
    return value


def _alpn(value: str | Sequence[str]) -> list[str]:
    protocols = [value] if isinstance(value, str) else list(value)
    if not protocols or not all(isinstance(p, str) and 0 < len(p) < 256 for p in protocols):
        raise ConfigurationError(
            f"alpn: expected protocol names of 1-255 characters, got {value!r}"
        )
    return protocols


def _random_ticket_keys() -> list[bytes]:
    return [os.urandom(TICKET_KEY_LENGTH)]


def _ticket_ring(keys: Sequence[bytes] | None, count: int, lifetime: int) -> TicketKeyRing | None:
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 255:
        raise ConfigurationError(f"session_tickets: must be an integer 0-255, got {count!r}")
    if isinstance(lifetime, bool) or not isinstance(lifetime, int):
        raise ConfigurationError(f"ticket_lifetime: must be whole seconds, got {lifetime!r}")
    if not 0 < lifetime <= MAX_TICKET_LIFETIME:
        raise ConfigurationError(
            f"ticket_lifetime: must be 1-{MAX_TICKET_LIFETIME} seconds (7 days, "
            f"RFC 8446 §4.6.1), got {lifetime!r}"
        )
    if keys is None or count == 0:
        return None
    if isinstance(keys, bytes | bytearray) or len(keys) > MAX_TICKET_KEYS:
        raise ConfigurationError(
            f"session_ticket_keys: expected a list of 1-{MAX_TICKET_KEYS} keys "
            f"of {TICKET_KEY_LENGTH} bytes, current first"
        )
    return TicketKeyRing(keys)


def _positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise ConfigurationError(f"{name}: must be positive, got {value!r}")


def _datagram_settings(enabled: bool) -> dict[str, int]:
    """``datagrams=True``: accept any DATAGRAM frame that fits (RFC 9221 §3)."""
    return {"max_datagram_frame_size": DEFAULT_MAX_DATAGRAM_FRAME_SIZE} if enabled else {}


#: The settings of :class:`QuicConfig` and :class:`QMuxConfig` by name; ``extra`` may
#: name any of them except those the configuration classes set from their own fields.
_QUIC_SETTINGS = frozenset(attrs.fields_dict(QuicConfig))
_QMUX_SETTINGS = frozenset(attrs.fields_dict(QMuxConfig))
_OWN_SETTINGS = frozenset({"tls", "idle_timeout", "handshake_timeout", "keepalive_interval"})


def _chosen_extra(
    extra: dict[str, Any], settings: dict[str, Any], names: frozenset[str]
) -> dict[str, Any]:
    """The names of ``extra`` that belong to one transport's ``names``.  Refuses a name
    that is a setting of neither transport, or one a configuration field already sets
    (``idle_timeout`` is ``ClientConfig.idle_timeout``; ``max_datagram_frame_size`` is
    ``datagrams=True``)."""
    unknown = sorted(set(extra) - (_QUIC_SETTINGS | _QMUX_SETTINGS))
    if unknown:
        raise ConfigurationError(f"extra: not a QUIC or QMux setting: {', '.join(unknown)}")
    own = sorted(set(extra) & _OWN_SETTINGS)
    if own:
        raise ConfigurationError(
            f"extra: {', '.join(own)} is set by the configuration's own field, not by extra"
        )
    chosen = {name: value for name, value in extra.items() if name in names}
    twice = sorted(set(chosen) & set(settings))
    if twice:
        raise ConfigurationError(f"extra: {', '.join(twice)} is already set by another field")
    return chosen


def _checked_quic(tls: TLSConfig, extra: dict[str, Any], **settings: Any) -> QuicConfig:
    """A :class:`QuicConfig` with the QUIC names of ``extra`` applied, checked as every
    connection made from it will check it, so a bad value fails :func:`~mstls.connect` or
    :func:`~mstls.listen` at once instead of a connection started later (in the
    assist thread or a trio task) — issue 17 point 9."""
    chosen = _chosen_extra(extra, settings, _QUIC_SETTINGS)
    try:
        config = QuicConfig(tls=tls, **settings, **chosen)
    except (TypeError, ValueError) as exc:  # a validator refused a value
        raise ConfigurationError(f"extra: {exc}") from None
    try:
        check_stream_limits(config.transport_parameters(b""), config.max_tracked_streams)
    except (ConfigurationError, TypeError) as exc:  # TypeError: a value of the wrong type
        raise ConfigurationError(f"extra: {exc}") from None
    return config


def _checked_qmux(tls: TLSConfig, extra: dict[str, Any], **settings: Any) -> QMuxConfig:
    """The QMux counterpart of :func:`_checked_quic`: the names ``extra`` shares with
    QUIC (flow-control windows, stream limits, ``max_tracked_streams``, datagram queues)
    and the QMux-only ones (``max_record_size``, ``send_record_size``, ``close_timeout``,
    ``max_send_per_call``) apply over TCP; the QUIC-only ones are not used there."""
    chosen = _chosen_extra(extra, settings, _QMUX_SETTINGS)
    try:
        config = QMuxConfig(tls=tls, **settings, **chosen)
    except (TypeError, ValueError) as exc:  # a validator refused a value
        raise ConfigurationError(f"extra: {exc}") from None
    try:
        check_stream_limits(config.transport_parameters(), config.max_tracked_streams)
    except (ConfigurationError, TypeError) as exc:
        raise ConfigurationError(f"extra: {exc}") from None
    return config


@attrs.define
class ClientConfig:
    """How a client connects: application protocol, trust, identity, timers.

    Given to :func:`mstls.connect` and :func:`mstls.trio.connect`; checked there,
    before any socket exists (a bad value raises
    :class:`~mstls.exceptions.ConfigurationError` naming the field).

    ``alpn``
        The application protocol name, or a list in order of preference (ALPN,
        RFC 7301; 1-255 characters each).  Required: QUIC needs one (RFC 9001 §8.1).
    ``cafile``
        A PEM file of the certificate authorities that the server's chain must
        lead to.  Without ``cafile`` and ``cadata``, the system's roots.
    ``cadata``
        The same authorities as PEM text (``str``) or DER/PEM ``bytes``.
    ``server_name``
        The name checked against the server's certificate and sent as SNI;
        default: the ``host`` given to ``connect``.
    ``certfile``
        A PEM certificate chain for client authentication (with ``keyfile``).
    ``keyfile``
        The private key of ``certfile`` (PEM; ``None``: inside ``certfile``).
    ``verify``
        ``False`` skips every check of the server's identity (tests only).
    ``pinned_sha256``
        Instead of chain verification, accept only a server whose leaf
        certificate's public key has one of these pins.  A pin is the SHA-256 of
        the DER SubjectPublicKeyInfo, written as 64 hex digits (any case, colons
        allowed) or as base64 (standard or URL-safe, padding optional), with an
        optional ``sha256:`` or ``sha256/`` prefix; for example
        ``openssl x509 -pubkey -noout | openssl pkey -pubin -outform der |
        openssl dgst -sha256``.  The name is not checked in this mode.
    ``idle_timeout``
        Seconds without traffic after which the connection ends (QUIC
        max_idle_timeout, RFC 9000 §10.1; QMux likewise).  Positive.
    ``keepalive``
        Send a PING (QUIC) or QX_PING (QMux) after this many idle seconds, so an
        idle connection stays open; ``None``: never.
    ``keylog_file``
        Append the TLS secrets in the NSS key log format (for Wireshark); ``None``:
        off.  Never in production.
    ``handshake_timeout``
        Seconds the whole handshake may take before it fails (brief T1); also
        bounds the TCP connect of ``transport="tcp"``.
    ``datagrams``
        Enable unreliable datagrams (RFC 9221): advertise max_datagram_frame_size
        so ``send_datagram`` / ``receive_datagram`` work when the server enables
        them too.  Over TCP they travel reliably (draft-ietf-quic-qmux §8.1).
    ``fallback_delay``
        ``transport="auto"``: seconds to wait for a first QUIC packet before
        starting a QMux/TCP attempt beside the QUIC one (Happy Eyeballs).
    ``ticket_store``
        Where session tickets are kept to resume later connections (RFC 8446
        §2.2, no certificates exchanged): a :class:`mstls.MemoryTicketStore`,
        a :class:`mstls.FileTicketStore`, or any :class:`mstls.TicketStore`.
        Tickets are keyed by server name, ALPN protocol and transport, and
        used once.  ``None`` (the default): every handshake is a full one.
    ``early_data``
        Send 0-RTT data (RFC 8446 §2.3) when resuming with a ticket that allows
        it (needs ``ticket_store``; TCP/QMux and QUIC 0-RTT packets).  Only streams opened
        with ``open_stream(early=True)`` carry early data, and only before the
        handshake ends: connect with ``lazy=True`` and open such a stream first.
        An attacker can replay early data, so only replay-safe requests belong
        there.  Rejected early data is sent again after the handshake
        (``Connection.early_data_accepted`` says which happened).  Off by default.
    ``extra``
        Transport settings by name, passed to :class:`mstls.quic.config.QuicConfig`
        over UDP and to :class:`mstls.qmux.config.QMuxConfig` over TCP; a name both
        have (the flow-control windows, stream limits, ``max_tracked_streams`` and
        datagram queue bounds) applies to both.  QMux only: ``max_record_size``,
        ``send_record_size``, ``close_timeout``, ``max_send_per_call``.  QUIC only:
        flow-control windows (``initial_max_data``,
        ``initial_max_stream_data``, ``max_data_window``, ``max_stream_data_window``),
        ``send_buffer_size``, stream limits (``max_streams_bidi``,
        ``max_streams_uni``), ACK timing (``max_ack_delay_ms``, ``ack_frequency``,
        ``min_ack_delay_us``, ``ack_eliciting_threshold``, ``ack_delay_exponent``),
        connection IDs (``active_connection_id_limit``, ``cid_length``,
        ``cid_generator``), PMTU (``max_udp_payload_size``, ``pmtu_discovery``,
        ``pmtu_max``, ``pmtu_raise_interval``), ``ecn``, ``max_crypto_buffer``,
        ``udp_offload``, ``qlog_dir``, ``versions``, ``initial_version``, and the
        datagram queue bounds ``datagram_send_queue`` and ``datagram_receive_queue``.
        An unknown name or a bad value
        raises :class:`~mstls.exceptions.ConfigurationError`.
    """

    alpn: str | Sequence[str]
    cafile: PathLike | None = None
    cadata: str | bytes | None = None
    server_name: str | None = None
    certfile: PathLike | None = None
    keyfile: PathLike | None = None
    verify: bool = True
    pinned_sha256: Sequence[str] | None = None
    idle_timeout: float = 30.0
    keepalive: float | None = None
    keylog_file: PathLike | None = None
    handshake_timeout: float = 10.0
    fallback_delay: float = 0.3
    datagrams: bool = False
    ticket_store: TicketStore | None = None
    early_data: bool = False
    extra: dict[str, Any] = attrs.Factory(dict)

    def tls_config(self, host: str) -> TLSConfig:
        """The checked TLS 1.3 settings for ``host`` (raises :class:`ConfigurationError`)."""
        alpn = _alpn(self.alpn)
        _positive("idle_timeout", self.idle_timeout)
        _positive("keepalive", self.keepalive)
        name = self.server_name or host
        if self.verify and not self.pinned_sha256:
            server_name_subject(name)  # raises ConfigurationError for a bad name
        chain: list[Any] = []
        key = None
        if self.certfile is not None:
            chain, key = load_cert_chain(self.certfile, self.keyfile)
        roots = None
        if self.verify and not self.pinned_sha256:
            own = self.cafile is not None or self.cadata is not None
            roots = load_roots(self.cafile, self.cadata, use_system=not own)
        pins = [normalize_pin(p) for p in self.pinned_sha256] if self.pinned_sha256 else None
        store = self.ticket_store
        if store is not None and not isinstance(store, TicketStore):
            raise ConfigurationError(
                f"ticket_store: expected an object with add() and take(), got {store!r}"
            )
        return TLSConfig(
            alpn_protocols=alpn,
            server_name=name,
            certificate_chain=chain,
            private_key=key,
            verify_peer=self.verify,
            trusted_roots=roots,
            pinned_sha256=pins,
            keylog=self.keylog_file,
            ticket_store=store,
            early_data=bool(self.early_data),
        )

    def quic_config(self, host: str) -> QuicConfig:
        """The checked QUIC settings (raises :class:`ConfigurationError`)."""
        return _checked_quic(
            self.tls_config(host),
            self.extra,
            idle_timeout=self.idle_timeout,
            handshake_timeout=self.handshake_timeout,
            keepalive_interval=self.keepalive,
            **_datagram_settings(self.datagrams),
        )

    def qmux_config(self, host: str) -> QMuxConfig:
        """The checked QMux settings (raises :class:`ConfigurationError`)."""
        return _checked_qmux(
            self.tls_config(host),
            self.extra,
            idle_timeout=self.idle_timeout,
            handshake_timeout=self.handshake_timeout,
            keepalive_interval=self.keepalive,
            **_datagram_settings(self.datagrams),
        )


@attrs.define
class ServerConfig:
    """How a server accepts: certificate, application protocols, client authentication.

    Given to :func:`mstls.listen`, :func:`mstls.trio.listen` and
    :meth:`Listener.update_config <mstls.Listener.update_config>`; checked before
    a socket is bound (a bad value raises
    :class:`~mstls.exceptions.ConfigurationError` naming the field).

    ``certfile``
        The server's PEM certificate chain, leaf first.
    ``keyfile``
        Its private key (PEM; ``None``: inside ``certfile``).
    ``alpn``
        The application protocols offered, in order of preference (ALPN,
        RFC 7301); a client offering none of them fails its handshake.
    ``client_cafile``
        A PEM file of authorities for client certificates: given, the server asks
        for one (RFC 8446 §4.3.2).
    ``require_client_cert``
        Fail handshakes without a valid client certificate (needs
        ``client_cafile`` or ``pinned_client_sha256``).
    ``idle_timeout``
        Seconds without traffic after which a connection ends (RFC 9000 §10.1).
    ``keepalive``
        Send a PING / QX_PING after this many idle seconds; ``None``: never.
    ``keylog_file``
        Append the TLS secrets in the NSS key log format; ``None``: off.
    ``handshake_timeout``
        Seconds a handshake may take before it fails and its state is freed.
    ``pinned_client_sha256``
        Accept client certificates by public-key pin instead of a chain (same
        format as :attr:`ClientConfig.pinned_sha256 <ClientConfig>`).
    ``retry``
        Answer every new QUIC Initial without a token with a Retry, validating the
        client's address first (RFC 9000 §8.1.2).
    ``retry_token_key``
        The 16-byte AES-128 key sealing Retry tokens; the workers of one service
        share it.  ``None``: a random key per listener.
    ``retry_threshold``
        Retry "under load": from this many QUIC handshakes in progress on, a new
        Initial without a token gets a Retry (0: always; ``None``: only per
        ``retry``).
    ``handshake_rate_per_source``
        Handshakes per second one source address may start (IPv6: per /64), on
        UDP and TCP; beyond it they are refused and counted in
        ``Listener.refused_handshakes``.  ``None``: no limit (see
        :mod:`mstls.core.admission`).
    ``handshake_burst_per_source``
        How many handshakes a source may start at once before that rate applies.
    ``datagrams``
        Enable unreliable datagrams (RFC 9221) for clients that enable them too
        (see :class:`ClientConfig`).
    ``max_tcp_handshakes``
        TCP: at most this many TLS handshakes past their ClientHello run at once, and
        (trio listener) up to four times as many connections still sending their
        ClientHello are held, the oldest of them evicted for newcomers; further
        connections wait in the kernel's accept queue, so a flood cannot pile up
        handshake state.
    ``client_hello_timeout``
        TCP: seconds a new connection may take to deliver its whole ClientHello
        before it fails (a slow sender cannot hold a handshake slot for the whole
        ``handshake_timeout``); then ``handshake_timeout`` applies.
    ``max_connections``
        UDP: the QUIC connections one listener holds state for at most, handshakes
        in progress and closing connections included (default 10,000,
        ``mstls.config.DEFAULT_MAX_CONNECTIONS``); a new Initial beyond it is dropped
        before any state is made, so the client retries later.
    ``max_pending_handshakes``
        UDP: QUIC handshakes one listener keeps in progress at most (default 1,000,
        ``mstls.config.DEFAULT_MAX_PENDING_HANDSHAKES``); a new handshake beyond it
        sheds the oldest one silently, which counts in ``Listener.refused_handshakes``
        and ``Listener.failed_handshakes`` (a
        :class:`~mstls.exceptions.HandshakeRefused` with cause ``"shed"``).
    ``session_tickets``
        NewSessionTickets sent after each handshake (RFC 8446 §4.6.1), so that
        clients can resume; 0 turns resumption off.
    ``session_ticket_keys``
        The AES-256-GCM keys (32 bytes each) sealing the stateless tickets: the
        current key first, then previous keys whose tickets are still accepted
        (rotation).  Every worker of a service must hold the same list.  Default:
        one random key per configuration object (tickets resume on it only).
    ``ticket_lifetime``
        Seconds a ticket may be used (at most 7 days, RFC 8446 §4.6.1).
    ``max_early_data``
        Bytes of 0-RTT data (RFC 8446 §2.3) a resumed client may send before the
        handshake ends (over QUIC any value > 0 allows 0-RTT, its flow control
        being the limit, RFC 9001 §4.6.1); 0 (the default) turns 0-RTT off.
        Tickets issued say so; early data is accepted once per ticket: the
        configuration's strike register (:data:`STRIKE_REGISTER_SIZE` entries,
        RFC 8446 §8) refuses a replayed first flight, which then goes on as a
        1-RTT handshake that the attacker cannot complete.
    ``early_data_context``
        Opaque bytes naming what the application's handling of 0-RTT data depends
        on (which requests it treats as replay-safe, its routes, a version of its
        own settings).  Tickets seal a digest of it; early data under a ticket
        issued with another value is rejected while the resumption is still
        accepted, so the client sends it again after the handshake (RFC 8446
        §4.2.10, RFC 9001 §4.6.2).  Change it whenever what early requests may do
        changes.  Default ``b""``.
    ``strike_register``
        That register (:class:`mstls.tls.anti_replay.StrikeRegister`): by default
        one per configuration object, so the listeners given the same object
        share it; pass one to share it between configurations.  It lives in the
        process: processes that share ticket keys (workers behind SO_REUSEPORT)
        each accept a ticket's early data once, so a first flight replayed to
        another process is accepted there too (RFC 8446 §8.2 leaves that to the
        deployment).  Turn 0-RTT on across processes only for requests that are
        safe to run more than once.
    ``disable_active_migration``
        QUIC: tell clients not to migrate (the transport parameter, RFC 9000
        §18.2) and drop their non-probing packets from new addresses instead of
        following them (§9).  Default: clients may migrate, and a NAT rebinding
        is followed after path validation.
    ``preferred_address``
        QUIC: an ``(address, port)`` sent to clients as preferred_address (RFC 9000
        §9.6) with its own connection ID; clients validate it and move there after
        the handshake.  Datagrams sent there must reach this listener (a
        forwarder or NAT in front of it): a listener binds one socket.  ``None``: none.
    ``extra``
        Transport settings by name, the same keys as :class:`ClientConfig`'s ``extra``
        (``stateless_reset_key`` too), each applied to the transports that have it; an unknown
        name or a bad value raises :class:`~mstls.exceptions.ConfigurationError`.
    """

    certfile: PathLike
    keyfile: PathLike | None
    alpn: str | Sequence[str]
    client_cafile: PathLike | None = None
    require_client_cert: bool = False
    idle_timeout: float = 30.0
    keepalive: float | None = None
    keylog_file: PathLike | None = None
    handshake_timeout: float = 10.0
    pinned_client_sha256: Sequence[str] | None = None
    retry: bool = False
    retry_token_key: bytes | None = None
    retry_threshold: int | None = None
    handshake_rate_per_source: float | None = None
    handshake_burst_per_source: int = DEFAULT_BURST
    max_tcp_handshakes: int = DEFAULT_MAX_TCP_HANDSHAKES
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_pending_handshakes: int = DEFAULT_MAX_PENDING_HANDSHAKES
    client_hello_timeout: float = DEFAULT_CLIENT_HELLO_TIMEOUT
    datagrams: bool = False
    session_tickets: int = DEFAULT_SESSION_TICKETS
    session_ticket_keys: Sequence[bytes] | None = attrs.field(
        factory=_random_ticket_keys, repr=False, eq=False
    )
    ticket_lifetime: int = DEFAULT_TICKET_LIFETIME
    max_early_data: int = 0
    early_data_context: bytes = b""
    disable_active_migration: bool = False
    preferred_address: tuple[str, int] | None = None
    extra: dict[str, Any] = attrs.Factory(dict)
    strike_register: StrikeRegister = attrs.field(factory=_strike_register, repr=False, eq=False)

    def tls_config(self) -> TLSConfig:
        """The checked TLS 1.3 settings (raises :class:`ConfigurationError`)."""
        alpn = _alpn(self.alpn)
        _positive("idle_timeout", self.idle_timeout)
        early_context = _early_data_context(self.early_data_context)
        chain, key = load_cert_chain(self.certfile, self.keyfile)
        roots = None
        if self.client_cafile is not None:
            roots = load_roots(self.client_cafile, use_system=False)
        elif self.require_client_cert and not self.pinned_client_sha256:
            raise ConfigurationError("require_client_cert: needs client_cafile to verify against")
        pins = (
            [normalize_pin(p) for p in self.pinned_client_sha256]
            if self.pinned_client_sha256
            else None
        )
        return TLSConfig(
            alpn_protocols=alpn,
            certificate_chain=chain,
            private_key=key,
            trusted_roots=roots,
            pinned_sha256=pins,
            request_client_certificate=roots is not None,
            require_client_certificate=self.require_client_cert,
            keylog=self.keylog_file,
            ticket_keys=_ticket_ring(
                self.session_ticket_keys, self.session_tickets, self.ticket_lifetime
            ),
            session_tickets=self.session_tickets,
            ticket_lifetime=self.ticket_lifetime,
            max_early_data=_max_early_data(self.max_early_data),
            strike_register=self.strike_register,
            early_data_context=early_context,
        )

    def retry_tokens(self) -> RetryTokens:
        """The Retry token sealer (shared by every worker given the same key)."""
        if self.retry_token_key is not None and len(self.retry_token_key) != 16:
            raise ConfigurationError("retry_token_key: must be 16 bytes (AES-128)")
        return RetryTokens(self.retry_token_key)

    def check_admission(self) -> None:
        """Raise :class:`ConfigurationError` for a bad rate, burst, Retry threshold,
        handshake cap, connection cap or pending-handshake bound."""
        check_admission(
            self.handshake_rate_per_source, self.handshake_burst_per_source, self.retry_threshold
        )
        for name in ("max_tcp_handshakes", "max_connections", "max_pending_handshakes"):
            cap = getattr(self, name)
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
                raise ConfigurationError(f"{name}: must be a positive integer, got {cap!r}")

    def source_rate_limiter(self) -> SourceRateLimiter | None:
        """A fresh per-source handshake limiter, or None without a rate."""
        self.check_admission()
        rate = self.handshake_rate_per_source
        if rate is None:
            return None
        return SourceRateLimiter(rate, self.handshake_burst_per_source)

    def configure_endpoint(self, endpoint: ServerEndpoint) -> None:
        """Carry the Retry, rate and connection-cap settings to a running endpoint (its
        buckets are kept; connections beyond a lowered cap run on)."""
        self.check_admission()
        endpoint.max_connections = self.max_connections
        endpoint.max_pending_handshakes = self.max_pending_handshakes
        endpoint.configure_admission(
            retry=self.retry,
            retry_threshold=self.retry_threshold,
            rate=self.handshake_rate_per_source,
            burst=self.handshake_burst_per_source,
        )

    def server_endpoint(self) -> ServerEndpoint:
        """The QUIC server endpoint for this configuration (Retry, admission, tokens)."""
        return ServerEndpoint(
            self.quic_config(),
            retry=self.retry,
            retry_tokens=self.retry_tokens(),
            retry_threshold=self.retry_threshold,
            rate_limiter=self.source_rate_limiter(),
            max_connections=self.max_connections,
            max_pending_handshakes=self.max_pending_handshakes,
        )

    def quic_config(self) -> QuicConfig:
        """The checked QUIC settings (raises :class:`ConfigurationError`)."""
        return _checked_quic(
            self.tls_config(),
            self.extra,
            idle_timeout=self.idle_timeout,
            handshake_timeout=self.handshake_timeout,
            keepalive_interval=self.keepalive,
            **_datagram_settings(self.datagrams),
            disable_active_migration=self.disable_active_migration,
            preferred_address=self.preferred_address,
        )

    def _client_hello_timeout(self) -> float:
        value = self.client_hello_timeout
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigurationError(f"client_hello_timeout: must be positive, got {value!r}")
        return float(value)

    def qmux_config(self) -> QMuxConfig:
        """The checked QMux settings (raises :class:`ConfigurationError`)."""
        return _checked_qmux(
            self.tls_config(),
            self.extra,
            idle_timeout=self.idle_timeout,
            handshake_timeout=self.handshake_timeout,
            keepalive_interval=self.keepalive,
            client_hello_timeout=self._client_hello_timeout(),
            **_datagram_settings(self.datagrams),
        )
