"""A bounded mixed soak against an ``mstlsd`` subprocess: errors, RSS slope, fds, threads.

Run from the repository root: ``python -m bench.soak`` (``--help``); issue 11's
acceptance run is ``--duration 1800``.

Theory of operation
-------------------
An ``mstlsd`` with a UDP and a TCP listener and the ``echo`` service is started
on 127.0.0.1 (a fresh state directory, development certificates).  One trio
client process then mixes, for ``--duration`` seconds:

* ``--long`` long-lived connections (half QUIC, half QMux over TCP), each
  running echo streams of random sizes one after another, with some streams
  reset by the client part-way (``--reset-share``), as the issue's soak did;
* short-lived connections, ``--short-rate`` per second, each opened, used for
  one to three echo streams and closed.

Every operation has a deadline (``--op-timeout``); any failure other than the
resets the client made itself is a client error.  Every ``--sample`` seconds
the daemon's VmRSS, open file descriptors and threads are read from /proc.
After ``--warmup`` seconds the report gives the RSS slope (MiB per hour, a
least-squares fit), and the fd and thread ranges.  The exit status is 1 on
any client error or when fds or threads grew by more than the slack; the RSS
slope is reported, and checked against ``--max-rss-slope`` only if given (a
slope over a minute is mostly noise).  The daemon is killed at the end
whatever happened.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import trio

import mstls
import mstls.trio
from bench.traced_daemon import growth
from mstlsd.preamble import encode_preamble
from mstlsd.state import dev_pki_paths

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
READY_MARK = "mstlsd ready"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
#: Echo sizes: mostly small requests, some bulk.
SIZES = (16, 1024, 4096, 65536, 300_000)
#: File descriptors and threads may vary this much around their level (connections
#: in flight come and go); a leak grows without bound.
FD_SLACK = 40
THREAD_SLACK = 2
#: Pause between a long-lived connection's streams.
LONG_PAUSE = 0.05
RESET_CODE = 9
#: Time given the traced daemon to write its last snapshot.
TRACE_DUMP_WAIT = 10.0

CONFIG = """
[[listeners]]
transport = "udp"
host = "127.0.0.1"
port = {port}

[[listeners]]
transport = "tcp"
host = "127.0.0.1"
port = {port}

