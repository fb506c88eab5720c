"""Prometheus metrics of the daemon (``prometheus-client``), served over HTTP on request.

Every metric lives in the daemon's own :class:`prometheus_client.CollectorRegistry`
(so two daemons in one test process never share counters).  Names:

==========================================  ====================================================
``mstlsd_connections_total{transport}``     connections whose handshake completed
``mstlsd_connections_active{transport}``    connections open now
``mstlsd_connections_refused_total{reason}``  connections closed at once (limit, draining)
``mstlsd_connections_closed_total{reason}`` how connections ended (clean, peer_closed,
                                            idle_timeout, stateless_reset, error, shutdown)
``mstlsd_handshakes_total{transport}``      completed handshakes
``mstlsd_handshake_failures_total{transport,reason}``  failed handshakes, by reason
                                            (see :mod:`daemon.handshakes`)
``mstlsd_streams_total{service}``           streams routed to a service
``mstlsd_streams_active``                   streams open now
``mstlsd_stream_refusals_total{reason}``    streams reset by the daemon, by code name
``mstlsd_bytes_received_total{service}``    bytes read from clients (after the preamble)
``mstlsd_bytes_sent_total{service}``        bytes written to clients
``mstlsd_reloads_total{result}``            SIGHUP reloads (ok, failed)
==========================================  ====================================================
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

__all__ = ["Metrics"]


class Metrics:
    """The daemon's counters and gauges; :meth:`serve` exposes them at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Counter(
            "mstlsd_connections", "Connections accepted", ["transport"], registry=r
        )
        self.connections_active = Gauge(
            "mstlsd_connections_active", "Connections open now", ["transport"], registry=r
        )
        self.connections_refused = Counter(
            "mstlsd_connections_refused", "Connections closed on arrival", ["reason"], registry=r
        )
        self.connections_closed = Counter(
            "mstlsd_connections_closed", "Connections ended, by how", ["reason"], registry=r
        )
        self.handshakes = Counter(
            "mstlsd_handshakes", "Completed handshakes", ["transport"], registry=r
        )
        self.handshake_failures = Counter(
            "mstlsd_handshake_failures",
            "Failed handshakes, by reason",
            ["transport", "reason"],
            registry=r,
        )
        self.streams = Counter("mstlsd_streams", "Streams routed", ["service"], registry=r)
        self.streams_active = Gauge("mstlsd_streams_active", "Streams open now", registry=r)
        self.stream_refusals = Counter(
            "mstlsd_stream_refusals", "Streams reset by the daemon", ["reason"], registry=r
        )
        self.bytes_received = Counter(
            "mstlsd_bytes_received", "Bytes read from clients", ["service"], registry=r
        )
        self.bytes_sent = Counter(
            "mstlsd_bytes_sent", "Bytes written to clients", ["service"], registry=r
        )
        self.reloads = Counter("mstlsd_reloads", "SIGHUP reloads", ["result"], registry=r)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def serve(self, host: str, port: int) -> tuple[str, int]:
        """Serve ``/metrics`` on ``host:port`` from a daemon thread; the bound address."""
        server, thread = start_http_server(port, host, registry=self.registry)
        self._server, self._thread = server, thread
        address = server.server_address
        return str(address[0]), int(address[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
