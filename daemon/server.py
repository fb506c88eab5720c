"""The mstlsd trio program: listeners, connections, stream routing, drain and reload.

Theory of operation
-------------------
One trio process, structured concurrency all the way down::

    Daemon.run
    ├── one accept loop per listener (mstls.trio.listen, UDP = QUIC, TCP = QMux)
    └── one task per connection: accept_stream loop
        └── one task per stream: preamble → service lookup → allow-list → service

*Routing.*  A stream's first line names its service (:mod:`mstlsd.preamble`).
Unknown service, identity not on the allow-list, malformed or late preamble,
too many streams, a unidirectional stream: the stream is reset (RESET_STREAM
and STOP_SENDING) with the matching :class:`~mstlsd.preamble.StreamCode`,
before any service — and so any backend — sees it.

*Limits.*  ``max_connections``: a connection accepted beyond it is closed at
once with ``TOO_MANY_CONNECTIONS``.  ``max_streams_per_connection`` is the
stream limit we advertise over QUIC and QMux alike (clients wait for credit) and, as a
backstop, a count of streams being served above which a new stream is reset with
``TOO_MANY_STREAMS``.  The transport returns a stream's credit when the stream ends on
the wire, and its service task may still be finishing then, so a new stream over the
count first waits up to :data:`STREAM_SLOT_GRACE` for a task to end: a client that
uses the credit it was given is never refused.  Handshake and idle timeouts are the library's.

*Drain* (:meth:`Daemon.request_shutdown`, SIGTERM/SIGINT): new connections are
closed with ``SERVER_SHUTDOWN`` and new streams reset with ``SHUTTING_DOWN``;
open streams run until they end (a stream counts as ended once its FIN was
acknowledged, so nothing is still in flight) or ``drain_timeout`` passes; then
every connection is closed with application code ``SERVER_SHUTDOWN`` and the
process exits 0.  A second signal skips the rest of the wait.

*Reload* (:meth:`Daemon.reload`, SIGHUP): the configuration is read and checked
again; if it is bad the old one stays.  Services, allow-lists, limits and
logging apply to new streams and connections; established connections are
untouched.  New certificates are handed to each listener for new handshakes
(see :meth:`Daemon.reload` about the library hook this needs).  Listener,
metrics-address, ``workers`` and ``[fleet]`` changes need a restart.

*Workers* (``workers = N``, :mod:`mstlsd.workers`): this class runs one worker
when given ``worker=I``: listeners bound with SO_REUSEPORT, the steering
program attached to the UDP group by worker 0, QUIC-LB connection IDs naming
worker I (after the host byte with ``[fleet]``), and metrics (if configured)
on the metrics port + I.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from pathlib import Path
from typing import Any

import attrs
import trio

import mstls
import mstls.trio
from mstls.fleet import TICKET_KEY_LENGTH, StatelessResetKey

from . import logs
from .certs import build_server_config, steering_worker_byte
from .config import ConfigError, DaemonConfig, ListenerSpec, default_config, load_config
from .handshakes import HandshakeWatch
from .identity import Peer
from .logs import event
from .metrics import Metrics, StatsCursor
from .notify import notify
from .preamble import ConnectionCode, PreambleError, StreamCode, read_preamble
from .services import ServiceContext, ServiceRefused, ServiceStream, run_service
from .state import (
    RETRY_KEY_LENGTH,
    StateError,
    load_reset_key,
    load_retry_token_key,
    load_ticket_keys,
    peek_reset_key,
    peek_retry_token_key,
    peek_ticket_keys,
)
from .steering import attach_steering

__all__ = ["BindError", "Daemon", "apply_overrides", "ready_message"]

#: After closing every connection at shutdown, how long the CONNECTION_CLOSEs get to leave.
CLOSE_GRACE = 0.2
#: Bit 0x2 of a stream ID marks a unidirectional stream (RFC 9000 §2.1).
UNIDIRECTIONAL_BIT = 0x2
#: Seconds between two samples of an open connection's statistics (RTT, losses).
STATS_INTERVAL = 10.0
#: Seconds a new stream over the served-stream count waits for a service task to end
#: before it is refused with TOO_MANY_STREAMS (module docs, *Limits*).
STREAM_SLOT_GRACE = 1.0
#: What a broken stream or connection raises (peer resets, terminations, closed sockets).
FAILURES = (trio.BrokenResourceError, trio.ClosedResourceError, mstls.Error)


class BindError(Exception):
    """A listener could not be bound (address in use, no permission...)."""


def apply_overrides(
    config: DaemonConfig, *, port: int | None = None, host: str | None = None
) -> DaemonConfig:
    """``config`` with every listener's port (and host) replaced, for ``--listen-port``."""
    if port is None and host is None:
        return config
    listeners = tuple(
        attrs.evolve(
            spec,
            port=spec.port if port is None else port,
            host=spec.host if host is None else host,
        )
        for spec in config.listeners
    )
    return attrs.evolve(config, listeners=listeners)


