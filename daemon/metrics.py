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
                                            (see :mod:`mstlsd.handshakes`)
``mstlsd_streams_total{service}``           streams routed to a service
``mstlsd_streams_active``                   streams open now
``mstlsd_stream_refusals_total{reason}``    streams reset by the daemon, by code name
``mstlsd_bytes_received_total{service}``    bytes read from clients (after the preamble)
``mstlsd_bytes_sent_total{service}``        bytes written to clients
``mstlsd_reloads_total{result}``            SIGHUP reloads (ok, failed)
``mstlsd_packets_lost_total{transport}``    QUIC packets declared lost (RFC 9002 §6.1)
``mstlsd_retransmissions_total{transport}``  lost QUIC packets whose frames were sent again
                                            (0 over TCP: the kernel retransmits there)
``mstlsd_rtt_seconds{transport}``           histogram of connections' smoothed RTT (RFC 9002
                                            §5.3), sampled every ``STATS_INTERVAL`` seconds
                                            while open and once when they end; TCP
                                            connections have one only with QX_PING keep-alives
``mstlsd_build_info{version,python,...}``   1; the versions of mstls, Python, cryptography
                                            and trio in its labels
``process_*``, ``python_info``              the process (CPU seconds, resident memory, open
                                            files, start time) and the interpreter, as
                                            prometheus-client's standard collectors write them
==========================================  ====================================================

The loss counters grow as connections go: each sample adds what grew since the
previous one (:class:`StatsCursor`), so a long connection is not counted only
when it ends.  Definitions of the underlying figures: :mod:`mstls.stats`.
"""

from __future__ import annotations

import platform
import threading
from importlib import metadata
from typing import Any

import attrs
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

import mstls

__all__ = [
    "BUILD_INFO_PACKAGES",
    "RTT_BUCKETS",
    "TRANSPORTS",
    "Metrics",
    "StatsCursor",
    "build_info",
]

#: Upper bounds (seconds) of the RTT histogram's buckets: loopback to intercontinental.
RTT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Label values of ``transport``; their series exist (at 0) from the start.
TRANSPORTS = ("udp", "tcp")
#: Distributions whose versions label ``mstlsd_build_info`` (what a bug report needs).
BUILD_INFO_PACKAGES = ("cryptography", "trio")


def build_info() -> dict[str, str]:
    """The labels of ``mstlsd_build_info``: mstls, Python and the key dependencies."""
    labels = {"version": mstls.__version__, "python": platform.python_version()}
    for name in BUILD_INFO_PACKAGES:
        try:
            labels[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            labels[name] = "unknown"
    return labels


@attrs.define
class StatsCursor:
    """What one connection's loss counters had reached at its previous sample."""

    packets_lost: int = 0
    retransmissions: int = 0


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
        self.packets_lost = Counter(
            "mstlsd_packets_lost", "QUIC packets declared lost", ["transport"], registry=r
        )
        self.retransmissions = Counter(
            "mstlsd_retransmissions",
            "Lost QUIC packets whose frames were sent again",
            ["transport"],
            registry=r,
        )
        self.rtt = Histogram(
            "mstlsd_rtt_seconds",
            "Smoothed RTT of connections, sampled while open and at their end",
            ["transport"],
            buckets=RTT_BUCKETS,
            registry=r,
        )
        for transport in TRANSPORTS:
            self.packets_lost.labels(transport)
            self.retransmissions.labels(transport)
        info = build_info()
        self.build_info = Gauge(
            "mstlsd_build_info", "Versions of mstls and its runtime", list(info), registry=r
        )
        self.build_info.labels(**info).set(1)
        # Our own instances of prometheus-client's default collectors: the registry is ours.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def observe_connection(self, stats: mstls.ConnectionStats, cursor: StatsCursor) -> None:
        """One sample of a connection: count the losses since ``cursor`` (and move it),
        observe the smoothed RTT if the connection has measured one."""
        transport = stats.transport
        lost = stats.packets_lost - cursor.packets_lost
        if lost > 0:
            self.packets_lost.labels(transport).inc(lost)
            cursor.packets_lost = stats.packets_lost
        resent = stats.retransmissions - cursor.retransmissions
        if resent > 0:
            self.retransmissions.labels(transport).inc(resent)
            cursor.retransmissions = stats.retransmissions
        if stats.smoothed_rtt is not None:
            self.rtt.labels(transport).observe(stats.smoothed_rtt)

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
