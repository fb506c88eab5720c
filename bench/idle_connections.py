"""Many idle QUIC connections on one trio listener: server CPU, echo latency, handshake cost.

Issue 11: 1,000 idle connections (client keep-alive 5 s) pegged a server core,
because every event scanned every connection.  This benchmark holds N idle
connections against one :func:`mstls.trio.serve` listener on 127.0.0.1 and, at
each level of N, reports

* ``idle_cpu_pct``: the server's CPU (process time, % of one core) while the N
  connections only exchange keep-alives, over ``--idle`` seconds;
* ``echo_p50_ms`` / ``echo_p99_ms``: round trips of a 64-byte echo on a new
  stream each, through one more connection, sequential, while the N are held;
* ``cpu_ms_per_conn``: server CPU per new connection, over ``--probe``
  connections opened at that level (``ratio`` compares the last level with the
  first: 1.0 means independent of the number open).

::

    .venv/bin/python -m bench.idle_connections                 # levels 200,1000 (~1 min)
    .venv/bin/python -m bench.idle_connections --levels 200,1000,10000 --idle 6
    .venv/bin/python -m bench.idle_connections --json out.json
    .venv/bin/python -m bench.idle_connections --levels 1000 --profile /tmp/server.prof

How it runs: the server is a child process (spawn) running the trio API with
an echo handler; it reports its process time on request through a pipe.  The
clients are sans-I/O :class:`~mstls.quic.connection.QuicConnection` objects in
this process, one UDP socket each, driven by one ``selectors`` loop with a
:class:`~mstls.core.deadlines.DeadlineHeap` (so the client side stays cheap
and does not limit the server).  Connections are opened :data:`OPEN_BATCH` at
a time.  Every phase has a deadline (``--timeout``); the child is killed at
the end whatever happened.  Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import cProfile
import gc
import json
import multiprocessing
import os
import resource
import selectors
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection as Pipe
from typing import Any

import trio

import mstls
import mstls.trio
from mstls.config import ClientConfig, ServerConfig
from mstls.core.deadlines import DeadlineHeap
from mstls.devcerts import write_dev_pki
from mstls.quic.connection import QuicConnection

HOST = "127.0.0.1"
ALPN = "bench-idle"
#: Client keep-alive (issue 11's measurement: 5 s).
KEEPALIVE = 5.0
#: Connections opened at once while growing to a level.
OPEN_BATCH = 50
#: Echo payload and count per level.
ECHO_BYTES = 64
DEFAULT_ECHOES = 200
#: Datagrams read per socket per readiness event.
READ_BATCH = 16
DEFAULT_LEVELS = (200, 1000)
DEFAULT_IDLE = 6.0
DEFAULT_PROBE = 50
#: Per phase (opening a level, the idle window, the echoes).
DEFAULT_TIMEOUT = 60.0
#: Connections the server admits beyond the highest level (the echo and probe ones).
HEADROOM = 1000
#: File descriptors wanted: one client socket per connection, plus slack.
FD_SLACK = 256


class BenchError(Exception):
    """A phase missed its deadline or the server died."""


# -- the server (child process) ----------------------------------------------------------------


class _GcTimer:
    """Wall time spent in the cyclic garbage collector, and full collections run."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        #: The longest single collection (s) since the last report.
        self.longest = 0.0
        self._start = 0.0
        self._cpu_start = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
            self._cpu_start = time.thread_time()
        else:
            # CPU time for the share (a preempted collection is not the collector's
            # cost on a loaded machine), wall time for the pause.
            self.seconds += time.thread_time() - self._cpu_start
            self.longest = max(self.longest, time.perf_counter() - self._start)
            self.full += info["generation"] == 2


class _Census:
    """Objects the collector tracks, by type: what the idle window added."""

    def __init__(self) -> None:
        self._before: collections.Counter[str] = collections.Counter()
        self.collections = [0, 0, 0]
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "stop":
            self.collections[info["generation"]] += 1

    @staticmethod
    def _count() -> collections.Counter[str]:
        gc.collect()
        return collections.Counter(type(o).__qualname__ for o in gc.get_objects())

    def take(self, start: bool) -> Any:
        if start:
            self._before = self._count()
            self.collections = [0, 0, 0]
            return None
        ran = list(self.collections)
        after = self._count()
        grown = {k: after[k] - self._before[k] for k in after if after[k] != self._before[k]}
        top = sorted(grown.items(), key=lambda item: -abs(item[1]))[:12]
        return {"collections by generation": ran, "tracked objects added": top}


