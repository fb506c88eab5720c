"""QUIC bulk upload and handshake cost: mstls against aioquic, measured in one run.

Run from the repository root: ``python -m bench.quic_bulk`` (options: ``--help``;
``bench/README.md`` explains the numbers).

Theory of operation
-------------------
Every measurement starts a fresh *server process* and a fresh *client process*
(``multiprocessing`` with the spawn method), so each side has its own
interpreter and can have its own core; the parent only orchestrates them over
two pipes and sleeps while they work.  Messages are pickled tuples:

* server → parent: ``("ready", port)`` once listening on 127.0.0.1, then one
  ``("report", stats)`` per ``("report",)`` request; ``("stop",)`` ends it, as
  does the pipe closing (the parent died);
* parent → client: ``("go", port)``; client → parent: ``("result", stats)``;
* either child may send ``("error", traceback)`` instead.

*Bulk upload.*  After the handshake the client opens one bidirectional stream,
writes ``--size`` bytes and the FIN; the server reads and discards, and when it
sees the FIN answers ``b"ok"`` and the FIN.  The client's wall time runs from
its first write to the end of that answer.  The server's CPU time
(``time.process_time``) and its count of received datagrams run from the moment
it is listening to the moment it read the FIN (one handshake is included: about
0.01 % of a 64 MiB run).

*Handshakes.*  The client performs ``--handshakes`` handshakes in sequence,
each from a new socket: it waits until its handshake is complete (its Finished
is sent in the same turn), then closes the connection without waiting for the
closing period.  The parent then asks the server until it has counted that many
completed handshakes; CPU per handshake is the server's CPU time since it was
listening divided by that count, so it includes parsing, key exchange,
signing, the close and the server's timers.

*Fairness.*  Both stacks get the same certificate (ECDSA P-256 from
:func:`mstls.devcerts.write_dev_pki`), the same ALPN, 1200-byte datagrams
(aioquic ``max_datagram_size``; mstls with path-MTU probing off), the same
receive windows (:data:`CONNECTION_WINDOW`, :data:`STREAM_WINDOW`) and the
same socket buffer sizes (aioquic's are raised to what mstls asks for).  The key
exchange differs by default: an aioquic client sends secp256r1, secp384r1 and
x25519 shares and an aioquic server takes the first (secp256r1); mstls offers
X25519MLKEM768 first.  So handshakes are measured per group: each stack's
default, both with x25519 alone (aioquic has no setting for it; its client is
patched in the client process, see :func:`_aioquic_offer_only_x25519`) and
mstls with secp256r1 (what aioquic picks by default).

*The mstls driver* (:class:`_Loop`) is part of what is measured, so it is
written as a fast driver should be: per turn, read every ready datagram with
GRO into one buffer (no copies: the connection decrypts each view before the
next read), feed them all, run an expired timer, let the application write as
much as the stream takes, build the output and send it with GSO in one call,
then read the next deadline once and wait in ``select`` only when the turn
left nothing to do.  ``select`` is used rather than epoll because epoll rounds
timeouts up to whole milliseconds, which would oversleep pacing deadlines.

*Bounds.*  Every run has a deadline (:func:`default_timeout`, or
``--timeout``); the children check it in their loops and the parent kills both
processes when it passes, and always at the end of a run.  Only 127.0.0.1 is
used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import multiprocessing
import os
import platform
import pstats
import re
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import aioquic
from aioquic import tls as aioquic_tls
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection as AioquicConnection
from aioquic.quic.events import HandshakeCompleted, QuicEvent

from mstls.devcerts import write_dev_pki
from mstls.quic.config import QuicConfig
from mstls.quic.connection import QuicConnection
from mstls.quic.endpoint import ServerEndpoint
from mstls.quic.sending import MAX_DATAGRAMS_PER_CALL
from mstls.quic.udp import (
    DEFAULT_SOCKET_BUFFER,
    Address,
    DatagramCounters,
    detect_capabilities,
    new_receive_buffer,
    open_udp_socket,
    receive_datagrams,
    send_datagrams,
)
from mstls.tls.certificates import load_cert_chain, load_roots
from mstls.tls.config import TLSConfig
from mstls.tls.groups import SUPPORTED_GROUPS, NamedGroup

__all__ = [
    "RATIOS",
    "SCENARIOS",
    "BenchError",
    "Job",
    "Scenario",
    "compute_ratios",
    "default_timeout",
    "main",
    "parse_size",
    "run_bench",
]

HOST = "127.0.0.1"
SERVER_NAME = "localhost"
ALPN = "mstls-bench"
#: The server's answer once it saw the FIN.
ACK = b"ok"
MIB = 1 << 20
DEFAULT_SIZE = 64 * MIB
DEFAULT_DATAGRAM = 1200
#: Smallest and largest datagram the options accept (RFC 9000 §14; largest UDP payload).
MIN_DATAGRAM = 1200
MAX_DATAGRAM = 65527
DEFAULT_RUNS = 3
DEFAULT_HANDSHAKES = 50
#: Receive windows both stacks advertise (aioquic max_data / max_stream_data).
CONNECTION_WINDOW = 16 * MIB
STREAM_WINDOW = 8 * MIB
#: The client writes this payload over and over (one object: writes keep it without copying).
WRITE_CHUNK = os.urandom(64 * 1024)
#: Most bytes one read takes from a stream.
READ_MAX = 16 * MIB
#: Datagrams read per turn of the mstls loop (about 300 kB at 1200 bytes).
RECEIVE_BATCH = 256
#: ``datagrams_to_send`` calls per turn of the mstls loop (each gives at most 64 datagrams).
SEND_CALLS = 4
#: Longest sleep of the mstls loop without a deadline (the control pipe is checked then).
MAX_WAIT = 0.05
#: Deadline of one run: this much for process start and handshakes, plus the size at MIN_RATE.
STARTUP_ALLOWANCE = 30.0
MIN_RATE = 1e6
#: Deadline of a handshake run: STARTUP_ALLOWANCE plus this much per handshake.
HANDSHAKE_ALLOWANCE = 0.5
#: How long stopped children get to exit before they are killed.
STOP_GRACE = 5.0
#: Pause between report requests while the server has not counted every handshake.
REPORT_POLL = 0.01
#: Functions listed from each profile (``--profile``).
PROFILE_TOP = 15
MB = 1e6


class BenchError(Exception):
    """A run failed: a child raised, exited early or missed its deadline."""


# --- what is measured ---------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One measured configuration."""

    name: str
    stack: str  # "aioquic" or "mstls"
    kind: str  # "bulk" or "handshake"
    label: str
    #: mstls: path-MTU probing up to QuicConfig's default maximum (16384 bytes).
    pmtu: bool = False
    #: Key-exchange groups the client offers; empty: the stack's default.
    groups: tuple[str, ...] = ()
    #: The group the server is expected to pick (for the table).
    group: str = ""


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("aioquic", "aioquic", "bulk", "aioquic"),
    Scenario("mstls", "mstls", "bulk", "mstls"),
    Scenario("mstls-pmtu", "mstls", "bulk", "mstls, path-MTU probing on", pmtu=True),
    Scenario("aioquic-hs", "aioquic", "handshake", "aioquic default", group="secp256r1"),
    Scenario(
        "aioquic-hs-x25519",
        "aioquic",
        "handshake",
        "aioquic, client offers x25519",
        groups=("x25519",),
        group="x25519",
    ),
    Scenario("mstls-hs", "mstls", "handshake", "mstls default", group="X25519MLKEM768"),
    Scenario(
        "mstls-hs-x25519",
        "mstls",
        "handshake",
        "mstls, groups=[x25519]",
        groups=("x25519",),
        group="x25519",
    ),
    Scenario(
        "mstls-hs-p256",
        "mstls",
        "handshake",
        "mstls, groups=[secp256r1]",
        groups=("secp256r1",),
        group="secp256r1",
    ),
)