[services.echo]
type = "echo"
"""


class SoakError(Exception):
    """The daemon did not start, or a phase missed its deadline."""


# -- the daemon --------------------------------------------------------------------------------


def _free_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((HOST, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((HOST, port))
                except OSError:
                    continue
                return port
    raise SoakError("no free port")


def start_daemon(state_dir: Path, port: int, traced: Path | None = None) -> subprocess.Popen[str]:
    config = state_dir / "mstlsd.toml"
    config.write_text(CONFIG.format(port=port))
    env = dict(os.environ)
    env["MSTLSD_STATE_DIR"] = str(state_dir)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("NOTIFY_SOCKET", None)
    command = ["-m", "mstlsd"] if traced is None else ["-m", "bench.traced_daemon", str(traced)]
    proc = subprocess.Popen(
        [sys.executable, *command, "--config", str(config)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + START_TIMEOUT
    for line in proc.stderr:
        if READY_MARK in line:
            _drain(proc.stderr)
            return proc
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise SoakError("mstlsd did not become ready")


#: The daemon's last log lines kept for the report (the rest is discarded).
LOG_TAIL = 200
DAEMON_LOG: collections.deque[str] = collections.deque(maxlen=LOG_TAIL)


def _drain(stream: Any) -> None:
    """Read the daemon's stderr for the rest of the run: a pipe nobody reads fills
    up after ~64 KiB of log lines and then blocks the daemon in its next write, which
    the clients would see as handshake timeouts."""

    def run() -> None:
        for line in stream:
            DAEMON_LOG.append(line)

    threading.Thread(target=run, name="mstlsd-stderr", daemon=True).start()


def read_proc(pid: int) -> dict[str, float]:
    """The daemon's VmRSS (bytes), threads and open file descriptors, and where the
    RSS is: the C heap (``[heap]``, glibc's brk area), other anonymous mappings
    (CPython's object arenas and large blocks) and files (code, libraries)."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    values = dict(line.split(":", 1) for line in status if ":" in line)
    sample: dict[str, float] = {
        "rss": int(values["VmRSS"].split()[0]) * 1024,
        "threads": int(values["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }
    sample.update(_rss_by_mapping(pid))
    return sample


def _rss_by_mapping(pid: int) -> dict[str, float]:
    """RSS bytes of the ``[heap]``, of the other anonymous mappings and of files."""
    totals = {"rss_heap": 0.0, "rss_anon": 0.0, "rss_file": 0.0}
    kind = "rss_anon"
    try:
        lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    except OSError:
        return totals
    for line in lines:
        fields = line.split()
        if not fields:
            continue
        if fields[0].endswith(":"):
            if fields[0] == "Rss:":
                totals[kind] += int(fields[1]) * 1024
        elif "-" in fields[0]:  # a mapping's header: range perms offset dev inode [path]
            path = fields[5] if len(fields) > 5 else ""
            kind = "rss_file" if path.startswith("/") else "rss_anon"
            if path == "[heap]":
                kind = "rss_heap"
    return totals


# -- the clients ---------------------------------------------------------------------------------


class Load:
    """The client side: counts and the first errors."""

    def __init__(self, port: int, ca: Path, options: argparse.Namespace) -> None:
        self.port = port
        self.config = mstls.ClientConfig(alpn="mstls", cafile=ca)
        self.options = options
        self.rng = random.Random(options.seed)
        self.counts = {"connections": 0, "streams": 0, "resets": 0, "errors": 0}
        self.started = 0.0
        self.errors: list[str] = []

    def error(self, what: str, exc: BaseException) -> None:
        self.counts["errors"] += 1
        if len(self.errors) < 20:
            # When, from the start of the load: to line it up with the samples (a
            # daemon starved of CPU by another job shows as errors in one window).
            at = trio.current_time() - self.started
            self.errors.append(f"at {at:.0f} s, {what}: {type(exc).__name__}: {exc}")

    async def connect(self, transport: str) -> mstls.trio.Connection:
        conn = await mstls.trio.connect(
            HOST, self.port, self.config, transport=transport, timeout=self.options.op_timeout
        )
        self.counts["connections"] += 1
        return conn

    async def echo(self, conn: mstls.trio.Connection) -> None:
        """One echo stream of a random size; some are reset part-way by us."""
        size = self.rng.choice(SIZES)
        payload = self.rng.randbytes(size)
        reset = self.rng.random() < self.options.reset_share
        with trio.fail_after(self.options.op_timeout):
            async with await conn.open_stream() as stream:
                if reset:
                    await stream.send_all(encode_preamble("echo") + payload[: size // 2])
                    stream.reset(RESET_CODE)
                    self.counts["resets"] += 1
                    return
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_send_ended, stream, encode_preamble("echo") + payload)
                    got = bytearray()
                    while data := await stream.receive_some():
                        got += data
                if bytes(got) != payload:
                    raise mstls.Error(f"echo returned {len(got)} of {size} bytes, or others")
        self.counts["streams"] += 1

    async def long_lived(self, transport: str, end: float) -> None:
        conn: mstls.trio.Connection | None = None
        while trio.current_time() < end:
            try:
                if conn is None:
                    conn = await self.connect(transport)
                await self.echo(conn)
            except (mstls.Error, trio.TooSlowError, trio.BrokenResourceError) as exc:
                self.error(f"long {transport}", exc)
                if conn is not None:
                    with contextlib.suppress(mstls.Error):
                        await conn.aclose()
                conn = None
            await trio.sleep(LONG_PAUSE)
        if conn is not None:
            with contextlib.suppress(mstls.Error):
                await conn.aclose()

    async def short_lived(self, transport: str) -> None:
        try:
            conn = await self.connect(transport)
            async with conn:
                for _ in range(self.rng.randint(1, 3)):
                    await self.echo(conn)
        except (mstls.Error, trio.TooSlowError, trio.BrokenResourceError) as exc:
            self.error(f"short {transport}", exc)


async def _send_ended(stream: mstls.trio.Stream, data: bytes) -> None:
    await stream.send_all(data, end=True)


async def run_load(load: Load, pid: int, samples: list[dict[str, float]]) -> None:
    options = load.options
    start = load.started = trio.current_time()
    end = start + options.duration
    async with trio.open_nursery() as nursery:
        for index in range(options.long):
            nursery.start_soon(load.long_lived, ("udp", "tcp")[index % 2], end)
        next_sample = start
        next_short = start
        turn = 0
        traced_warm = False
        while (now := trio.current_time()) < end:
            if now >= next_sample:
                if options.tracemalloc and not traced_warm and now - start >= options.warmup:
                    os.kill(pid, signal.SIGUSR1)  # snap-0: the warmed-up daemon
                    traced_warm = True
                sample = read_proc(pid)
                sample["t"] = now - start
                samples.append(sample)
                next_sample += options.sample
            if options.short_rate > 0 and now >= next_short:
                nursery.start_soon(load.short_lived, ("udp", "tcp")[turn % 2])
                turn += 1
                next_short += 1.0 / options.short_rate
            await trio.sleep(max(0.0, min(next_sample, next_short) - trio.current_time()))
        # The long-lived tasks end by themselves; short ones have op deadlines.
    if options.tracemalloc:
        os.kill(pid, signal.SIGUSR1)  # snap-1: the end of the run
        await trio.sleep(TRACE_DUMP_WAIT)
    final = read_proc(pid)
    final["t"] = trio.current_time() - start
    samples.append(final)


# -- the report ----------------------------------------------------------------------------------


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value), per hour."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 3600


def summarise(samples: list[dict[str, float]], load: Load, warmup: float) -> dict[str, Any]:
    steady = [s for s in samples if s["t"] >= warmup] or samples[-2:]
    rss = [(s["t"], s["rss"] / 2**20) for s in steady]
    fds = [int(s["fds"]) for s in steady]
    threads = [int(s["threads"]) for s in steady]
    return {
        **load.counts,
        "first_errors": load.errors,
        "samples": len(samples),
        "rss_mib_start": round(rss[0][1], 2),
        "rss_mib_end": round(rss[-1][1], 2),
        "rss_slope_mib_per_hour": round(slope_per_hour(rss), 2),
        # Fragmentation levels off, a leak does not: the slope of the later half.
        "rss_slope_second_half": round(slope_per_hour(rss[len(rss) // 2 :]), 2),
        # Where a slope is: glibc's heap, CPython's arenas (anonymous), mapped files.
        "rss_slope_by_mapping": {
            kind: round(slope_per_hour([(s["t"], s[kind] / 2**20) for s in steady]), 2)
            for kind in ("rss_heap", "rss_anon", "rss_file")
        },
        "fds_range": [min(fds), max(fds)],
        "fds_growth": fds[-1] - fds[0],
        "threads_range": [min(threads), max(threads)],
        "threads_growth": threads[-1] - threads[0],
        "samples_taken": samples,
    }


def verdict(summary: dict[str, Any], max_rss_slope: float | None) -> list[str]:
    """What failed (empty: the soak passed)."""
    failed = []
    if summary["errors"]:
        failed.append(f"{summary['errors']} client errors")
    if summary["fds_growth"] > FD_SLACK:
        failed.append(f"fds grew by {summary['fds_growth']}")
    if summary["threads_growth"] > THREAD_SLACK:
        failed.append(f"threads grew by {summary['threads_growth']}")
    if max_rss_slope is not None and summary["rss_slope_mib_per_hour"] > max_rss_slope:
        failed.append(f"RSS slope {summary['rss_slope_mib_per_hour']} MiB/h")
    return failed


def run(options: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mstls-soak-") as directory:
        state = Path(directory)
        port = _free_port()
        traced = Path(options.tracemalloc) if options.tracemalloc else None
        proc = start_daemon(state, port, traced)
        try:
            load = Load(port, dev_pki_paths(state).ca_cert, options)
            samples: list[dict[str, float]] = []
            trio.run(run_load, load, proc.pid, samples)
            summary = summarise(samples, load, options.warmup)
            summary["daemon_alive"] = proc.poll() is None
        finally:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds not in the fits")
    parser.add_argument("--sample", type=float, default=2.0, help="seconds between samples")
    parser.add_argument("--long", type=int, default=8, help="long-lived connections")
    parser.add_argument("--short-rate", type=float, default=4.0, help="new connections/s")
    parser.add_argument("--reset-share", type=float, default=0.1, help="streams reset by us")
    parser.add_argument("--op-timeout", type=float, default=15.0, help="per operation, s")
    parser.add_argument("--max-rss-slope", type=float, help="fail above this many MiB/hour")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", help="also write the summary as JSON to this path")
    parser.add_argument(
        "--tracemalloc",
        metavar="DIR",
        help="trace the daemon's allocations; snapshots after warm-up and at the end go"
        " to DIR and the report lists the call sites that grew most",
    )
    options = parser.parse_args(argv)
    if options.duration <= options.warmup:
        parser.error("--duration must exceed --warmup")
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        summary = run(options)
    except SoakError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    failed = verdict(summary, options.max_rss_slope)
    if not summary["daemon_alive"]:
        failed.append("the daemon died")
    summary["failed"] = failed
    print(
        f"soak {options.duration:g} s: {summary['connections']} connections,"
        f" {summary['streams']} streams, {summary['resets']} resets,"
        f" {summary['errors']} client errors; RSS {summary['rss_mib_start']}"
        f" -> {summary['rss_mib_end']} MiB (slope {summary['rss_slope_mib_per_hour']} MiB/h"
        f" after {options.warmup:g} s); fds {summary['fds_range']}, threads"
        f" {summary['threads_range']}"
    )
    print(
        "  RSS slope by mapping (MiB/h): "
        + ", ".join(f"{k[4:]} {v}" for k, v in summary["rss_slope_by_mapping"].items())
        + f"; over the later half of the steady window {summary['rss_slope_second_half']}"
    )
    for line in summary["first_errors"]:
        print(f"  {line}")
    if options.tracemalloc:
        snaps = Path(options.tracemalloc)
        if (snaps / "snap-1.pickle").exists():
            print("allocation growth after warm-up (tracemalloc):")
            for line in growth(snaps / "snap-0.pickle", snaps / "snap-1.pickle"):
                print(f"  {line}")
    if options.json:
        Path(options.json).write_text(json.dumps(summary, indent=2))
    if failed:
        print("FAILED: " + "; ".join(failed))
        for line in list(DAEMON_LOG)[-20:]:
            print(f"  mstlsd: {line.rstrip()}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
