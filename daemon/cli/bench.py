"""``mstls bench HOST:PORT``: handshake rate and throughput against an mstlsd.

Three measurements, each against the daemon's built-in services:

* **handshakes**: ``--handshakes N`` connections, each opened, checked with one
  ``echo`` round trip and closed: connections per second, the median and p99
  time to a completed handshake, and how busy this client process was.  By
  default one after the other (``--concurrency 1``): that is one client's
  latency-bound rate (a round trip plus both sides' CPU per handshake), not the
  server's capacity.  ``--concurrency C`` keeps C handshakes in flight at once
  to load the server; when the client's own CPU nears 100 % of a core the
  client, not the server, is the limit (run several ``mstls bench`` processes);
* **upload**: ``--size MiB`` written on one stream to ``discard``; the clock
  stops at the daemon's FIN, which it sends only after reading everything;
* **echo**: ``--size MiB`` written to ``echo`` while reading it back.

``--json`` prints the numbers as one JSON object instead of text.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import trio

from mstls import Error
from mstls.trio import Connection

from ..preamble import encode_preamble
from .common import EXIT_CONNECTION, describe_failure, open_connection, report

__all__ = ["run_bench"]

MIB = 1 << 20
CHUNK = 256 * 1024
_PAYLOAD = bytes(CHUNK)
#: Client CPU (% of a core) from which a concurrent run measures the client, not the server.
CLIENT_BOUND = 90


async def _round_trip(conn: Connection) -> None:
    stream = await conn.open_stream()
    await stream.send_all(encode_preamble("echo") + b"ping\n")
    await stream.send_eof()
    reply = b""
    while data := await stream.receive_some():
        reply += data
    if reply != b"ping\n":
        raise Error(f"echo answered {reply!r}")


async def _handshake_worker(
    args: argparse.Namespace, host: str, port: int, count: int, times: list[float]
) -> None:
    for _ in range(count):
        began = time.perf_counter()
        conn = await open_connection(args, host, port, quiet=True)
        times.append(time.perf_counter() - began)
        async with conn:
            await _round_trip(conn)


def _shares(total: int, workers: int) -> list[int]:
    """``total`` handshakes split over ``workers`` (the first ones take the rest)."""
    return [total // workers + (1 if i < total % workers else 0) for i in range(workers)]


async def _handshakes(args: argparse.Namespace, host: str, port: int) -> dict[str, Any]:
    concurrency = max(1, min(args.concurrency, args.handshakes))
    times: list[float] = []
    start, cpu_start = time.perf_counter(), time.process_time()
    async with trio.open_nursery() as nursery:
        for count in _shares(args.handshakes, concurrency):
            nursery.start_soon(_handshake_worker, args, host, port, count, times)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    ordered = sorted(times)
    return {
        "handshakes": args.handshakes,
        "handshake_mode": "sequential" if concurrency == 1 else "concurrent",
        "concurrency": concurrency,
        "handshakes_per_second": args.handshakes / elapsed,
        "handshake_median_ms": statistics.median(ordered) * 1000,
        "handshake_p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "client_cpu_percent": 100 * cpu / elapsed,
    }


def _handshake_line(results: dict[str, Any]) -> str:
    """The handshake figures, saying what they measure."""
    what = (
        "one client, one at a time: latency-bound, not the server's capacity"
        if results["handshake_mode"] == "sequential"
        else f"{results['concurrency']} at once from one client process"
    )
    line = (
        f"handshakes  {results['handshakes_per_second']:.1f}/s "
        f"(median {results['handshake_median_ms']:.1f} ms, p99 "
        f"{results['handshake_p99_ms']:.1f} ms, {results['handshakes']} connections; {what}; "
        f"client CPU {results['client_cpu_percent']:.0f} % of a core)"
    )
    if results["handshake_mode"] == "concurrent" and results["client_cpu_percent"] >= CLIENT_BOUND:
        line += "\n            the client is the limit here: run several benches at once"
    return line


async def _send(stream: Any, size: int) -> None:
    left = size
    while left > 0:
        chunk = _PAYLOAD if left >= CHUNK else _PAYLOAD[:left]
        await stream.send_all(chunk)
        left -= len(chunk)
    await stream.send_eof()


async def _drain(stream: Any) -> int:
    total = 0
    while data := await stream.receive_some(CHUNK):
        total += len(data)
    return total


async def _transfer(conn: Connection, service: str, size: int) -> float:
    """Seconds to send ``size`` bytes to ``service`` and see its FIN."""
    stream = await conn.open_stream()
    await stream.send_all(encode_preamble(service))
    start = time.perf_counter()
    received = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_send, stream, size)

        async def read() -> None:
            nonlocal received
            received = await _drain(stream)

        nursery.start_soon(read)
    elapsed = time.perf_counter() - start
    expected = size if service == "echo" else 0
    if received != expected:
        raise Error(f"{service}: got {received} bytes back, expected {expected}")
    return elapsed


async def run_bench(args: argparse.Namespace) -> int:
    host, port = args.target
    size = int(args.size * MIB)
    results: dict[str, Any] = {"target": f"{host}:{port}", "transport": args.transport}
    try:
        results.update(await _handshakes(args, host, port))
        conn = await open_connection(args, host, port, quiet=True)
        async with conn:
            results["transport"] = conn.transport
            for service in ("discard", "echo"):
                seconds = await _transfer(conn, service, size)
                results[f"{service}_mib"] = size / MIB
                results[f"{service}_mb_per_s"] = size / seconds / 1e6
    except Error as exc:
        report(f"bench failed: {describe_failure(exc)}")
        return EXIT_CONNECTION
    if args.json:
        print(json.dumps(results))
    else:
        print(f"target      {results['target']} over {results['transport']}")
        print(_handshake_line(results))
        print(f"upload      {results['discard_mb_per_s']:.1f} MB/s ({size / MIB:g} MiB to discard)")
        print(f"echo        {results['echo_mb_per_s']:.1f} MB/s ({size / MIB:g} MiB both ways)")
    return 0