@dataclass(frozen=True)
class Ratio:
    """``metric`` of ``numerator`` divided by the same metric of ``denominator``."""

    key: str
    numerator: str
    denominator: str
    metric: str
    better: str  # "higher" or "lower": which side of 1 favours mstls
    text: str


RATIOS: tuple[Ratio, ...] = (
    Ratio("bulk_throughput", "mstls", "aioquic", "mb_per_s", "higher", "bulk MB/s, 1200 B"),
    Ratio("bulk_throughput_pmtu", "mstls-pmtu", "aioquic", "mb_per_s", "higher", "bulk MB/s, PMTU"),
    Ratio(
        "server_cpu_per_datagram",
        "mstls",
        "aioquic",
        "server_us_per_datagram",
        "lower",
        "server CPU per datagram",
    ),
    Ratio(
        "server_cpu_per_byte_pmtu",
        "mstls-pmtu",
        "aioquic",
        "server_ms_per_mib",
        "lower",
        "server CPU per byte, PMTU",
    ),
    Ratio(
        "handshake_cpu_x25519",
        "mstls-hs-x25519",
        "aioquic-hs-x25519",
        "server_ms_per_handshake",
        "lower",
        "server CPU/handshake, x25519 both",
    ),
    Ratio(
        "handshake_cpu_p256",
        "mstls-hs-p256",
        "aioquic-hs",
        "server_ms_per_handshake",
        "lower",
        "server CPU/handshake, secp256r1 both",
    ),
    Ratio(
        "handshake_cpu_defaults",
        "mstls-hs",
        "aioquic-hs",
        "server_ms_per_handshake",
        "lower",
        "server CPU/handshake, defaults",
    ),
)


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


def default_timeout(scenario: Scenario, size: int, handshakes: int) -> float:
    """Seconds one run of ``scenario`` may take before it counts as hung."""
    if scenario.kind == "bulk":
        return STARTUP_ALLOWANCE + size / MIN_RATE
    return STARTUP_ALLOWANCE + handshakes * HANDSHAKE_ALLOWANCE


