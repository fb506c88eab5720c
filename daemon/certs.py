"""From the daemon's configuration to an :class:`mstls.ServerConfig`, checked before binding.

The server certificate is the configured ``tls.certfile``/``tls.keyfile`` or,
without a ``[tls]`` table, the development certificate of the state directory
(generated on first start, see :mod:`mstlsd.state`).  The stateless-reset key
of the state directory, the stream limit and the qlog directory
(``[observability] qlog_dir``, QUIC connections only: QMux has no packets to
trace) go to the QUIC settings through ``ServerConfig.extra``.  Building the
QUIC settings once here loads and checks every file, so a bad certificate or
key fails with one clear message before any socket is bound.

Worker ``I`` of a multi-worker daemon (``workers = N``) issues QUIC-LB plaintext
connection IDs whose one-byte server ID is ``I`` (Retry source IDs included),
so the steering program of :mod:`mstlsd.steering` sends every later datagram
of a connection to the worker that owns it; the Retry token key of the state
directory is shared by all workers.  With a ``[fleet]`` table the server ID is
two bytes, ``(host_id, I)`` (``I`` = 0 for a single-process daemon), in the
fleet's config rotation and nonce length, so a QUIC-LB balancer routes by the
first byte and the steering program by the second (docs/fleet.md).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from cryptography import x509

import mstls
from mstls.devcerts import write_dev_pki
from mstls.fleet import QuicLbConfig, StatelessResetKey

from .config import ConfigError, DaemonConfig, FleetSettings
from .logs import event
from .state import dev_pki_paths, ensure_dev_pki

__all__ = [
    "LB_CONFIG_ID",
    "LB_NONCE_LENGTH",
    "build_server_config",
    "check_certificates",
    "steering_worker_byte",
    "worker_cids",
]

#: QUIC-LB configuration of the worker IDs: config rotation 0, 1-byte server ID, 6-byte nonce.
LB_CONFIG_ID = 0
LB_NONCE_LENGTH = 6


#: Where the worker byte sits in the server ID: alone, or after the fleet's host byte.
WORKER_BYTE = 0
FLEET_WORKER_BYTE = 1


def worker_cids(worker: int, fleet: FleetSettings | None = None) -> QuicLbConfig:
    """The QUIC-LB connection-ID generator of worker ``worker``.

    Server ID: ``(worker,)``, or ``(fleet.host_id, worker)`` in a fleet.
    """
    if fleet is None:
        return QuicLbConfig(
            config_id=LB_CONFIG_ID, server_id=bytes((worker,)), nonce_length=LB_NONCE_LENGTH
        )
    return QuicLbConfig(
        config_id=fleet.config_id,
        server_id=bytes((fleet.host_id, worker)),
        nonce_length=fleet.nonce_length,
    )


def steering_worker_byte(config: DaemonConfig) -> int:
    """Which byte of the server ID the steering program reads (:mod:`mstlsd.steering`)."""
    return WORKER_BYTE if config.fleet is None else FLEET_WORKER_BYTE


def build_server_config(
    config: DaemonConfig,
    state_dir: Path,
    reset_key: StatelessResetKey,
    *,
    retry_token_key: bytes | None = None,
    worker: int | None = None,
    check_only: bool = False,
) -> mstls.ServerConfig:
    """The library configuration for ``config`` (raises ConfigError / StateError).

    ``worker``: this process's worker index (QUIC-LB connection IDs naming it);
    with ``[fleet]`` even a single-process daemon (``None``) issues QUIC-LB IDs,
    as worker 0 of its host.  ``check_only`` (``mstlsd --check``) checks the same
    things but writes nothing: a missing qlog directory is not created, and
    missing development certificates are generated into a temporary directory
    that is removed before returning.
    """
    with contextlib.ExitStack() as scratch:
        extra = _quic_extra(config, reset_key, worker, check_only)
        if config.tls.development:
            certfile, keyfile = _development_pair(state_dir, check_only, scratch)
        else:
            certfile, keyfile = config.tls.certfile, config.tls.keyfile  # type: ignore[assignment]
        check_certificates(config, certfile)
        return _checked_server_config(config, certfile, keyfile, retry_token_key, extra)


def _quic_extra(
    config: DaemonConfig, reset_key: StatelessResetKey, worker: int | None, check_only: bool
) -> dict[str, Any]:
    """``ServerConfig.extra``: the QUIC settings the daemon adds (see the module docs)."""
    extra: dict[str, Any] = {
        "stateless_reset_key": reset_key,
        "max_streams_bidi": config.limits.max_streams_per_connection,
    }
    if worker is not None or config.fleet is not None:
        lb = worker_cids(worker or 0, config.fleet)
        extra["cid_generator"] = lb.generate
        extra["cid_length"] = lb.cid_length
    qlog_dir = config.observability.qlog_dir
    if qlog_dir is not None:
        _qlog_directory(config, qlog_dir, check_only)
        extra["qlog_dir"] = qlog_dir
    return extra


def _qlog_directory(config: DaemonConfig, qlog_dir: Path, check_only: bool) -> None:
    """Create ``qlog_dir`` (or, checking only, make sure it could be created)."""
    if not check_only:
        try:
            qlog_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                config.source, "observability.qlog_dir", f"cannot create {qlog_dir}: {exc}"
            ) from None
        return
    existing = qlog_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            config.source, "observability.qlog_dir", f"cannot create {qlog_dir} in {existing}"
        )


def _development_pair(
    state_dir: Path, check_only: bool, scratch: contextlib.ExitStack
) -> tuple[Path, Path]:
    """The development certificate and key of ``state_dir``, generated on first start."""
    if check_only:
        paths = dev_pki_paths(state_dir)
        if not (paths.server_cert.is_file() and paths.server_key.is_file()):
            temporary = Path(scratch.enter_context(tempfile.TemporaryDirectory()))
            paths = write_dev_pki(temporary)
        return paths.server_cert, paths.server_key
    paths, created = ensure_dev_pki(state_dir)
    if created:
        event(
            logging.INFO,
            "daemon.dev_pki",
            f"generated development certificates in {paths.directory} "
            f"(clients trust {paths.ca_cert})",
        )
    return paths.server_cert, paths.server_key


def _load_pem_certificates(config: DaemonConfig, key: str, path: Path) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        raise ConfigError(config.source, key, f"{path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(config.source, key, f"{path}: not PEM certificates: {exc}") from None
    return certificates


def _validity_problem(certificate: x509.Certificate, now: datetime.datetime) -> str | None:
    """Why ``certificate`` is not valid at ``now`` (RFC 5280 §4.1.2.5), or None."""
    if now < certificate.not_valid_before_utc:
        return f"is not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC"
    if now > certificate.not_valid_after_utc:
        return f"expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
    return None


def _is_ca(certificate: x509.Certificate) -> bool:
    """basicConstraints cA = TRUE (RFC 5280 §4.2.1.9): the key may sign certificates."""
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return constraints.value.ca


def check_certificates(
    config: DaemonConfig, certfile: Path, now: datetime.datetime | None = None
) -> None:
    """ConfigError unless the server certificate is valid ``now`` and ``client_cafile`` holds CAs.

    The library would load both and fail every handshake later (clients refuse
    an expired certificate, and no client certificate verifies against a leaf),
    so the daemon refuses them before binding, and ``--check`` says so.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    key = "tls" if config.tls.development else "tls.certfile"
    leaf = _load_pem_certificates(config, key, certfile)[0]
    problem = _validity_problem(leaf, now)
    if problem is not None:
        subject = leaf.subject.rfc4514_string() or "(empty subject)"
        raise ConfigError(config.source, key, f"{certfile}: the certificate {subject} {problem}")
    cafile = config.tls.client_cafile
    if cafile is None:
        return
    for ca in _load_pem_certificates(config, "tls.client_cafile", cafile):
        subject = ca.subject.rfc4514_string() or "(empty subject)"
        if not _is_ca(ca):
            raise ConfigError(
                config.source,
                "tls.client_cafile",
                f"{cafile}: {subject} is not a CA certificate (no basicConstraints cA=TRUE): "
                "give the CA that issues the client certificates",
            )
        problem = _validity_problem(ca, now)
        if problem is not None:
            raise ConfigError(
                config.source, "tls.client_cafile", f"{cafile}: the CA {subject} {problem}"
            )


def _checked_server_config(
    config: DaemonConfig,
    certfile: Path,
    keyfile: Path,
    retry_token_key: bytes | None,
    extra: dict[str, Any],
) -> mstls.ServerConfig:
    """The ServerConfig, its QUIC settings built once so every file is loaded and checked."""
    tls, limits = config.tls, config.limits
    server = mstls.ServerConfig(
        certfile=certfile,
        keyfile=keyfile,
        alpn=list(tls.alpn),
        client_cafile=tls.client_cafile,
        require_client_cert=tls.require_client_cert,
        pinned_client_sha256=list(tls.pinned_client_sha256) if tls.pinned_client_sha256 else None,
        idle_timeout=limits.idle_timeout,
        handshake_timeout=limits.handshake_timeout,
        keylog_file=tls.keylog_file,
        retry=limits.retry,
        retry_token_key=retry_token_key,
        extra=extra,
    )
    try:
        server.quic_config()
    except mstls.ConfigurationError as exc:
        raise ConfigError(config.source, "tls", str(exc)) from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(config.source, "tls", f"{type(exc).__name__}: {exc}") from None
    return server
