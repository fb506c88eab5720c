"""``mstls bench HOST:PORT``: handshake rate and throughput against an mstlsd.

Three measurements, each against the daemon's built-in services:

* **handshakes**: ``--handshakes N`` connections one after the other, each
  opened, checked with one ``echo`` round trip and closed: connections per
  second and the median time to a completed handshake;
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


async def _round_trip(conn: Connection) -> None:
    stream = await conn.open_stream()
    await stream.send_all(encode_preamble("echo") + b"ping\n")
    await stream.send_eof()
    reply = b""
    while data := await stream.receive_some():
        reply += data
    if reply != b"ping\n":
        raise Error(f"echo answered {reply!r}")


async def _handshakes(args: argparse.Namespace, host: str, port: int) -> dict[str, Any]:
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(args.handshakes):
        began = time.perf_counter()
        conn = await open_connection(args, host, port, quiet=True)
        times.append(time.perf_counter() - began)
        async with conn:
            await _round_trip(conn)
    elapsed = time.perf_counter() - start
    return {
        "handshakes": args.handshakes,
        "handshakes_per_second": args.handshakes / elapsed,
        "handshake_median_ms": statistics.median(times) * 1000,
    }


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
        print(
            f"handshakes  {results['handshakes_per_second']:.1f}/s "
            f"(median {results['handshake_median_ms']:.1f} ms, {args.handshakes} connections)"
        )
        print(f"upload      {results['discard_mb_per_s']:.1f} MB/s ({size / MIB:g} MiB to discard)")
        print(f"echo        {results['echo_mb_per_s']:.1f} MB/s ({size / MIB:g} MiB both ways)")
    return 0