_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str) -> int:
    """``65536``, ``64k``, ``64KiB``, ``1M``, ``64MiB``, ``1GiB`` → bytes (binary units)."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)(i?[bB])?\s*", text)
    if match is None or (match.group(3) and not match.group(2)):
        raise ValueError(f"not a size: {text!r} (examples: 65536, 64KiB, 1MiB)")
    size = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if size <= 0:
        raise ValueError(f"size must be positive: {text!r}")
    return size


# --- server statistics (both stacks) ------------------------------------------------------


class _ServerStats:
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


def _new_stats(job: Job) -> _ServerStats:
    return _ServerStats(job.handshakes if job.scenario.kind == "handshake" else None)


# --- the mstls driver ---------------------------------------------------------------------


class _Loop:
    """A tight loop over one non-blocking UDP socket for one sans-I/O QUIC object.

    Subclasses connect it to a client connection or a server endpoint through
    :meth:`feed`, :meth:`output`, :meth:`next_timer` and :meth:`fire_timer`.
    """

    def __init__(self, control: Connection | None = None) -> None:
        self.sock = open_udp_socket(HOST, 0)
        self.caps = detect_capabilities(self.sock)
        self.buffer = new_receive_buffer()
        self.control = control
        self.readers: list[Any] = [self.sock] if control is None else [self.sock, control]
        #: Output the socket would not take yet (EAGAIN): sent before anything new.
        self.blocked: list[tuple[Address, list[bytes]]] = []
        self.timer: float | None = None
        self.stopped = False
        #: Turns of the loop, timer firings and waits (diagnostics, reported by servers).
        self.turns = 0
        self.timers_fired = 0
        self.waits = 0

    def close(self) -> None:
        self.sock.close()

    def feed(self, batch: list[tuple[memoryview, Address]], now: float) -> None:
        raise NotImplementedError

    def output(self, now: float) -> tuple[list[tuple[Address, list[bytes]]], bool]:
        """Datagrams to send by destination, and whether more may be ready at once."""
        raise NotImplementedError

    def next_timer(self) -> float | None:
        raise NotImplementedError

    def fire_timer(self, now: float) -> None:
        raise NotImplementedError

    def on_control(self, message: Any) -> None:
        """A message from the parent (servers answer report requests)."""

    def run(
        self, done: Callable[[], bool], step: Callable[[float], None] | None, deadline: float
    ) -> None:
        """Turn until ``done()``; ``step(now)`` is the application's turn."""
        sock, caps, buffer = self.sock, self.caps, self.buffer
        feed, flush, next_timer = self.feed, self.flush, self.next_timer
        monotonic = time.monotonic
        while not done():
            now = monotonic()
            if now > deadline:
                raise BenchError("deadline passed in the mstls loop")
            self.turns += 1
            batch = receive_datagrams(sock, RECEIVE_BATCH, caps, buffer)
            if batch:
                feed(batch, now)
            timer = self.timer
            if timer is not None and timer <= now:
                self.timers_fired += 1
                self.fire_timer(now)
            if step is not None:
                step(now)
            busy = flush(now) or len(batch) >= RECEIVE_BATCH
            self.timer = timer = next_timer()
            if not busy:
                self.wait(timer)

    def flush(self, now: float) -> bool:
        """Send what is blocked, then the new output; True if more output may be ready."""
        if self.blocked and not self._send(self.blocked):
            return False
        groups, more = self.output(now)
        return self._send(groups) and more

    def _send(self, groups: list[tuple[Address, list[bytes]]]) -> bool:
        """Send ``groups``; keep what the socket refused in :attr:`blocked`; True if all left."""
        for index, (addr, datagrams) in enumerate(groups):
            sent = send_datagrams(self.sock, datagrams, addr, self.caps)
            if sent < len(datagrams):
                self.blocked = [(addr, datagrams[sent:]), *groups[index + 1 :]]
                return False
        self.blocked = []
        return True

    def wait(self, timer: float | None) -> None:
        """Sleep until the socket (or the control pipe) is ready, or the deadline ``timer``."""
        timeout = MAX_WAIT if timer is None else min(MAX_WAIT, timer - time.monotonic())
        if timeout <= 0:
            return
        self.waits += 1
        writers = [self.sock] if self.blocked else []
        readable, _, _ = select.select(self.readers, writers, [], timeout)
        if self.control is not None and self.control in readable:
            try:
                message = self.control.recv()
            except EOFError:  # the parent is gone
                self.stopped = True
                return
            self.on_control(message)


class _ClientLoop(_Loop):
    """The loop of one client connection."""

    def __init__(self, conn: QuicConnection) -> None:
        super().__init__()
        self.conn = conn
        self.peer = conn.peer_address

    def feed(self, batch: list[tuple[memoryview, Address]], now: float) -> None:
        receive = self.conn.receive_datagram
        for data, addr in batch:
            receive(data, addr, now)

    def output(self, now: float) -> tuple[list[tuple[Address, list[bytes]]], bool]:
        produce = self.conn.datagrams_to_send
        out = produce(now)
        calls = 1
        while len(out) == calls * MAX_DATAGRAMS_PER_CALL and calls < SEND_CALLS:
            out += produce(now)
            calls += 1
        more = len(out) == calls * MAX_DATAGRAMS_PER_CALL
        return ([(self.peer, out)] if out else []), more

    def next_timer(self) -> float | None:
        return self.conn.get_timer()

    def fire_timer(self, now: float) -> None:
        self.conn.handle_timer(now)


class _ServerLoop(_Loop):
    """The loop of a server endpoint; answers the parent's report requests."""

    def __init__(self, endpoint: ServerEndpoint, control: Connection, stats: _ServerStats) -> None:
        super().__init__(control)
        self.endpoint = endpoint
        self.app = _ServerApp(endpoint, stats, self.caps.counters)

    def feed(self, batch: list[tuple[memoryview, Address]], now: float) -> None:
        receive = self.endpoint.receive_datagram
        for data, addr in batch:
            receive(data, addr, now)  # type: ignore[arg-type]  # views are accepted

    def output(self, now: float) -> tuple[list[tuple[Address, list[bytes]]], bool]:
        out = self.endpoint.datagrams_to_send(now)
        if not out:
            return [], False
        groups: list[tuple[Address, list[bytes]]] = []
        start, addr = 0, out[0][1]
        for index in range(1, len(out)):
            if out[index][1] != addr:
                groups.append((addr, [data for data, _ in out[start:index]]))
                start, addr = index, out[index][1]
        groups.append((addr, [data for data, _ in out[start:]]))
        return groups, len(out) >= MAX_DATAGRAMS_PER_CALL

    def next_timer(self) -> float | None:
        return self.endpoint.get_timer()

    def fire_timer(self, now: float) -> None:
        self.endpoint.handle_timer(now)

    def on_control(self, message: Any) -> None:
        if message[0] == "report":
            assert self.control is not None
            report = self.app.stats.report()
            report["loop"] = {"turns": self.turns, "timers": self.timers_fired, "waits": self.waits}
            self.control.send(("report", report))
        elif message[0] == "stop":
            self.stopped = True