def ready_message(config: DaemonConfig) -> str:
    """The "mstlsd ready" line: logged once every listener (of every worker) is bound."""
    services = ", ".join(sorted(config.services))
    workers = f", {config.workers} workers" if config.workers > 1 else ""
    return f"mstlsd ready (config {config.source}{workers}, services {services})"


@attrs.define
class ConnectionState:
    """One served connection."""

    label: str
    conn: mstls.trio.Connection
    peer: Peer
    streams: int = 0
    #: Woken whenever one of the connection's streams stops being served.
    slot_freed: trio.lowlevel.ParkingLot = attrs.Factory(trio.lowlevel.ParkingLot)
    #: Loss counters already reported to the metrics.
    reported: StatsCursor = attrs.Factory(StatsCursor)


def termination_reason(exc: BaseException) -> str:
    """A metric label for how a connection ended."""
    if isinstance(exc, trio.ClosedResourceError):
        return "local_close"
    if isinstance(exc, mstls.PrematureClose):
        return "premature_close"
    if isinstance(exc, mstls.ConnectionIOError):
        return "io_error"
    if isinstance(exc, mstls.ConnectionTerminated):
        if exc.by_peer:
            return "clean" if exc.code == 0 else "peer_error"
        text = exc.reason.lower()
        for word, label in (("idle", "idle_timeout"), ("stateless reset", "stateless_reset")):
            if word in text:
                return label
        return "local_error"
    return "error"


