"""TLS slowloris against a default ``mstlsd``: a normal TCP client's connect + echo time.

Run from the repository root: ``python -m bench.slowloris`` (``--help``).

Theory of operation
-------------------
An ``mstlsd`` with default ``[limits]`` (``max_tcp_handshakes``, a 2 s
``client_hello_timeout``, eviction of the oldest slow ClientHello when every
handshake slot is taken) and the ``echo`` service runs on 127.0.0.1 (see
:mod:`bench.soak`; its stderr is drained by a thread so that its logs never
block it).  ``--connections`` attacker tasks each open a TCP connection and send
a real TLS ClientHello (made by :mod:`ssl`, never completed) one byte every
``--byte-interval`` seconds; when the daemon closes or resets the connection
(the ClientHello deadline, an eviction), the attacker reconnects at once, as a
real one would.  After ``--ramp`` seconds, for ``--duration`` seconds, a
normal client starts every ``--interval`` seconds (each in its own task, so a
slow one does not hold the next back) and times its full TCP connect, QMux/TLS
handshake and an echo of a small message.

Reported: the normal clients' count, failures, p50, p99 and maximum, how many
took ``--limit`` ms (issue 11: 200 ms) or more, the attackers' reconnections
and the daemon's CPU share.  The exit status is 1 if a normal client failed or
the maximum reached the limit, unless ``--report-only``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

import trio

import mstls
import mstls.trio
from mstlsd.preamble import encode_preamble
from mstlsd.state import dev_pki_paths

from .soak import HOST, SoakError, _free_port, start_daemon

#: Issue 11: a normal TCP echo under slowloris completes in less than this (ms).
LIMIT_MS = 200.0
CONNECTIONS = 300
BYTE_INTERVAL = 1.0
DURATION = 30.0
INTERVAL = 0.5
RAMP = 3.0
#: A normal client's own deadline (its failure is counted, not waited for longer).
CLIENT_TIMEOUT = 10.0
#: Pause before an attacker reconnects after its connect itself failed.
CONNECT_RETRY_PAUSE = 0.05
PAYLOAD = b"slowloris probe"


def client_hello() -> bytes:
    """The first flight of a real TLS 1.3 client (a ClientHello record)."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def drain(stream: object, tail: deque[str]) -> threading.Thread:
    """Read the daemon's stderr until it closes (a full pipe would block its logging)."""

    def run() -> None:
        for line in stream:  # type: ignore[attr-defined]
            tail.append(line)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Attackers:
    """Slow ClientHello senders that reconnect whenever they are cut off."""

    def __init__(self, port: int, hello: bytes, interval: float) -> None:
        self.port, self.hello, self.interval = port, hello, interval
        self.connects = 0
        self.connected = 0

    async def one(self) -> None:
        while True:
            try:
                stream = await trio.open_tcp_stream(HOST, self.port)
            except OSError:
                await trio.sleep(CONNECT_RETRY_PAUSE)
                continue
            self.connects += 1
            self.connected += 1
            try:
                async with stream:
                    for index in range(len(self.hello)):
                        await stream.send_all(self.hello[index : index + 1])
                        with trio.move_on_after(self.interval):
                            if not await stream.receive_some(4096):
                                break  # the daemon closed it: reconnect
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass  # reset: reconnect
            finally:
                self.connected -= 1


async def normal_client(port: int, config: mstls.ClientConfig) -> float:
    """Milliseconds for a TCP connect, the handshake and an echo."""
    start = time.perf_counter()
    with trio.fail_after(CLIENT_TIMEOUT):
        conn = await mstls.trio.connect(HOST, port, config, transport="tcp")
        async with conn:
            stream = await conn.open_stream()
            await stream.send_all(encode_preamble("echo") + PAYLOAD, end=True)
            got = b""
            while data := await stream.receive_some():
                got += data
    if got != PAYLOAD:
        raise SoakError(f"echo answered {got!r}")
    return 1000 * (time.perf_counter() - start)