class _ServerApp:
    """The mstls server application: counts handshakes, drains streams, answers each FIN."""

    def __init__(
        self, endpoint: ServerEndpoint, stats: _ServerStats, counters: DatagramCounters
    ) -> None:
        self.endpoint = endpoint
        self.stats = stats
        self.counters = counters
        self.fresh: list[QuicConnection] = []  # accepted, handshake not complete yet
        self.live: list[QuicConnection] = []  # handshake complete
        self.seen: list[QuicConnection] = []
        self.reading: list[tuple[QuicConnection, int]] = []

        stats.counts = lambda: (counters.received, sum(c.bytes_received for c in self.seen))

    def step(self, now: float) -> None:
        accepted = self.endpoint.accepted
        while accepted:
            conn = accepted.popleft()
            self.fresh.append(conn)
            self.seen.append(conn)
        if self.fresh:
            self._check_handshakes()
        for conn in self.live:
            for stream_id in conn.streams.accept_pending():
                self.reading.append((conn, stream_id))
        if self.reading:
            self._drain()

    def _check_handshakes(self) -> None:
        waiting = []
        for conn in self.fresh:
            # Not is_established: the client's Finished and its close may arrive in one batch.
            if conn.handshake_complete:
                group = getattr(conn.tls, "group", None)
                self.stats.on_handshake(None if group is None else _group_name(group))
                self.live.append(conn)
            elif not conn.is_terminated:
                waiting.append(conn)
        self.fresh = waiting
        self.live = [conn for conn in self.live if not conn.is_terminated]

    def _drain(self) -> None:
        still = []
        for conn, stream_id in self.reading:
            data, fin = conn.streams.read(stream_id, READ_MAX)
            self.stats.stream_bytes += len(data)
            if fin:
                conn.streams.write(stream_id, ACK, fin=True)
                self.stats.mark()
            else:
                still.append((conn, stream_id))
        self.reading = still


def _group_name(group: int) -> str:
    try:
        return NamedGroup(group).name
    except ValueError:
        return hex(group)


class _Upload:
    """The mstls client's application: write the payload and FIN, then read the answer."""

    def __init__(self, conn: QuicConnection, size: int) -> None:
        self.conn = conn
        self.streams = conn.streams
        self.stream_id = self.streams.open_stream()
        self.remaining = size
        self.partial: memoryview | None = None
        self.answer = b""
        self.done = False

    def finished(self) -> bool:
        return self.done or self.conn.is_terminated

    def step(self, now: float) -> None:
        if self.remaining:
            self._write()
        else:
            data, fin = self.streams.read(self.stream_id, READ_MAX)
            self.answer += data
            self.done = fin

    def _write(self) -> None:
        write, stream_id, chunk = self.streams.write, self.stream_id, WRITE_CHUNK
        while self.remaining:
            piece: bytes | memoryview
            if self.partial is not None:
                piece = self.partial
            else:
                piece = chunk if self.remaining >= len(chunk) else chunk[: self.remaining]
            size = len(piece)
            taken = write(stream_id, piece, self.remaining == size)
            self.remaining -= taken
            if taken < size:
                self.partial = memoryview(piece)[taken:]
                return
            self.partial = None


def _mstls_config(job: Job, *, server: bool) -> QuicConfig:
    scenario = job.scenario
    tls: TLSConfig
    if server:
        chain, key = load_cert_chain(job.cert, job.key)
        tls = TLSConfig(alpn_protocols=[ALPN], certificate_chain=chain, private_key=key)
    else:
        groups = [NamedGroup[name] for name in scenario.groups]
        tls = TLSConfig(
            alpn_protocols=[ALPN],
            server_name=SERVER_NAME,
            trusted_roots=load_roots(cafile=job.ca, use_system=False),
            groups=groups or SUPPORTED_GROUPS,
        )
    path: dict[str, Any] = {}
    if not scenario.pmtu:
        if job.datagram == MIN_DATAGRAM or scenario.kind == "handshake":
            path = {"pmtu_discovery": False}
        else:  # probe straight up to the requested size (loopback takes it)
            path = {"pmtu_discovery": True, "pmtu_max": job.datagram}
    return QuicConfig(
        tls=tls,
        initial_max_data=CONNECTION_WINDOW,
        initial_max_stream_data=STREAM_WINDOW,
        max_data_window=CONNECTION_WINDOW,
        max_stream_data_window=STREAM_WINDOW,
        **path,
    )


def _mstls_server(job: Job, control: Connection) -> None:
    endpoint = ServerEndpoint(_mstls_config(job, server=True))
    loop = _ServerLoop(endpoint, control, _new_stats(job))
    try:
        deadline = time.monotonic() + job.timeout
        control.send(("ready", loop.sock.getsockname()[1]))
        loop.run(lambda: loop.stopped, loop.app.step, deadline)
    finally:
        loop.close()


def _connect_mstls(config: QuicConfig, port: int, deadline: float) -> _ClientLoop:
    """A client connection whose handshake completed (its Finished is sent)."""
    now = time.monotonic()
    conn = QuicConnection(config, is_client=True, now=now, peer_address=(HOST, port))
    loop = _ClientLoop(conn)
    try:
        conn.connect(now)
        loop.run(lambda: conn.is_established or conn.is_terminated, None, deadline)
        if not conn.is_established:
            raise BenchError(f"mstls handshake failed: {conn.close_info}")
    except BaseException:
        loop.close()
        raise
    return loop


def _close_mstls(loop: _ClientLoop) -> None:
    now = time.monotonic()
    loop.conn.close(now=now)
    loop.flush(now)
    loop.close()


def _mstls_bulk_client(job: Job, port: int) -> dict[str, Any]:
    deadline = time.monotonic() + job.timeout
    loop = _connect_mstls(_mstls_config(job, server=False), port, deadline)
    try:
        upload = _Upload(loop.conn, job.size)
        counters = loop.caps.counters
        sent, received = counters.sent, counters.received
        cpu = time.process_time()
        start = time.perf_counter()
        loop.run(upload.finished, upload.step, deadline)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        if not upload.done or upload.answer != ACK:
            raise BenchError(f"no answer from the server: {loop.conn.close_info}")
        return {
            "seconds": elapsed,
            "client_cpu": cpu,
            "client_datagrams_sent": counters.sent - sent,
            "client_datagrams_received": counters.received - received,
        }
    finally:
        _close_mstls(loop)


