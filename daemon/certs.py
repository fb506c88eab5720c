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

import logging
from pathlib import Path
from typing import Any

import mstls
from mstls.core.stateless_reset import StatelessResetKey
from mstls.quic.quic_lb import QuicLbConfig

from .config import ConfigError, DaemonConfig, FleetSettings
from .logs import event
from .state import ensure_dev_pki

__all__ = [
    "LB_CONFIG_ID",
    "LB_NONCE_LENGTH",
    "build_server_config",
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
) -> mstls.ServerConfig:
    """The library configuration for ``config`` (raises ConfigError / StateError).

    ``worker``: this process's worker index (QUIC-LB connection IDs naming it);
    with ``[fleet]`` even a single-process daemon (``None``) issues QUIC-LB IDs,
    as worker 0 of its host.
    """
    tls, limits = config.tls, config.limits
    extra: dict[str, Any] = {
        "stateless_reset_key": reset_key,
        "max_streams_bidi": limits.max_streams_per_connection,
    }
    if worker is not None or config.fleet is not None:
        lb = worker_cids(worker or 0, config.fleet)
        extra["cid_generator"] = lb.generate
        extra["cid_length"] = lb.cid_length
    qlog_dir = config.observability.qlog_dir
    if qlog_dir is not None:
        try:
            qlog_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                config.source, "observability.qlog_dir", f"cannot create {qlog_dir}: {exc}"
            ) from None
        extra["qlog_dir"] = qlog_dir
    if tls.development:
        paths, created = ensure_dev_pki(state_dir)
        if created:
            event(
                logging.INFO,
                "daemon.dev_pki",
                f"generated development certificates in {paths.directory} "
                f"(clients trust {paths.ca_cert})",
            )
        certfile, keyfile = paths.server_cert, paths.server_key
    else:
        certfile, keyfile = tls.certfile, tls.keyfile  # type: ignore[assignment]
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
