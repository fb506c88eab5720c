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
from .core.stream_manager import check_stream_limits
from .exceptions import ConfigurationError
from .qmux.config import QMuxConfig
from .quic.config import QuicConfig
from .quic.endpoint import RetryTokens, ServerEndpoint
from .tls.certificates import load_cert_chain, load_roots, normalize_pin, server_name_subject
from .tls.config import TLSConfig

__all__ = ["DEFAULT_MAX_TCP_HANDSHAKES", "ClientConfig", "ServerConfig"]

#: TLS handshakes a TCP listener runs at once by default (:attr:`ServerConfig.max_tcp_handshakes`).
DEFAULT_MAX_TCP_HANDSHAKES = 128

PathLike = str | os.PathLike[str]


def _alpn(value: str | Sequence[str]) -> list[str]:
    protocols = [value] if isinstance(value, str) else list(value)
    if not protocols or not all(isinstance(p, str) and 0 < len(p) < 256 for p in protocols):
        raise ConfigurationError(
            f"alpn: expected protocol names of 1-255 characters, got {value!r}"
        )
    return protocols


def _positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise ConfigurationError(f"{name}: must be positive, got {value!r}")


def _checked_quic(tls: TLSConfig, extra: dict[str, Any], **settings: Any) -> QuicConfig:
    """A :class:`QuicConfig` with ``extra`` applied, checked as every connection made
    from it will check it, so a bad value fails :func:`~mstls.connect` or
    :func:`~mstls.listen` at once instead of a connection started later (in the
    assist thread or a trio task) — issue 17 point 9."""
    try:
        config = QuicConfig(tls=tls, **settings, **extra)
    except TypeError as exc:  # an unknown name in ``extra``
        raise ConfigurationError(f"extra: not a QUIC setting ({exc})") from None
    try:
        check_stream_limits(config.transport_parameters(b""), config.max_tracked_streams)
    except (ConfigurationError, TypeError) as exc:  # TypeError: a value of the wrong type
        raise ConfigurationError(f"extra: {exc}") from None
    return config


def _checked_qmux(config: QMuxConfig) -> QMuxConfig:
    """The QMux counterpart of :func:`_checked_quic` (the same stream limits)."""
    check_stream_limits(config.transport_parameters(), config.max_tracked_streams)
    return config


@attrs.define
class ClientConfig:
    """How a client connects: application protocol, trust, identity, timers."""

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
    #: How long ``transport="auto"`` waits for a QUIC answer before trying TCP.
    fallback_delay: float = 0.3
    extra: dict[str, Any] = attrs.Factory(dict)

    def tls_config(self, host: str) -> TLSConfig:
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
        return TLSConfig(
            alpn_protocols=alpn,
            server_name=name,
            certificate_chain=chain,
            private_key=key,
            verify_peer=self.verify,
            trusted_roots=roots,
            pinned_sha256=pins,
            keylog=self.keylog_file,
        )

    def quic_config(self, host: str) -> QuicConfig:
        """The checked QUIC settings (raises :class:`ConfigurationError`)."""
        return _checked_quic(
            self.tls_config(host),
            self.extra,
            idle_timeout=self.idle_timeout,
            handshake_timeout=self.handshake_timeout,
            keepalive_interval=self.keepalive,
        )

    def qmux_config(self, host: str) -> QMuxConfig:
        """The checked QMux settings (raises :class:`ConfigurationError`)."""
        return _checked_qmux(
            QMuxConfig(
                tls=self.tls_config(host),
                idle_timeout=self.idle_timeout,
                handshake_timeout=self.handshake_timeout,
                keepalive_interval=self.keepalive,
            )
        )


@attrs.define
class ServerConfig:
    """How a server accepts: certificate, application protocols, client authentication."""

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
    #: Answer every new QUIC Initial without a token with a Retry (RFC 9000 §8.1.2).
    retry: bool = False
    #: AES-128 key sealing Retry tokens; workers of one service share it (None: random).
    retry_token_key: bytes | None = None
    #: Retry "under load": from this many QUIC handshakes in progress on, a new
    #: Initial without a token gets a Retry (0: always; None: only per ``retry``).
    retry_threshold: int | None = None
    #: Handshakes per second one source address may start (IPv6: per /64), on
    #: UDP and TCP; None: no limit (see :mod:`mstls.core.admission`).
    handshake_rate_per_source: float | None = None
    #: How many handshakes a source may start at once before that rate applies.
    handshake_burst_per_source: int = DEFAULT_BURST
    #: TCP: at most this many TLS handshakes run at once; further connections
    #: wait in the kernel's accept queue, so a flood cannot pile up handshake state.
    max_tcp_handshakes: int = DEFAULT_MAX_TCP_HANDSHAKES
    extra: dict[str, Any] = attrs.Factory(dict)

    def tls_config(self) -> TLSConfig:
        alpn = _alpn(self.alpn)
        _positive("idle_timeout", self.idle_timeout)
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
        )

    def retry_tokens(self) -> RetryTokens:
        """The Retry token sealer (shared by every worker given the same key)."""
        if self.retry_token_key is not None and len(self.retry_token_key) != 16:
            raise ConfigurationError("retry_token_key: must be 16 bytes (AES-128)")
        return RetryTokens(self.retry_token_key)

    def check_admission(self) -> None:
        """Raise :class:`ConfigurationError` for a bad rate, burst, Retry threshold or
        handshake cap."""
        check_admission(
            self.handshake_rate_per_source, self.handshake_burst_per_source, self.retry_threshold
        )
        cap = self.max_tcp_handshakes
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise ConfigurationError(f"max_tcp_handshakes: must be a positive integer, got {cap!r}")

    def source_rate_limiter(self) -> SourceRateLimiter | None:
        """A fresh per-source handshake limiter, or None without a rate."""
        self.check_admission()
        rate = self.handshake_rate_per_source
        if rate is None:
            return None
        return SourceRateLimiter(rate, self.handshake_burst_per_source)

    def configure_endpoint(self, endpoint: ServerEndpoint) -> None:
        """Carry the Retry and rate settings to a running endpoint (its buckets are kept)."""
        self.check_admission()
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
        )

    def quic_config(self) -> QuicConfig:
        """The checked QUIC settings (raises :class:`ConfigurationError`)."""
        return _checked_quic(
            self.tls_config(),
            self.extra,
            idle_timeout=self.idle_timeout,
            handshake_timeout=self.handshake_timeout,
            keepalive_interval=self.keepalive,
        )

    def qmux_config(self) -> QMuxConfig:
        """The checked QMux settings (raises :class:`ConfigurationError`)."""
        return _checked_qmux(
            QMuxConfig(
                tls=self.tls_config(),
                idle_timeout=self.idle_timeout,
                handshake_timeout=self.handshake_timeout,
                keepalive_interval=self.keepalive,
            )
        )