def _mstls_handshake_client(job: Job, port: int) -> dict[str, Any]:
    deadline = time.monotonic() + job.timeout
    config = _mstls_config(job, server=False)
    times = []
    for _ in range(1 + job.handshakes):  # the first is a warm-up
        start = time.perf_counter()
        loop = _connect_mstls(config, port, deadline)
        times.append(time.perf_counter() - start)
        _close_mstls(loop)
    return {"handshake_seconds": times[1:]}


# --- the aioquic side ---------------------------------------------------------------------


class _Count:
    """Datagrams and bytes seen by a wrapped ``datagram_received``."""

    __slots__ = ("bytes", "datagrams")

    def __init__(self) -> None:
        self.datagrams = 0
        self.bytes = 0


def _counting(receive: Callable[[Any, Any], None], count: _Count) -> Callable[[Any, Any], None]:
    def datagram_received(data: Any, addr: Any) -> None:
        count.datagrams += 1
        count.bytes += len(data)
        receive(data, addr)

    return datagram_received


def _aioquic_group(quic: AioquicConnection) -> str | None:
    """The group an aioquic server used (read from its TLS context; best effort)."""
    context = getattr(quic, "tls", None)
    if getattr(context, "_x25519_private_key", None) is not None:
        return "x25519"
    keys = getattr(context, "_ec_private_keys", None)
    if keys:
        return str(keys[-1].curve.name)
    return None


class _ServerProtocol(QuicConnectionProtocol):
    """aioquic's connection protocol, counting completed handshakes."""

    stats: _ServerStats

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted):
            self.stats.on_handshake(_aioquic_group(self._quic))
        super().quic_event_received(event)


def _aioquic_socket_buffers(transport: asyncio.BaseTransport) -> None:
    """Give aioquic's socket the buffer sizes mstls's sockets ask for (it keeps the
    OS defaults, about 200 kB, and loses datagrams to a full receive buffer)."""
    sock = transport.get_extra_info("socket")
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, option, DEFAULT_SOCKET_BUFFER)


def _aioquic_config(job: Job, *, server: bool) -> QuicConfiguration:
    configuration = QuicConfiguration(
        is_client=not server,
        alpn_protocols=[ALPN],
        max_datagram_size=job.datagram,
        max_data=CONNECTION_WINDOW,
        max_stream_data=STREAM_WINDOW,
    )
    if server:
        configuration.load_cert_chain(job.cert, job.key)
    else:
        configuration.server_name = SERVER_NAME
        configuration.load_verify_locations(cafile=job.ca)
    return configuration


async def _aioquic_sink(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stats: _ServerStats
) -> None:
    """Read a stream to its end, discarding, then answer :data:`ACK` and the FIN."""
    while data := await reader.read(READ_MAX):
        stats.stream_bytes += len(data)
    writer.write(ACK)
    writer.write_eof()
    stats.mark()


async def _aioquic_serve(job: Job, control: Connection) -> None:
    loop = asyncio.get_running_loop()
    stats, count = _new_stats(job), _Count()
    stats.counts = lambda: (count.datagrams, count.bytes)
    tasks: set[asyncio.Task[None]] = set()
    stop = asyncio.Event()

    def on_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = loop.create_task(_aioquic_sink(reader, writer, stats))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def create_protocol(quic: AioquicConnection, **kwargs: Any) -> _ServerProtocol:
        protocol = _ServerProtocol(quic, **kwargs)
        protocol.stats = stats
        return protocol

    def on_control() -> None:
        try:
            message = control.recv()
        except EOFError:
            stop.set()
            return
        if message[0] == "report":
            control.send(("report", stats.report()))
        elif message[0] == "stop":
            stop.set()

    configuration = _aioquic_config(job, server=True)
    transport, server = await loop.create_datagram_endpoint(
        lambda: QuicServer(
            configuration=configuration, create_protocol=create_protocol, stream_handler=on_stream
        ),
        local_addr=(HOST, 0),
    )
    _aioquic_socket_buffers(transport)
    server.datagram_received = _counting(server.datagram_received, count)  # type: ignore[method-assign,assignment]
    loop.add_reader(control.fileno(), on_control)
    try:
        control.send(("ready", transport.get_extra_info("sockname")[1]))
        await asyncio.wait_for(stop.wait(), job.timeout)
    finally:
        loop.remove_reader(control.fileno())
        server.close()


class _ClientProtocol(QuicConnectionProtocol):
    """aioquic's connection protocol, counting received datagrams."""

    datagrams = 0
    sent = 0

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        self.datagrams += 1
        super().datagram_received(data, addr)


