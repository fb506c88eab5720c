"""A QUIC Initial flood against a default ``mstlsd``: a normal client's handshake time.

Run from the repository root: ``python -m bench.initial_flood`` (``--help``).

Theory of operation
-------------------
An ``mstlsd`` with default ``[limits]`` (so ``retry = "under_load"``) and the
``echo`` service runs on 127.0.0.1 (see :mod:`bench.soak`).  ``--flood``
distinct, authentic client Initials (real ClientHellos from connections that
never continue; made in this process before the clock starts) are sent in
bursts of :data:`BURST`.  A normal client connects ``--probes`` times, one after
another, before the flood (the baseline) and while it runs, each time timing
``connect`` (the handshake, a Retry round trip included when the daemon asks for
one) and checking an echo.  Reported: the median and worst handshake of each
phase, their ratio, and the daemon's RSS before, at the peak and
``--settle`` seconds after the flood (the flood's handshakes with state time
out after the daemon's 10 s handshake timeout).  Issue 11's target: under
1 s during a 5,000-Initial flood, RSS back within 5 MiB.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

import mstls
import mstls.trio
from mstls.quic.connection import QuicConnection
from mstlsd.preamble import encode_preamble
from mstlsd.state import dev_pki_paths

from .soak import HOST, SoakError, _free_port, read_proc, start_daemon

BURST = 100
BURST_PAUSE = 0.005
#: A normal client's budget per attempt.
CLIENT_TIMEOUT = 10.0


def make_initials(ca: Path, count: int) -> list[bytes]:
    config = mstls.ClientConfig(alpn="mstls", cafile=ca).quic_config("localhost")
    out = []
    for _ in range(count):
        conn = QuicConnection(config, is_client=True, now=0.0, peer_address=(HOST, 1))
        conn.connect(0.0)
        out.append(conn.datagrams_to_send(0.0)[0])
    return out


async def send_flood(port: int, datagrams: list[bytes], done: trio.Event) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.setblocking(False)
        for i, datagram in enumerate(datagrams):
            with contextlib.suppress(BlockingIOError):
                udp.sendto(datagram, (HOST, port))
            if i % BURST == BURST - 1:
                await trio.sleep(BURST_PAUSE)
    done.set()


async def probe(port: int, ca: Path) -> float:
    """Seconds to a completed handshake; an echo checks the connection works."""
    config = mstls.ClientConfig(alpn="mstls", cafile=ca)
    start = time.perf_counter()
    conn = await mstls.trio.connect(HOST, port, config, timeout=CLIENT_TIMEOUT)
    took = time.perf_counter() - start
    async with conn:
        with trio.fail_after(CLIENT_TIMEOUT):
            stream = await conn.open_stream()
            await stream.send_all(encode_preamble("echo") + b"probe", end=True)
            got = b""
            while data := await stream.receive_some():
                got += data
    if got != b"probe":
        raise SoakError(f"echo answered {got!r}")
    return took


async def measure(port: int, ca: Path, pid: int, options: argparse.Namespace) -> dict[str, float]:
    initials = await trio.to_thread.run_sync(make_initials, ca, options.flood)
    quiet = [await probe(port, ca) for _ in range(options.probes)]
    await trio.sleep(0.5)
    before = read_proc(pid)["rss"]
    flooded: list[float] = []
    peak = before
    done = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_flood, port, initials, done)
        await trio.sleep(0.1)
        while not done.is_set() or len(flooded) < options.probes:
            if len(flooded) < options.probes:
                flooded.append(await probe(port, ca))
            else:
                await trio.sleep(0.05)
            peak = max(peak, read_proc(pid)["rss"])
    await trio.sleep(options.settle)
    after = read_proc(pid)["rss"]
    return {
        "quiet_median_ms": 1000 * statistics.median(quiet),
        "quiet_max_ms": 1000 * max(quiet),
        "flood_median_ms": 1000 * statistics.median(flooded),
        "flood_max_ms": 1000 * max(flooded),
        "rss_before_mib": before / 2**20,
        "rss_peak_mib": peak / 2**20,
        "rss_after_mib": after / 2**20,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flood", type=int, default=5000, help="Initials (default 5000)")
    parser.add_argument("--probes", type=int, default=5, help="normal handshakes per phase")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds after the flood")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mstls-flood-") as directory:
        state = Path(directory)
        port = _free_port()
        try:
            proc = start_daemon(state, port)
        except SoakError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        try:
            ca = dev_pki_paths(state).ca_cert
            result = trio.run(measure, port, ca, proc.pid, options)
        finally:
            proc.kill()
            proc.wait()
    print(
        f"normal handshake: quiet median {result['quiet_median_ms']:.0f} ms"
        f" (max {result['quiet_max_ms']:.0f}); during a {options.flood}-Initial flood median"
        f" {result['flood_median_ms']:.0f} ms (max {result['flood_max_ms']:.0f});"
        f" ratio {result['flood_median_ms'] / result['quiet_median_ms']:.1f}"
    )
    grown = result["rss_after_mib"] - result["rss_before_mib"]
    print(
        f"daemon RSS: before {result['rss_before_mib']:.1f} MiB, peak"
        f" {result['rss_peak_mib']:.1f}, {options.settle:g} s after"
        f" {result['rss_after_mib']:.1f} ({grown:+.1f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
