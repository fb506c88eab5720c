"""What both sides of the QUIC benchmark share: settings, the job, server statistics.

Imported by the parent (:mod:`bench.quic_bulk`) and by every child process
(:mod:`bench.quic_mstls`, :mod:`bench.quic_aioquic`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACK",
    "ALPN",
    "CONNECTION_WINDOW",
    "HOST",
    "MIB",
    "MIN_DATAGRAM",
    "READ_MAX",
    "SERVER_NAME",
    "STREAM_WINDOW",
    "WRITE_CHUNK",
    "BenchError",
    "Job",
    "Scenario",
    "ServerStats",
    "new_stats",
]

HOST = "127.0.0.1"
SERVER_NAME = "localhost"
ALPN = "mstls-bench"
#: The server's answer once it saw the FIN.
ACK = b"ok"
MIB = 1 << 20
#: Smallest datagram QUIC allows (RFC 9000 §14): the default of both stacks.
MIN_DATAGRAM = 1200
#: Receive windows both stacks advertise (aioquic max_data / max_stream_data).
CONNECTION_WINDOW = 16 * MIB
STREAM_WINDOW = 8 * MIB
#: The client writes this payload over and over (one object: writes keep it without copying).
WRITE_CHUNK = os.urandom(64 * 1024)
#: Most bytes one read takes from a stream.
READ_MAX = 16 * MIB


class BenchError(Exception):
    """A run failed: a child raised, exited early or missed its deadline."""


@dataclass(frozen=True)
class Scenario:
    """One measured configuration."""

    name: str
    stack: str  # "aioquic", "qh3" or "mstls"
    kind: str  # "bulk" or "handshake"
    label: str
    #: mstls: path-MTU probing up to QuicConfig's default maximum (16384 bytes).
    pmtu: bool = False
    #: Key-exchange groups the client offers; empty: the stack's default.
    groups: tuple[str, ...] = ()
    #: The group the server is expected to pick (for the table).
    group: str = ""
    #: mstls: "pure" (the interpreter running the bench) or "compiled" (the mypyc build
    #: of ``./dev compiled``, run by that venv's interpreter; issue 15).
    build: str = "pure"


@dataclass(frozen=True)
class Job:
    """Everything a child process needs for one run (pickled to it)."""

    scenario: Scenario
    size: int
    datagram: int
    handshakes: int
    ca: str
    cert: str
    key: str
    timeout: float
    profile: str | None = None
    nice: int = 0


class ServerStats:
    """What a server reports; the measured span starts when the first handshake completes.

    Bulk runs end the span when the FIN is read (:meth:`mark`).  Handshake runs
    end it when ``handshake_target`` more handshakes completed, so the first
    handshake is a warm-up and every measured one is a full cycle (the previous
    connection's close, then a handshake).  ``counts`` gives the datagrams and
    bytes the server has received so far.
    """

    def __init__(self, handshake_target: int | None = None) -> None:
        self.counts: Callable[[], tuple[int, int]] = lambda: (0, 0)
        self.handshake_target = handshake_target
        self.origin: tuple[float, int, int] = (time.process_time(), 0, 0)
        self.handshakes = 0
        self.stream_bytes = 0
        self.groups: set[str] = set()
        self.final: dict[str, Any] | None = None

    def begin(self) -> None:
        self.origin = (time.process_time(), *self.counts())

    def snapshot(self) -> dict[str, Any]:
        cpu, datagrams, nbytes = self.origin
        now_datagrams, now_bytes = self.counts()
        return {
            "cpu": time.process_time() - cpu,
            "datagrams": now_datagrams - datagrams,
            "bytes": now_bytes - nbytes,
            "handshakes": self.handshakes,
            "stream_bytes": self.stream_bytes,
            "groups": sorted(self.groups),
            "final": self.final is not None,
        }

    def on_handshake(self, group: str | None) -> None:
        self.handshakes += 1
        if group is not None:
            self.groups.add(group)
        if self.handshakes == 1:
            self.begin()
        elif self.handshake_target is not None and self.handshakes > self.handshake_target:
            self.mark()

    def mark(self) -> None:
        """The measured span ends: freeze the numbers reported."""
        if self.final is None:
            self.final = self.snapshot()
            self.final["final"] = True

    def report(self) -> dict[str, Any]:
        return self.final if self.final is not None else self.snapshot()


def new_stats(job: Job) -> ServerStats:
    return ServerStats(job.handshakes if job.scenario.kind == "handshake" else None)