async def _aioquic_connect(
    configuration: QuicConfiguration, port: int
) -> tuple[_ClientProtocol, asyncio.DatagramTransport]:
    """Connect from 127.0.0.1 (``aioquic.asyncio.connect`` binds the wildcard ``::``)."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _ClientProtocol(AioquicConnection(configuration=configuration)),
        local_addr=(HOST, 0),
    )
    _aioquic_socket_buffers(transport)
    send = transport.sendto

    def sendto(data: Any, addr: Any = None) -> None:
        protocol.sent += 1
        send(data, addr)

    transport.sendto = sendto  # type: ignore[method-assign]
    try:
        protocol.connect((HOST, port))
        await protocol.wait_connected()
    except BaseException:
        transport.close()
        raise
    return protocol, transport


async def _aioquic_bulk(job: Job, port: int) -> dict[str, Any]:
    configuration = _aioquic_config(job, server=False)
    protocol, transport = await _aioquic_connect(configuration, port)
    try:
        reader, writer = await protocol.create_stream()
        received, sent = protocol.datagrams, protocol.sent
        cpu = time.process_time()
        start = time.perf_counter()
        remaining, chunk = job.size, WRITE_CHUNK
        while remaining:
            piece = chunk if remaining >= len(chunk) else chunk[:remaining]
            writer.write(piece)
            await writer.drain()
            remaining -= len(piece)
        writer.write_eof()
        answer = await reader.read()
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        if answer != ACK:
            raise BenchError(f"aioquic server answered {answer!r}")
        return {
            "seconds": elapsed,
            "client_cpu": cpu,
            "client_datagrams_received": protocol.datagrams - received,
            "client_datagrams_sent": protocol.sent - sent,
        }
    finally:
        protocol.close()
        transport.close()


async def _aioquic_handshakes(job: Job, port: int) -> dict[str, Any]:
    configuration = _aioquic_config(job, server=False)
    times = []
    for _ in range(1 + job.handshakes):  # the first is a warm-up
        start = time.perf_counter()
        protocol, transport = await _aioquic_connect(configuration, port)
        times.append(time.perf_counter() - start)
        protocol.close()
        transport.close()
    return {"handshake_seconds": times[1:]}


def _aioquic_offer_only_x25519() -> None:
    """Make aioquic clients in this process offer only x25519.

    aioquic has no setting for it: its client sends secp256r1, secp384r1 and
    x25519 shares and its server takes the first.  The TLS context's group list
    is replaced after construction (client process only; the server is stock).
    """
    original = aioquic_tls.Context.__init__

    def init(self: aioquic_tls.Context, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if not hasattr(self, "_supported_groups"):
            raise BenchError("this aioquic has no _supported_groups: cannot restrict its groups")
        self._supported_groups = [aioquic_tls.Group.X25519]

    aioquic_tls.Context.__init__ = init  # type: ignore[method-assign]


def _aioquic_server(job: Job, control: Connection) -> None:
    asyncio.run(_aioquic_serve(job, control))


def _aioquic_client(job: Job, port: int) -> dict[str, Any]:
    if job.scenario.groups == ("x25519",):
        _aioquic_offer_only_x25519()
    elif job.scenario.groups:
        raise BenchError(f"aioquic clients can be limited to x25519 only: {job.scenario.groups}")
    run = _aioquic_bulk if job.scenario.kind == "bulk" else _aioquic_handshakes
    return asyncio.run(asyncio.wait_for(run(job, port), job.timeout))


def _mstls_client(job: Job, port: int) -> dict[str, Any]:
    if job.scenario.kind == "bulk":
        return _mstls_bulk_client(job, port)
    return _mstls_handshake_client(job, port)


# --- child processes ----------------------------------------------------------------------


def _client_role(job: Job, control: Connection) -> None:
    if not control.poll(job.timeout):
        raise BenchError("no port from the parent")
    message = control.recv()
    port = message[1]
    run = _aioquic_client if job.scenario.stack == "aioquic" else _mstls_client
    control.send(("result", run(job, port)))


def _server_role(job: Job, control: Connection) -> None:
    run = _aioquic_server if job.scenario.stack == "aioquic" else _mstls_server
    run(job, control)


_ROLES: dict[str, Callable[[Job, Connection], None]] = {
    "client": _client_role,
    "server": _server_role,
}


def _child(role: str, job: Job, control: Connection) -> None:
    """Entry point of a child process: play ``role`` in ``job``, report over ``control``."""
    try:
        if job.nice:
            _renice(job.nice)
        if job.profile is None:
            _ROLES[role](job, control)
        else:
            _profiled(role, job, control)
    except BaseException:
        with contextlib.suppress(OSError):
            control.send(("error", f"{job.scenario.name} {role}: {traceback.format_exc()}"))
    finally:
        control.close()


def _renice(increment: int) -> None:
    """Change this process's priority by ``increment``, across sessions too.

    With Linux autogroup scheduling, niceness only ranks processes of one
    session; so the process first starts a session (a new autogroup) and sets
    that group's niceness as well (``/proc/self/autogroup``, root only).
    """
    with contextlib.suppress(OSError):
        os.setsid()
        Path("/proc/self/autogroup").write_text(f"{increment}\n")
    os.nice(increment)


def _profiled(role: str, job: Job, control: Connection) -> None:
    """Run ``role`` under cProfile; write ``<scenario>-<role>.prof`` and the top
    :data:`PROFILE_TOP` functions by own time (wall clock: run it on a quiet machine)."""
    assert job.profile is not None
    profile = cProfile.Profile()
    try:
        profile.runcall(_ROLES[role], job, control)
    finally:
        stem = Path(job.profile) / f"{job.scenario.name}-{role}"
        profile.dump_stats(f"{stem}.prof")
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(PROFILE_TOP)
        Path(f"{stem}.txt").write_text(text.getvalue())


# --- the parent ---------------------------------------------------------------------------


def _receive(
    want: Connection, kind: str, deadline: float, others: Sequence[Connection] = ()
) -> Any:
    """The next ``kind`` message from ``want``; a child error or a deadline raises."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError(f"no {kind!r} message before the deadline")
        for ready in wait([want, *others], left):
            assert isinstance(ready, Connection)
            try:
                message = ready.recv()
            except EOFError:
                raise BenchError(f"a child exited while waiting for {kind!r}") from None
            if message[0] == "error":
                raise BenchError(message[1])
            if ready is want and message[0] == kind:
                return message[1]
            raise BenchError(f"unexpected message {message[0]!r} while waiting for {kind!r}")


def _server_report(server: Connection, job: Job, deadline: float) -> dict[str, Any]:
    """Ask until the server counted every handshake (bulk: its numbers froze at the FIN)."""
    while True:
        server.send(("report",))
        stats: dict[str, Any] = _receive(server, "report", deadline)
        if stats["final"]:
            return stats
        if time.monotonic() + REPORT_POLL > deadline:
            raise BenchError(f"the server counted {stats['handshakes']} handshakes: {stats}")
        time.sleep(REPORT_POLL)