class Daemon:
    """The daemon; construct (checks everything), then ``await run()``."""

    def __init__(
        self,
        config: DaemonConfig,
        *,
        state_dir: Path,
        config_path: Path | None = None,
        port_override: int | None = None,
        log_format_override: str | None = None,
        worker: int | None = None,
        check_only: bool = False,
    ) -> None:
        self.config = apply_overrides(config, port=port_override)
        self.check_only = check_only
        self.worker = worker
        self.log_format_override = log_format_override
        self.state_dir = state_dir
        self.config_path = config_path
        self.port_override = port_override
        self.metrics = Metrics()
        self.handshake_watch = HandshakeWatch(self.metrics)
        try:
            self.reset_key, self.retry_token_key = self._state_keys(state_dir, check_only)
            # Shared by all workers, so any of them resumes any worker's tickets.
            self.ticket_keys = (
                (peek_ticket_keys(state_dir) or [os.urandom(TICKET_KEY_LENGTH)])
                if check_only
                else load_ticket_keys(state_dir)
            )
        except StateError as exc:
            raise ConfigError(config.source, "state_dir", str(exc)) from None
        self.server_config = self._server_config(self.config)
        self.listeners: list[tuple[ListenerSpec, mstls.trio.Listener]] = []
        self.connections: dict[str, ConnectionState] = {}
        self.active_streams = 0
        self.draining = False
        self.metrics_address: tuple[str, int] | None = None
        self._labels = itertools.count(1)
        self._shutdown: trio.Event | None = None
        self._streams_idle: trio.Event | None = None
        self._drain_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None

    # -- life --------------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind, serve until :meth:`request_shutdown`, drain, close (see the module docs)."""
        self._shutdown = trio.Event()
        self._streams_idle = trio.Event()
        try:
            await self._bind()  # outside the nursery: a BindError stays a plain exception
            self._serve_metrics()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for spec, listener in self.listeners:
                    nursery.start_soon(self._accept_loop, spec, listener)
                watched = [(spec.transport, listener) for spec, listener in self.listeners]
                nursery.start_soon(self.handshake_watch.run, watched)
                self._announce_ready()
                task_status.started(self)
                await self._shutdown.wait()
                await self._drain()
                nursery.cancel_scope.cancel()
        finally:
            for _, listener in self.listeners:
                with contextlib.suppress(Exception):
                    await listener.aclose()
            self.metrics.close()
        event(logging.INFO, "daemon.stopped", "mstlsd stopped")

    @staticmethod
    def _state_keys(state_dir: Path, check_only: bool) -> tuple[StatelessResetKey, bytes]:
        """The persisted keys; ``check_only`` (``mstlsd --check``): read if present, never made."""
        if not check_only:
            return load_reset_key(state_dir), load_retry_token_key(state_dir)
        reset_key = peek_reset_key(state_dir) or StatelessResetKey.generate()
        return reset_key, peek_retry_token_key(state_dir) or os.urandom(RETRY_KEY_LENGTH)

    def _server_config(self, config: DaemonConfig) -> mstls.ServerConfig:
        server = build_server_config(
            config,
            self.state_dir,
            self.reset_key,
            retry_token_key=self.retry_token_key,
            worker=self.worker,
            check_only=self.check_only,
        )
        limits = config.limits
        server.retry = limits.retry
        server.retry_threshold = limits.retry_threshold
        server.handshake_rate_per_source = limits.handshake_rate
        if limits.handshake_burst is not None:
            server.handshake_burst_per_source = limits.handshake_burst
        server.max_tcp_handshakes = limits.max_tcp_handshakes
        server.max_connections = limits.max_quic_connections
        server.max_pending_handshakes = limits.max_pending_handshakes
        server.client_hello_timeout = limits.client_hello_timeout
        server.session_ticket_keys = self.ticket_keys
        return server

    def _socket_hook(self, spec: ListenerSpec) -> Any:
        """Worker 0 attaches the steering program to each UDP reuseport group."""
        if self.worker != 0 or spec.transport != "udp":
            return None
        workers, worker_byte = self.config.workers, steering_worker_byte(self.config)
        return lambda sock: attach_steering(sock, workers, worker_byte)

    async def _bind(self) -> None:
        for spec in self.config.listeners:
            try:
                listener = await mstls.trio.listen(
                    spec.host,
                    spec.port,
                    self.server_config,
                    transport=spec.transport,
                    reuse_port=self.worker is not None,
                    socket_hook=self._socket_hook(spec),
                )
            except (OSError, mstls.Error) as exc:
                raise BindError(f"{spec.label()}: cannot listen: {exc}") from None
            self.listeners.append((spec, listener))

    def _serve_metrics(self) -> None:
        address = self.config.metrics_address
        if address is not None and self.worker and address[1]:
            address = (address[0], address[1] + self.worker)  # one port per worker
        if address is not None:
            try:
                self.metrics_address = self.metrics.serve(*address)
            except OSError as exc:
                where = f"{address[0]}:{address[1]}"
                raise BindError(f"metrics {where}: cannot listen: {exc}") from None

    def _announce_ready(self) -> None:
        for spec, listener in self.listeners:
            address = listener.address
            event(
                logging.INFO,
                "daemon.listening",
                f"listening on {spec.transport} {address[0]}:{address[1]}",
                transport=spec.transport,
            )
        if self.metrics_address is not None:
            host, port = self.metrics_address
            event(logging.INFO, "daemon.metrics", f"metrics on http://{host}:{port}/metrics")
        if self.worker is not None:  # the parent says "ready" once every worker is bound
            event(logging.INFO, "worker.bound", f"worker {self.worker} bound", worker=self.worker)
            return
        event(
            logging.INFO,
            "daemon.ready",
            ready_message(self.config),
            state_dir=str(self.state_dir),
        )
        notify("READY=1")

    def request_shutdown(self) -> None:
        """Start the drain; a second call cuts the drain short."""
        if self._shutdown is None:
            return
        if self._shutdown.is_set():
            if self._drain_scope is not None:
                event(logging.WARNING, "daemon.drain_skipped", "second signal: closing now")
                self._drain_scope.cancel()
            return
        self._shutdown.set()

    async def _drain(self) -> None:
        self.draining = True
        notify("STOPPING=1")
        timeout = self.config.limits.drain_timeout
        event(
            logging.INFO,
            "daemon.draining",
            f"draining: {self.active_streams} streams on {len(self.connections)} connections",
            timeout=timeout,
        )
        assert self._streams_idle is not None
        with trio.move_on_after(timeout) as scope:
            self._drain_scope = scope
            if self.active_streams:
                await self._streams_idle.wait()
        if self.active_streams:
            event(
                logging.WARNING,
                "daemon.drain_timeout",
                f"drain ended with {self.active_streams} streams still open",
            )
        for state in list(self.connections.values()):
            await state.conn.aclose(ConnectionCode.SERVER_SHUTDOWN, "server shutting down")
        await trio.sleep(CLOSE_GRACE)

    # -- reload -------------------------------------------------------------------------------
    def reload(self) -> bool:
        """Re-read the configuration (SIGHUP); False if it was bad and nothing changed.

        Certificates: each listener gets the new :class:`mstls.ServerConfig`
        through ``Listener.update_config`` for the handshakes that start after
        the reload.  The public mstls trio API does not have that hook yet; until
        it does, a new certificate takes effect at the next restart and the
        reload says so in the log.
        """
        notify("RELOADING=1")
        try:
            fresh = load_config(self.config_path) if self.config_path else default_config()
            fresh = apply_overrides(fresh, port=self.port_override)
            pinned = attrs.evolve(fresh, workers=self.config.workers, fleet=self.config.fleet)
            server_config = self._server_config(pinned)
        except (ConfigError, StateError) as exc:
            event(logging.ERROR, "daemon.reload_failed", f"reload failed, keeping the old: {exc}")
            self.metrics.reloads.labels("failed").inc()
            notify("READY=1")
            return False
        if fresh.listeners != self.config.listeners:
            event(logging.WARNING, "daemon.reload", "listener changes take effect at restart")
        if fresh.workers != self.config.workers:
            event(logging.WARNING, "daemon.reload", "workers changes need a restart")
        if fresh.fleet != self.config.fleet:
            event(logging.WARNING, "daemon.reload", "[fleet] changes need a restart")
        if fresh.metrics_address != self.config.metrics_address:
            event(logging.WARNING, "daemon.reload", "metrics address changes need a restart")
        self._update_certificates(server_config)
        logs.configure(self.log_format_override or fresh.logging.format, fresh.logging.level)
        self.config = attrs.evolve(
            fresh,
            listeners=self.config.listeners,
            workers=self.config.workers,
            fleet=self.config.fleet,
        )
        self.server_config = server_config
        self.metrics.reloads.labels("ok").inc()
        services = ", ".join(sorted(fresh.services))
        event(logging.INFO, "daemon.reloaded", f"configuration reloaded (services {services})")
        notify("READY=1")
        return True

    def _update_certificates(self, server_config: mstls.ServerConfig) -> None:
        for spec, listener in self.listeners:
            update: Any = getattr(listener, "update_config", None)
            if update is None:
                event(
                    logging.WARNING,
                    "daemon.reload",
                    "this mstls has no Listener.update_config: certificates are not "
                    "reloaded until restart",
                    transport=spec.transport,
                )
                return
            update(server_config)

    # -- connections ----------------------------------------------------------------------------
    async def _accept_loop(self, spec: ListenerSpec, listener: mstls.trio.Listener) -> None:
        while True:
            try:
                conn = await listener.accept()
            except FAILURES:
                return
            self.metrics.handshakes.labels(spec.transport).inc()
            if self.draining:
                await self._refuse_connection(conn, ConnectionCode.SERVER_SHUTDOWN, "draining")
            elif len(self.connections) >= self.config.limits.max_connections:
                await self._refuse_connection(
                    conn, ConnectionCode.TOO_MANY_CONNECTIONS, "max_connections"
                )
            else:
                assert self._nursery is not None
                self._nursery.start_soon(self._serve_connection, conn)

    async def _refuse_connection(
        self, conn: mstls.trio.Connection, code: ConnectionCode, reason: str
    ) -> None:
        self.metrics.connections_refused.labels(reason).inc()
        event(
            logging.WARNING,
            "connection.refused",
            f"connection refused ({reason})",
            peer=_address(conn.peer_address),
            transport=conn.transport,
            code=f"{code:#x}",
        )
        await conn.aclose(code, reason.replace("_", " "))

    async def _serve_connection(self, conn: mstls.trio.Connection) -> None:
        label = f"c{next(self._labels)}"
        peer = Peer(
            conn.peer_address,
            conn.transport,
            label,
            conn.peer_certificate,
            current_address=lambda: conn.peer_address,  # follows a migration (RFC 9000 §9)
        )
        state = ConnectionState(label, conn, peer)
        self.connections[label] = state
        self.metrics.connections.labels(conn.transport).inc()
        self.metrics.connections_active.labels(conn.transport).inc()
        event(
            logging.INFO,
            "connection.accepted",
            "connection accepted",
            conn=label,
            peer=_address(conn.peer_address),
            transport=conn.transport,
            client=peer.describe(),
            alpn=conn.alpn,
        )
        reason = "local_close"
        try:
            async with trio.open_nursery() as streams:
                streams.start_soon(self._sample_stats, state)
                reason = await self._accept_streams(state, streams)
                streams.cancel_scope.cancel()  # the connection is gone: so are its streams
        finally:
            self.metrics.observe_connection(conn.stats(), state.reported)
            del self.connections[label]
            self.metrics.connections_active.labels(conn.transport).dec()
            self.metrics.connections_closed.labels(reason).inc()
            event(
                logging.INFO,
                "connection.closed",
                "connection closed",
                conn=label,
                peer=_address(conn.peer_address),  # where it ended: the peer may have moved
                reason=reason,
            )
            with trio.CancelScope(shield=True):
                await conn.aclose()

    async def _sample_stats(self, state: ConnectionState) -> None:
        """Every STATS_INTERVAL while the connection is open: RTT and loss growth to the
        metrics (one cheap snapshot per connection per interval); a peer that moved
        (NAT rebinding, migration, RFC 9000 §9) is logged as ``connection.migrated``."""
        address = state.conn.peer_address
        while True:
            state.conn.ping()  # TCP: a QX_PING, so even a busy connection has an RTT
            await trio.sleep(STATS_INTERVAL)
            self.metrics.observe_connection(state.conn.stats(), state.reported)
            if state.conn.peer_address != address:
                event(
                    logging.INFO,
                    "connection.migrated",
                    "peer address changed",
                    conn=state.label,
                    peer=_address(state.conn.peer_address),
                    previous=_address(address),
                )
                address = state.conn.peer_address

    async def _accept_streams(self, state: ConnectionState, streams: trio.Nursery) -> str:
        """Accept streams until the connection ends; how it ended."""
        while True:
            try:
                stream = await state.conn.accept_stream()
            except FAILURES as exc:
                return termination_reason(exc)
            has_slot = await self._stream_slot(state)
            if self.draining:
                streams.start_soon(self._refuse, stream, StreamCode.SHUTTING_DOWN, state.label)
            elif not has_slot:
                streams.start_soon(self._refuse, stream, StreamCode.TOO_MANY_STREAMS, state.label)
            else:
                self._stream_opened(state)
                streams.start_soon(self._serve_stream, state, stream)

    # -- streams --------------------------------------------------------------------------------
    async def _stream_slot(self, state: ConnectionState) -> bool:
        """Whether the connection serves fewer than ``max_streams_per_connection``
        streams, once the tasks of streams that already ended on the wire have had
        :data:`STREAM_SLOT_GRACE` seconds to finish (module docs, *Limits*)."""
        limit = self.config.limits.max_streams_per_connection
        if state.streams < limit:
            return True  # the usual case: no cancel scope per stream
        with trio.move_on_after(STREAM_SLOT_GRACE):
            while state.streams >= limit and not self.draining:
                await state.slot_freed.park()
        return state.streams < limit

    def _stream_opened(self, state: ConnectionState) -> None:
        state.streams += 1
        self.active_streams += 1
        self.metrics.streams_active.inc()

    def _stream_closed(self, state: ConnectionState) -> None:
        state.streams -= 1
        state.slot_freed.unpark_all()
        self.active_streams -= 1
        self.metrics.streams_active.dec()
        if not self.active_streams and self.draining and self._streams_idle is not None:
            self._streams_idle.set()

    async def _serve_stream(self, state: ConnectionState, stream: mstls.trio.Stream) -> None:
        label = f"{state.label}/s{stream.stream_id}"
        try:
            await self._route(state, stream, label)
        finally:
            self._stream_closed(state)

    async def _route(self, state: ConnectionState, stream: mstls.trio.Stream, label: str) -> None:
        if stream.stream_id & UNIDIRECTIONAL_BIT:
            await self._refuse(stream, StreamCode.UNSUPPORTED_STREAM, label)
            return
        try:
            with trio.fail_after(self.config.limits.preamble_timeout):
                name, rest = await read_preamble(stream)
        except PreambleError as exc:
            await self._refuse(stream, exc.code, label, exc.reason)
            return
        except trio.TooSlowError:
            await self._refuse(stream, StreamCode.BAD_PREAMBLE, label, "preamble timeout")
            return
        except FAILURES as exc:
            event(logging.DEBUG, "stream.lost", f"stream ended early: {exc}", stream=label)
            await stream.aclose()
            return
        spec = self.config.services.get(name)
        if spec is None:
            await self._refuse(stream, StreamCode.UNKNOWN_SERVICE, label, f"service {name!r}")
            return
        if not spec.allow.allows(state.peer):
            reason = f"{state.peer.describe()} may not use {name!r}"
            await self._refuse(stream, StreamCode.NOT_AUTHORISED, label, reason)
            return
        self.metrics.streams.labels(name).inc()
        event(logging.DEBUG, "stream.routed", f"stream to {name}", stream=label, service=name)
        service_stream = ServiceStream(stream, rest, name, self.metrics)
        context = ServiceContext(spec, state.peer, self.config.limits, self.metrics, label)
        await self._run(stream, service_stream, context)

    async def _run(
        self, stream: mstls.trio.Stream, service_stream: ServiceStream, context: ServiceContext
    ) -> None:
        label = context.stream_label
        try:
            await run_service(service_stream, context)
            if not service_stream.sent_eof:
                await stream.send_eof()
            with trio.move_on_after(self.config.limits.idle_timeout):
                await stream.wait_acknowledged()  # drained only once nothing is in flight
        except ServiceRefused as exc:
            await self._refuse(stream, exc.code, label, exc.reason)
            return
        except FAILURES as exc:
            event(logging.DEBUG, "stream.lost", f"stream ended early: {exc}", stream=label)
        await stream.aclose()

    async def _refuse(
        self, stream: mstls.trio.Stream, code: StreamCode, label: str, reason: str = ""
    ) -> None:
        """Reset ``stream`` both ways with ``code``."""
        self.metrics.stream_refusals.labels(code.name.lower()).inc()
        event(
            logging.INFO,
            "stream.refused",
            f"stream refused: {code.name}" + (f" ({reason})" if reason else ""),
            stream=label if "/" in label else f"{label}/s{stream.stream_id}",
            code=f"{code:#x}",
        )
        with contextlib.suppress(*FAILURES):
            stream.reset(code)
        with contextlib.suppress(*FAILURES):
            stream.stop_sending(code)
        await stream.aclose()


def _address(address: Any) -> str:
    try:
        host, port = address[0], address[1]
    except (TypeError, IndexError):
        return str(address)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