class _Control:
    """The server's answers to the parent's requests (see :class:`Server`)."""

    def __init__(self, profiler: cProfile.Profile | None) -> None:
        self.gc_time = _GcTimer()
        self.census = _Census()
        self.profiler = profiler

    def answer(self, request: str) -> Any:
        gc_time = self.gc_time
        if request == "cpu":
            return time.process_time(), gc_time.seconds, gc_time.full
        if request == "sys":
            return os.times().system
        if request == "freeze":
            gc.freeze()  # what is held now is never scanned again
            return gc.get_freeze_count()
        if request in ("census_on", "census_off"):
            return self.census.take(request == "census_on")
        if request == "gc_pause":
            longest, gc_time.longest = gc_time.longest, 0.0
            return longest
        if request in ("profile_on", "profile_off") and self.profiler is not None:
            (self.profiler.enable if request == "profile_on" else self.profiler.disable)()
        return None


def _server_main(
    pipe: Pipe,
    certfile: str,
    keyfile: str,
    profile: str | None = None,
    gc_mode: str = "default",
    max_connections: int = 10000,
) -> None:
    config = ServerConfig(
        certfile=certfile,
        keyfile=keyfile,
        alpn=ALPN,
        idle_timeout=30.0,
        handshake_timeout=10.0,
        max_connections=max_connections,
    )

    async def echo(stream: Any) -> None:
        data = bytearray()
        while chunk := await stream.receive_some():
            data += chunk
        await stream.send_all(bytes(data))
        await stream.send_eof()

    async def handler(connection: Any) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                stream = await connection.accept_stream()
                nursery.start_soon(echo, stream)

    control = _Control(cProfile.Profile() if profile else None)
    if gc_mode == "freeze":
        gc.freeze()  # what the server allocated so far is never scanned again

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            listener = await nursery.start(mstls.trio.serve, HOST, 0, config, handler)
            pipe.send(("port", listener.address[1]))
            while True:
                request = await trio.to_thread.run_sync(pipe.recv)
                if request == "stop":
                    nursery.cancel_scope.cancel()
                    return
                pipe.send((request, control.answer(request)))

    profiler = control.profiler
    if profiler is None:
        trio.run(main)
        return
    try:
        trio.run(main)
    finally:
        profiler.disable()
        profiler.dump_stats(profile)