def run_job(job: Job) -> dict[str, Any]:
    """One run: server and client processes; returns both sides' raw numbers."""
    context = multiprocessing.get_context("spawn")
    ends = [context.Pipe() for _ in range(2)]
    processes = [
        context.Process(target=_child, args=(role, job, child), name=f"{job.scenario.name}-{role}")
        for role, (_, child) in zip(("server", "client"), ends, strict=True)
    ]
    server, client = ends[0][0], ends[1][0]
    deadline = time.monotonic() + job.timeout
    drops = _udp_receive_drops()
    try:
        for process in processes:
            process.daemon = True
            process.start()
        for _, child in ends:
            child.close()
        port = _receive(server, "ready", deadline, [client])
        client.send(("go", port))
        client_stats = _receive(client, "result", deadline, [server])
        server_stats = _server_report(server, job, deadline)
        server.send(("stop",))
        for process in processes:
            process.join(STOP_GRACE)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(STOP_GRACE)
        for parent_end, _ in ends:
            parent_end.close()
    after = _udp_receive_drops()
    dropped = None if drops is None or after is None else after - drops
    return {"client": client_stats, "server": server_stats, "kernel_drops": dropped}


def _udp_receive_drops() -> int | None:
    """Datagrams the kernel dropped for full socket buffers so far (Linux, all sockets)."""
    try:
        lines = Path("/proc/net/snmp").read_text().splitlines()
    except OSError:
        return None
    rows = [line.split() for line in lines if line.startswith("Udp:")]
    if len(rows) != 2 or "RcvbufErrors" not in rows[0]:
        return None
    return int(rows[1][rows[0].index("RcvbufErrors")])


def _bulk_numbers(job: Job, raw: dict[str, Any]) -> dict[str, Any]:
    client, server = raw["client"], raw["server"]
    if server["stream_bytes"] != job.size:
        raise BenchError(f"server read {server['stream_bytes']} bytes of {job.size}")
    seconds, datagrams = client["seconds"], server["datagrams"]
    return {
        "mb_per_s": job.size / seconds / MB,
        "seconds": seconds,
        "server_cpu_s": server["cpu"],
        "server_datagrams": datagrams,
        "server_us_per_datagram": server["cpu"] / datagrams * 1e6,
        "server_ms_per_mib": server["cpu"] / (job.size / MIB) * 1e3,
        "server_busy": server["cpu"] / seconds,
        "mean_datagram_bytes": server["bytes"] / datagrams,
        "client_cpu_s": client["client_cpu"],
        "client_busy": client["client_cpu"] / seconds,
        "client_datagrams_received": client["client_datagrams_received"],
        "client_datagrams_sent": client["client_datagrams_sent"],
        "kernel_drops": raw["kernel_drops"],
        "groups": server["groups"],
    }


def _handshake_numbers(job: Job, raw: dict[str, Any]) -> dict[str, Any]:
    client, server = raw["client"], raw["server"]
    count = job.handshakes
    if server["handshakes"] != 1 + count:
        raise BenchError(f"the server counted {server['handshakes']} handshakes of {1 + count}")
    return {
        "handshakes": count,
        "server_cpu_s": server["cpu"],
        "server_ms_per_handshake": server["cpu"] / count * 1e3,
        "client_ms_per_handshake": statistics.mean(client["handshake_seconds"]) * 1e3,
        "groups": server["groups"],
    }


def _summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of every numeric field; for throughput also the best run."""
    summary: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, int | float):
            summary[key] = statistics.median(run[key] for run in runs)
        else:
            summary[key] = value
    if "mb_per_s" in summary:
        summary["best_mb_per_s"] = max(run["mb_per_s"] for run in runs)
    return summary


def compute_ratios(summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each :data:`RATIOS` entry whose two scenarios were run, with its value."""
    out = []
    for ratio in RATIOS:
        top, bottom = summaries.get(ratio.numerator), summaries.get(ratio.denominator)
        if top is None or bottom is None or not bottom.get(ratio.metric):
            continue
        out.append({**asdict(ratio), "value": top[ratio.metric] / bottom[ratio.metric]})
    return out


@dataclass(frozen=True)
class Options:
    """What to run (the command line)."""

    size: int = DEFAULT_SIZE
    datagram: int = DEFAULT_DATAGRAM
    runs: int = DEFAULT_RUNS
    handshakes: int = DEFAULT_HANDSHAKES
    only: tuple[str, ...] = ()
    timeout: float | None = None
    profile: str | None = None
    nice: int = 0