async def measure(port: int, ca: Path, pid: int, options: argparse.Namespace) -> dict[str, float]:
    config = mstls.ClientConfig(alpn="mstls", cafile=ca)
    quiet = [await normal_client(port, config) for _ in range(3)]
    attackers = Attackers(port, client_hello(), options.byte_interval)
    took: list[float] = []
    failures: list[str] = []

    async def timed() -> None:
        try:
            took.append(await normal_client(port, config))
        except (mstls.Error, trio.TooSlowError, OSError, SoakError) as exc:
            failures.append(f"{type(exc).__name__}: {exc}")

    async with trio.open_nursery() as nursery:
        for _ in range(options.connections):
            nursery.start_soon(attackers.one)
        await trio.sleep(options.ramp)
        connected = attackers.connected
        cpu, wall = cpu_seconds(pid), time.perf_counter()
        async with trio.open_nursery() as probes:
            deadline = trio.current_time() + options.duration
            while trio.current_time() < deadline:
                probes.start_soon(timed)
                await trio.sleep(options.interval)
        cpu, wall = cpu_seconds(pid) - cpu, time.perf_counter() - wall
        nursery.cancel_scope.cancel()
    took.sort()
    over = sum(t >= options.limit for t in took)
    return {
        "quiet_median_ms": statistics.median(quiet),
        "attackers_connected": connected,
        "attacker_connects": attackers.connects,
        "clients": len(took) + len(failures),
        "failures": len(failures),
        "first_failure": failures[0] if failures else "",  # type: ignore[dict-item]
        "p50_ms": took[len(took) // 2] if took else float("nan"),
        "p99_ms": took[min(len(took) - 1, int(0.99 * len(took)))] if took else float("nan"),
        "max_ms": took[-1] if took else float("nan"),
        "over_limit": over,
        "daemon_cpu_share": cpu / wall,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=CONNECTIONS, help="slow senders")
    parser.add_argument(
        "--byte-interval", type=float, default=BYTE_INTERVAL, help="seconds per ClientHello byte"
    )
    parser.add_argument("--duration", type=float, default=DURATION, help="seconds measured")
    parser.add_argument("--interval", type=float, default=INTERVAL, help="seconds per client")
    parser.add_argument("--ramp", type=float, default=RAMP, help="seconds before measuring")
    parser.add_argument("--limit", type=float, default=LIMIT_MS, help="target max (ms)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--report-only", action="store_true", help="exit 0 on a missed target")
    options = parser.parse_args(argv)
    tail: deque[str] = deque(maxlen=50)
    with tempfile.TemporaryDirectory(prefix="mstls-slowloris-") as directory:
        state = Path(directory)
        port = _free_port()
        try:
            proc: subprocess.Popen[str] = start_daemon(state, port)
        except SoakError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        drain(proc.stderr, tail)
        try:
            ca = dev_pki_paths(state).ca_cert
            result = trio.run(measure, port, ca, proc.pid, options)
        finally:
            proc.kill()
            proc.wait()
    print(
        f"{options.connections} slowloris connections ({result['attackers_connected']:.0f}"
        f" connected after the ramp, {result['attacker_connects']:.0f} connects in all);"
        f" daemon CPU {100 * result['daemon_cpu_share']:.0f} % of a core"
    )
    print(
        f"normal TCP connect+echo: quiet median {result['quiet_median_ms']:.1f} ms; under"
        f" attack {result['clients']:.0f} clients, {result['failures']:.0f} failed, p50"
        f" {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f}, max {result['max_ms']:.1f},"
        f" {result['over_limit']:.0f} at or over {options.limit:g} ms"
    )
    if result["failures"]:
        print(f"first failure: {result['first_failure']}")
    if options.json is not None:
        options.json.write_text(json.dumps(result, indent=2))
    missed = bool(result["failures"]) or not result["max_ms"] < options.limit
    if missed:
        print(f"target missed (issue 11: every normal echo < {options.limit:g} ms)")
    return 1 if missed and not options.report_only else 0


if __name__ == "__main__":
    sys.exit(main())