class Server:
    """The child process and its control pipe."""

    def __init__(
        self,
        certfile: str,
        keyfile: str,
        profile: str | None = None,
        gc_mode: str = "default",
        max_connections: int = 10000,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(
            target=_server_main,
            args=(child, certfile, keyfile, profile, gc_mode, max_connections),
            daemon=True,
        )
        self._process.start()
        kind, port = self._receive(30.0)
        assert kind == "port"
        self.address = (HOST, int(port))

    def _receive(self, timeout: float) -> tuple[str, Any]:
        if not self._pipe.poll(timeout):
            raise BenchError("the server did not answer")
        message: tuple[str, Any] = self._pipe.recv()
        return message

    def cpu(self) -> float:
        """The server's process time (s)."""
        return self.counters()[0]

    def longest_gc_pause(self) -> float:
        """The longest single collection (s) since the last call."""
        self._pipe.send("gc_pause")
        kind, value = self._receive(10.0)
        assert kind == "gc_pause"
        return float(value)

    def profile(self, on: bool) -> None:
        """Turn the server's profiler (``--profile``) on or off."""
        request = "profile_on" if on else "profile_off"
        self._pipe.send(request)
        kind, _ = self._receive(10.0)
        assert kind == request

    def freeze(self) -> int:
        """``gc.freeze()`` in the server; the number of objects frozen so far."""
        self._pipe.send("freeze")
        kind, value = self._receive(30.0)
        assert kind == "freeze"
        return int(value)

    def census(self, on: bool) -> Any:
        """Start a census of the server's tracked objects; at the end, what grew."""
        request = "census_on" if on else "census_off"
        self._pipe.send(request)
        kind, value = self._receive(60.0)
        assert kind == request
        return value

    def system_time(self) -> float:
        """The server's CPU time in the kernel (s)."""
        self._pipe.send("sys")
        kind, value = self._receive(10.0)
        assert kind == "sys"
        return float(value)

    def counters(self) -> tuple[float, float, int]:
        """(process time, time in the cyclic GC, full collections) of the server."""
        self._pipe.send("cpu")
        kind, value = self._receive(10.0)
        assert kind == "cpu"
        cpu, in_gc, full = value
        return float(cpu), float(in_gc), int(full)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._pipe.send("stop")
        self._process.join(5.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5.0)


# -- the clients (this process) ------------------------------------------------------------------


class Clients:
    """Sans-I/O client connections, one socket each, one selector loop."""

    def __init__(self, server: tuple[str, int], cafile: str) -> None:
        self.server = server
        self._config = ClientConfig(
            alpn=ALPN, cafile=cafile, server_name="localhost", keepalive=KEEPALIVE
        )
        self._selector = selectors.DefaultSelector()
        self._timers: DeadlineHeap[QuicConnection] = DeadlineHeap()
        self._sockets: dict[int, socket.socket] = {}
        self.connections: list[QuicConnection] = []
        self.on_event: Callable[[QuicConnection], None] | None = None
        #: Datagrams sent to the server: in all, and by each connection (by id).
        self.sent_total = 0
        self.sent: collections.Counter[int] = collections.Counter()

    def open(self, count: int) -> list[QuicConnection]:
        now = time.monotonic()
        opened = []
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((HOST, 0))
            sock.setblocking(False)
            conn = QuicConnection(
                self._config.quic_config("localhost"),
                is_client=True,
                now=now,
                peer_address=self.server,
            )
            self._sockets[id(conn)] = sock
            self._selector.register(sock, selectors.EVENT_READ, conn)
            conn.connect(now)
            self.flush(conn, now)
            opened.append(conn)
        self.connections += opened
        return opened

    def flush(self, conn: QuicConnection, now: float) -> None:
        sock = self._sockets[id(conn)]
        for datagram in conn.datagrams_to_send(now):
            try:
                sock.sendto(datagram, self.server)
            except (BlockingIOError, InterruptedError):
                break  # lost like any datagram; recovery resends it
            self.sent_total += 1
            self.sent[id(conn)] += 1
        self._timers.set(conn, conn.get_timer())
        while conn.next_event() is not None:
            pass  # nobody reads the idle connections' events

    def run_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            now = time.monotonic()
            if now > deadline:
                raise BenchError(f"{what}: not done after {timeout:.0f} s")
            self.turn(min(0.05, deadline - now))

    def run_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.turn(min(0.05, left))

    def turn(self, longest: float) -> None:
        top = self._timers.peek()
        wait = longest if top is None else max(0.0, min(longest, top - time.monotonic()))
        ready = self._selector.select(wait)
        now = time.monotonic()
        for key, _ in ready:
            conn: QuicConnection = key.data
            sock = self._sockets[id(conn)]
            for _ in range(READ_BATCH):
                try:
                    data, addr = sock.recvfrom(65535)
                except (BlockingIOError, InterruptedError):
                    break
                conn.receive_datagram(data, addr, now)
            self._serve(conn, now)
        for conn in self._timers.pop_due(now):
            conn.handle_timer(now)
            self._serve(conn, now)

    def _serve(self, conn: QuicConnection, now: float) -> None:
        if self.on_event is not None:
            self.on_event(conn)
        self.flush(conn, now)

    def established(self, conns: list[QuicConnection]) -> bool:
        return all(c.is_established for c in conns)

    def close(self) -> None:
        now = time.monotonic()
        for conn in self.connections:
            if not conn.is_terminated:
                conn.close(0, "bench done", now=now)
                self.flush(conn, now)
        for sock in self._sockets.values():
            sock.close()
        self._selector.close()


def _echo_latencies(
    clients: Clients, conn: QuicConnection, count: int, timeout: float
) -> list[float]:
    """``count`` sequential echoes of :data:`ECHO_BYTES`, one stream each (seconds)."""
    latencies: list[float] = []
    state: dict[str, Any] = {}

    def on_event(c: QuicConnection) -> None:
        if c is not conn or "sid" not in state:
            return
        data, fin = conn.streams.read(state["sid"], 1 << 16)
        state["got"] += len(data)
        state["fin"] = state["fin"] or fin

    clients.on_event = on_event
    try:
        for _ in range(count):
            start = time.monotonic()
            sid = conn.streams.open_stream()
            state.update(sid=sid, got=0, fin=False)
            conn.streams.write(sid, b"e" * ECHO_BYTES, fin=True)
            clients.flush(conn, start)
            clients.run_until(lambda: bool(state["fin"]), timeout, "echo")
            if state["got"] != ECHO_BYTES:
                raise BenchError(f"echo returned {state['got']} bytes, not {ECHO_BYTES}")
            latencies.append(time.monotonic() - start)
    finally:
        clients.on_event = None
    return latencies


def _raise_fd_limit(wanted: int) -> None:
    """One client socket per connection: raise the soft limit up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        if limit < wanted:
            print(f"warning: only {limit} file descriptors (hard limit)", file=sys.stderr)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _idle_window(
    server: Server, clients: Clients, options: argparse.Namespace
) -> tuple[float, dict[str, Any]]:
    """Keep-alives only for ``options.idle`` s: the server's CPU per datagram it was sent
    (a keep-alive's cost) and the row's fields."""
    if options.census:
        server.census(True)
    server.profile(True)
    sys0 = server.system_time()
    (cpu0, gc0, full0), wall0 = server.counters(), time.monotonic()
    sent0 = clients.sent_total
    clients.run_for(options.idle)
    cpu1, gc1, full1 = server.counters()
    received = max(1, clients.sent_total - sent0)
    sys1 = server.system_time()
    server.profile(False)
    if options.census:
        print("idle window:", server.census(False), flush=True)
    idle_cpu = (cpu1 - cpu0) / (time.monotonic() - wall0)
    spent = max(cpu1 - cpu0, 1e-9)
    return (cpu1 - cpu0) / received, {
        "idle_cpu_pct": round(100 * idle_cpu, 1),
        "idle_us_per_datagram": round(1e6 * (cpu1 - cpu0) / received, 1),
        "idle_sys_pct_of_cpu": round(100 * (sys1 - sys0) / spent, 1),
        "idle_gc_pct_of_cpu": round(100 * (gc1 - gc0) / spent, 1),
        "idle_full_collections": full1 - full0,
    }


def run(options: argparse.Namespace) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mstls-bench-idle-") as directory:
        pki = write_dev_pki(directory)
        _raise_fd_limit(max(options.levels) + options.probe + FD_SLACK)
        server = Server(
            str(pki.server_cert),
            str(pki.server_key),
            options.profile,
            options.gc,
            max(options.levels) + HEADROOM,
        )
        clients = Clients(server.address, str(pki.ca_cert))
        try:
            for level in options.levels:
                while len(clients.connections) < level:
                    batch = clients.open(min(OPEN_BATCH, level - len(clients.connections)))
                    clients.run_until(
                        lambda b=batch: clients.established(b), options.timeout, f"open {level}"
                    )
                clients.run_for(1.0)  # handshake leftovers settle
                held = len(clients.connections)
                if options.gc == "freeze-held":
                    server.freeze()
                per_datagram, idle = _idle_window(server, clients, options)
                # Echo through one more connection.
                (echo_conn,) = clients.open(1)
                clients.run_until(
                    lambda c=echo_conn: c.is_established, options.timeout, "echo open"
                )
                server.longest_gc_pause()
                _, _, full_before = server.counters()
                latencies = _echo_latencies(clients, echo_conn, options.echoes, options.timeout)
                _, _, full_after = server.counters()
                echo_gc_pause = server.longest_gc_pause()
                # CPU per new connection at this level.
                (cpu0, gc0, full0), sent0 = server.counters(), clients.sent_total
                batch = clients.open(options.probe)
                clients.run_until(lambda b=batch: clients.established(b), options.timeout, "probe")
                clients.run_for(0.5)
                cpu1, gc1, full1 = server.counters()
                per_conn = (cpu1 - cpu0) / (options.probe + 0.0)
                # The held connections' keep-alives run during the probe too: without
                # their share (the datagrams they sent meanwhile, at the idle window's
                # cost per datagram) what is left is the new connections' own cost.
                held_sent = clients.sent_total - sent0 - sum(clients.sent[id(c)] for c in batch)
                net = cpu1 - cpu0 - held_sent * per_datagram
                net_per_conn = max(0.0, net) / options.probe
                row = {
                    "open": held,
                    **idle,
                    "probe_gc_pct_of_cpu": round(100 * (gc1 - gc0) / max(cpu1 - cpu0, 1e-9), 1),
                    "probe_full_collections": full1 - full0,
                    "echo_full_collections": full_after - full_before,
                    "echo_longest_gc_ms": round(1000 * echo_gc_pause, 1),
                    "echo_p50_ms": round(1000 * statistics.median(latencies), 2),
                    "echo_p99_ms": round(1000 * _percentile(latencies, 0.99), 2),
                    "cpu_ms_per_conn": round(1000 * per_conn, 2),
                    "net_cpu_ms_per_conn": round(1000 * net_per_conn, 2),
                }
                results.append(row)
                print(_format(row), flush=True)
        finally:
            clients.close()
            server.stop()
    if len(results) > 1:
        for key, what in (("cpu_ms_per_conn", ""), ("net_cpu_ms_per_conn", ", net")):
            first, last = results[0][key], results[-1][key]
            print(
                f"cpu per new connection{what}, {results[-1]['open']} open /"
                f" {results[0]['open']} open: {last / max(first, 1e-9):.2f}"
            )
    return results


def _format(row: dict[str, Any]) -> str:
    return (
        f"open={row['open']:>6}  idle server cpu={row['idle_cpu_pct']:>5.1f} %"
        f" ({row['idle_sys_pct_of_cpu']:.0f} % of it in the kernel,"
        f" {row['idle_us_per_datagram']:.0f} us per datagram in)"
        f"  echo p50={row['echo_p50_ms']:>7.2f} ms p99={row['echo_p99_ms']:>8.2f} ms"
        f"  cpu/new conn={row['cpu_ms_per_conn']:>6.2f} ms"
        f" (net of keep-alives {row['net_cpu_ms_per_conn']:>6.2f} ms)"
        f"  gc: idle {row['idle_gc_pct_of_cpu']:>4.1f} % ({row['idle_full_collections']} full),"
        f" probe {row['probe_gc_pct_of_cpu']:>4.1f} % of cpu"
        f" ({row['probe_full_collections']} full); during the echoes"
        f" {row['echo_full_collections']} full, longest {row['echo_longest_gc_ms']} ms"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--levels",
        type=lambda s: [int(x) for x in s.split(",")],
        default=list(DEFAULT_LEVELS),
        help="numbers of idle connections to hold, ascending (default 200,1000)",
    )
    parser.add_argument("--idle", type=float, default=DEFAULT_IDLE, help="idle window, s")
    parser.add_argument("--echoes", type=int, default=DEFAULT_ECHOES)
    parser.add_argument("--probe", type=int, default=DEFAULT_PROBE, help="connections per probe")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="per phase, s")
    parser.add_argument(
        "--census",
        action="store_true",
        help="print the server's collections and the tracked objects the idle window added",
    )
    parser.add_argument("--json", help="also write the rows as JSON to this path")
    parser.add_argument(
        "--profile",
        help="cProfile the server during the idle windows only, stats to this path (slower)",
    )
    parser.add_argument(
        "--gc",
        choices=("default", "freeze", "freeze-held"),
        default="default",
        help="the server's garbage collector: CPython's defaults, gc.freeze() at start, or"
        " gc.freeze() once each level's connections are held (before its idle window)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    print(
        f"mstls idle connections: keep-alive {KEEPALIVE:g} s, mstls from"
        f" {os.path.dirname(mstls.__file__)}",
        flush=True,
    )
    try:
        results = run(options)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if options.json:
        with open(options.json, "w") as out:
            json.dump({"levels": results}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