def run_bench(options: Options, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every selected scenario ``options.runs`` times; returns the JSON document."""
    scenarios = [s for s in SCENARIOS if not options.only or s.name in options.only]
    load_before = _load_average()
    results = []
    with tempfile.TemporaryDirectory(prefix="mstls-bench-") as directory:
        pki = write_dev_pki(directory)
        for scenario in scenarios:
            timeout = options.timeout or default_timeout(scenario, options.size, options.handshakes)
            job = Job(
                scenario=scenario,
                size=options.size,
                datagram=options.datagram,
                handshakes=options.handshakes,
                ca=str(pki.ca_cert),
                cert=str(pki.server_cert),
                key=str(pki.server_key),
                timeout=timeout,
                profile=options.profile,
                nice=options.nice,
            )
            numbers = _bulk_numbers if scenario.kind == "bulk" else _handshake_numbers
            runs = []
            for index in range(options.runs):
                log(f"  {scenario.name}: run {index + 1}/{options.runs} ...")
                runs.append(numbers(job, run_job(job)))
            results.append({**asdict(scenario), "runs": runs, "summary": _summarize(runs)})
    summaries = {result["name"]: result["summary"] for result in results}
    return {
        "settings": {
            **asdict(options),
            "connection_window": CONNECTION_WINDOW,
            "stream_window": STREAM_WINDOW,
        },
        "environment": {**_environment(), "load_average_before": load_before},
        "results": results,
        "ratios": compute_ratios(summaries),
    }


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (other work competes for the cores)."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _environment() -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "aioquic": aioquic.__version__,
        "mstls_commit": commit,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": _load_average(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# --- the report ---------------------------------------------------------------------------


def format_report(document: dict[str, Any]) -> str:
    """The tables and ratios, as printed."""
    settings = document["settings"]
    lines = [
        f"QUIC over 127.0.0.1, {document['environment']['cpus']} CPUs, "
        f"Python {document['environment']['python']}, "
        f"aioquic {document['environment']['aioquic']}, "
        f"mstls {document['environment']['mstls_commit']}",
        f"flow control (both stacks): connection {settings['connection_window'] // MIB} MiB, "
        f"stream {settings['stream_window'] // MIB} MiB; median of {settings['runs']} run(s)",
    ]
    load = document["environment"]["load_average_before"]
    if load is not None:
        lines.append(
            f"load average before the run: {load[0]:.2f} (1 min); "
            "other busy processes take cores from the server or the client"
        )
    bulk = [r for r in document["results"] if r["kind"] == "bulk"]
    if bulk:
        lines += [
            "",
            f"Bulk upload: {settings['size'] / MIB:g} MiB on one stream, "
            f"datagrams {settings['datagram']} bytes unless PMTU probing",
            f"{'scenario':<30}{'MB/s':>8}{'best':>8}{'srv µs/dgram':>14}{'srv ms/MiB':>12}"
            f"{'dgram B':>9}{'srv CPU':>9}{'cli CPU':>9}{'acks/dgram':>12}{'lost':>7}",
        ]
        for result in bulk:
            s = result["summary"]
            lines.append(
                f"{result['label']:<30}{s['mb_per_s']:>8.1f}{s['best_mb_per_s']:>8.1f}"
                f"{s['server_us_per_datagram']:>14.1f}{s['server_ms_per_mib']:>12.2f}"
                f"{s['mean_datagram_bytes']:>9.0f}{s['server_busy']:>9.0%}"
                f"{s['client_busy']:>9.0%}"
                f"{s['client_datagrams_received'] / s['server_datagrams']:>12.3f}"
                f"{1 - s['server_datagrams'] / s['client_datagrams_sent']:>7.1%}"
            )
    handshakes = [r for r in document["results"] if r["kind"] == "handshake"]
    if handshakes:
        lines += [
            "",
            f"Handshakes: {settings['handshakes']} per run, ECDSA P-256 certificate",
            f"{'scenario':<34}{'group (server)':<18}{'srv CPU ms/hs':>14}{'client ms/hs':>14}",
        ]
        for result in handshakes:
            s = result["summary"]
            group = ",".join(s["groups"]) or result["group"]
            lines.append(
                f"{result['label']:<34}{group:<18}{s['server_ms_per_handshake']:>14.2f}"
                f"{s['client_ms_per_handshake']:>14.2f}"
            )
    if document["ratios"]:
        lines += ["", "Ratios mstls / aioquic:"]
        for ratio in document["ratios"]:
            good = ratio["value"] > 1 if ratio["better"] == "higher" else ratio["value"] < 1
            lines.append(
                f"  {ratio['text']:<38}{ratio['value']:>7.2f}x  "
                f"({ratio['better']} is better for mstls: "
                f"{'mstls ahead' if good else 'aioquic ahead'})"
            )
    return "\n".join(lines)


def _parse_args(argv: Sequence[str] | None) -> tuple[Options, str | None]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.quic_bulk",
        description="QUIC bulk upload and handshake cost, mstls against aioquic.",
    )
    parser.add_argument("--size", type=parse_size, default=DEFAULT_SIZE, help="bytes (64MiB)")
    parser.add_argument("--datagram", type=int, default=DEFAULT_DATAGRAM, help="bytes (1200)")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="runs per scenario (3)")
    parser.add_argument("--handshakes", type=int, default=DEFAULT_HANDSHAKES, help="per run (50)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    names = ", ".join(s.name for s in SCENARIOS)
    parser.add_argument("--only", default="", help=f"comma-separated scenarios of: {names}")
    parser.add_argument("--timeout", type=float, help="seconds per run (default: by size)")
    parser.add_argument("--profile", metavar="DIR", help="cProfile every child into DIR")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness increment of the children (negative: ahead of other load; needs root)",
    )
    args = parser.parse_args(argv)
    only = tuple(name for name in args.only.split(",") if name)
    unknown = set(only) - {s.name for s in SCENARIOS}
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}; known: {names}")
    if not MIN_DATAGRAM <= args.datagram <= MAX_DATAGRAM:
        parser.error(f"--datagram must be between {MIN_DATAGRAM} and {MAX_DATAGRAM}")
    if args.runs < 1 or args.handshakes < 1:
        parser.error("--runs and --handshakes must be at least 1")
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    options = Options(
        size=args.size,
        datagram=args.datagram,
        runs=args.runs,
        handshakes=args.handshakes,
        only=only,
        timeout=args.timeout,
        profile=args.profile,
        nice=args.nice,
    )
    return options, args.json


def main(argv: Sequence[str] | None = None) -> int:
    options, json_path = _parse_args(argv)
    try:
        document = run_bench(options, log=lambda text: print(text, file=sys.stderr, flush=True))
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(format_report(document))
    if json_path:
        Path(json_path).write_text(json.dumps(document, indent=2) + "\n")
    if options.profile:
        print(f"\nprofiles (cProfile, top {PROFILE_TOP} by tottime) in {options.profile}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
