"""asyncio APIs compared: ``mstls.asyncio`` against ``aioquic.asyncio``, in one run.

Run from the repository root: ``python -m bench.asyncio_bulk`` (``--help``).

Theory of operation
-------------------
For each stack a *server process* (``multiprocessing``, spawn method) runs that
stack's asyncio server on 127.0.0.1 and the parent runs that stack's asyncio
client, so each side has its own interpreter.  Everything goes through the
public asyncio APIs, event loop and sockets included: that is what is measured.

*Bulk.*  The client opens one stream and writes ``--size`` bytes in 64 KiB
writes, each followed by ``await drain()``, then the FIN; the server reads and
discards to the FIN and answers ``ok`` and its FIN.  Wall time runs from the
first write to that answer.  (aioquic's ``drain()`` does not wait for flow
control: its writer buffers whatever it is given; ours waits for credit.)

*Streams.*  ``--streams`` request/response streams on one connection, at most
``--concurrency`` at a time: the client writes ``--request`` bytes and the FIN,
the server reads to the FIN and answers the same bytes and its FIN, the client
reads to the FIN.  Wall time over all of them.

*Slow reader* (``--slow-reader``, mstls only): the client offers ``--offer``
bytes with write + drain while the server does not read; once the sender has
stalled, the client process's RSS growth over its start is reported.

*Fairness.*  Both stacks get the same ECDSA P-256 certificate
(:func:`mstls.devcerts.write_dev_pki`), the same ALPN, 1200-byte datagrams
(aioquic ``max_datagram_size``; mstls with path-MTU probing off) and the same
receive windows (:data:`bench.quic_common.CONNECTION_WINDOW`,
:data:`~bench.quic_common.STREAM_WINDOW`).  Each run is bounded by
``--timeout``; the server process is killed at the end of every measurement.
The ratios printed are mstls over aioquic (higher is better for mstls).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

from bench.quic_bulk import parse_size
from bench.quic_common import CONNECTION_WINDOW, MIB, MIN_DATAGRAM, STREAM_WINDOW

ALPN = "mstls-bench"
HOST = "127.0.0.1"
SERVER_NAME = "localhost"
CHUNK = bytes(64 * 1024)
ACK = b"ok"
#: Seconds the parent waits for a server process to report its port.
START_TIMEOUT = 30.0
#: Polls of the slow reader's sender before it counts as stalled, and the poll interval.
STALL_POLLS, STALL_POLL = 10, 0.05
STACKS = ("mstls", "aioquic")


# -- mstls ---------------------------------------------------------------------------------
def _mstls_extra() -> dict[str, Any]:
    return {
        "initial_max_data": CONNECTION_WINDOW,
        "initial_max_stream_data": STREAM_WINDOW,
        "max_data_window": CONNECTION_WINDOW,
        "max_stream_data_window": STREAM_WINDOW,
        "pmtu_discovery": False,
        "max_streams_bidi": 1000,
    }


async def _mstls_server(pki: str, pipe: Pipe, mode: str) -> None:
    import mstls  # noqa: PLC0415 - in the server process only
    import mstls.asyncio  # noqa: PLC0415

    config = mstls.ServerConfig(
        certfile=f"{pki}/server.pem", keyfile=f"{pki}/server.key", alpn=ALPN, extra=_mstls_extra()
    )

    async def on_stream(stream: mstls.asyncio.Stream) -> None:
        with_errors = (mstls.Error, asyncio.IncompleteReadError)
        try:
            if mode == "slow":
                await asyncio.sleep(3600)  # never reads
            data = await stream.read()
            stream.write(ACK if mode == "bulk" else data)
            stream.write_eof()
            await stream.wait_closed()
        except with_errors:
            pass

    async def handler(conn: mstls.asyncio.Connection) -> None:
        tasks = set()
        while True:
            stream = await conn.accept_stream()
            task = asyncio.ensure_future(on_stream(stream))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    listener = await mstls.asyncio.serve(HOST, 0, config, handler)
    pipe.send(("ready", listener.address[1]))
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # until "stop"


async def _mstls_client(pki: str, port: int, args: argparse.Namespace, mode: str) -> float:
    import mstls  # noqa: PLC0415
    import mstls.asyncio  # noqa: PLC0415

    config = mstls.ClientConfig(
        alpn=ALPN, cafile=f"{pki}/ca.pem", server_name=SERVER_NAME, extra=_mstls_extra()
    )
    conn = await mstls.asyncio.connect(HOST, port, config, timeout=args.timeout)
    async with conn:
        if mode == "slow":
            return await _slow_reader(conn, args)
        start = time.perf_counter()
        if mode == "bulk":
            stream = await conn.open_stream()
            for _ in range(args.size // len(CHUNK)):
                stream.write(CHUNK)
                await stream.drain()
            stream.write_eof()
            assert await stream.read() == ACK
        else:
            request = bytes(args.request)
            limit = asyncio.Semaphore(args.concurrency)

            async def one() -> None:
                async with limit:
                    s = await conn.open_stream()
                    s.write(request)
                    s.write_eof()
                    assert await s.read() == request
                    s.close()

            await asyncio.gather(*(one() for _ in range(args.streams)))
        return time.perf_counter() - start


def _rss() -> int:
    """The process's resident set size now, in bytes (Linux /proc; else the peak)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def _slow_reader(conn: Any, args: argparse.Namespace) -> float:
    """RSS growth (bytes) of this process while ``--offer`` bytes meet a reader that
    never reads."""
    stream = await conn.open_stream()
    before = _rss()
    offered = 0

    async def send() -> None:
        nonlocal offered
        for _ in range(args.offer // len(CHUNK)):
            stream.write(CHUNK)
            offered += len(CHUNK)
            await stream.drain()

    sender = asyncio.ensure_future(send())
    still, last = 0, -1
    while still < STALL_POLLS and not sender.done():
        await asyncio.sleep(STALL_POLL)
        still = still + 1 if offered == last else 0
        last = offered
    growth = _rss() - before
    sender.cancel()
    print(
        f"slow reader: offered {offered / MIB:.1f} MiB of {args.offer / MIB:.0f} MiB "
        f"before drain() stalled; RSS growth {growth / MIB:.1f} MiB"
    )
    return float(growth)


# -- aioquic -------------------------------------------------------------------------------
def _aioquic_config(pki: str, *, server: bool) -> Any:
    from aioquic.quic.configuration import QuicConfiguration  # noqa: PLC0415

    config = QuicConfiguration(
        is_client=not server,
        alpn_protocols=[ALPN],
        max_datagram_size=MIN_DATAGRAM,
        max_data=CONNECTION_WINDOW,
        max_stream_data=STREAM_WINDOW,
    )
    if server:
        config.load_cert_chain(f"{pki}/server.pem", f"{pki}/server.key")
    else:
        config.server_name = SERVER_NAME
        config.load_verify_locations(cafile=f"{pki}/ca.pem")
    return config


async def _aioquic_server(pki: str, pipe: Pipe, mode: str) -> None:
    from aioquic.asyncio import serve  # noqa: PLC0415

    tasks: set[asyncio.Future[None]] = set()

    def on_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def answer() -> None:
            data = await reader.read()
            writer.write(ACK if mode == "bulk" else data)
            writer.write_eof()

        task = asyncio.ensure_future(answer())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server = await serve(
        HOST, 0, configuration=_aioquic_config(pki, server=True), stream_handler=on_stream
    )
    port = server._transport.get_extra_info("sockname")[1]
    pipe.send(("ready", port))
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
    server.close()


async def _aioquic_client(pki: str, port: int, args: argparse.Namespace, mode: str) -> float:
    from aioquic.asyncio import connect  # noqa: PLC0415

    async with connect(HOST, port, configuration=_aioquic_config(pki, server=False)) as proto:
        start = time.perf_counter()
        if mode == "bulk":
            reader, writer = await proto.create_stream()
            for _ in range(args.size // len(CHUNK)):
                writer.write(CHUNK)
                await writer.drain()
            writer.write_eof()
            assert await reader.read() == ACK
        else:
            request = bytes(args.request)
            limit = asyncio.Semaphore(args.concurrency)

            async def one() -> None:
                async with limit:
                    r, w = await proto.create_stream()
                    w.write(request)
                    w.write_eof()
                    assert await r.read() == request

            await asyncio.gather(*(one() for _ in range(args.streams)))
        return time.perf_counter() - start


SERVERS = {"mstls": _mstls_server, "aioquic": _aioquic_server}
CLIENTS = {"mstls": _mstls_client, "aioquic": _aioquic_client}


def _server_main(stack: str, pki: str, pipe: Pipe, mode: str) -> None:
    asyncio.run(SERVERS[stack](pki, pipe, mode))


def measure(stack: str, mode: str, pki: str, args: argparse.Namespace) -> float:
    """One measurement: a fresh server process, the client here; seconds (or bytes)."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    proc = context.Process(target=_server_main, args=(stack, pki, child, mode), daemon=True)
    proc.start()
    try:
        if not parent.poll(START_TIMEOUT):
            raise RuntimeError(f"{stack} server did not start")
        _, port = parent.recv()

        async def client() -> float:
            async with asyncio.timeout(args.timeout):
                return await CLIENTS[stack](pki, port, args, mode)

        return asyncio.run(client())
    finally:
        parent.send(("stop",))
        proc.join(2)
        if proc.is_alive():
            proc.kill()
            proc.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=parse_size, default=64 * MIB, help="bulk bytes")
    parser.add_argument("--streams", type=int, default=10_000, help="request/response streams")
    parser.add_argument("--request", type=int, default=100, help="bytes per request")
    parser.add_argument("--concurrency", type=int, default=32, help="streams at once")
    parser.add_argument("--slow-reader", action="store_true", help="also measure RSS (mstls)")
    parser.add_argument("--offer", type=parse_size, default=1 << 30, help="slow reader bytes")
    parser.add_argument("--timeout", type=float, default=600.0, help="per measurement")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as pki:
        from mstls.devcerts import write_dev_pki  # noqa: PLC0415

        write_dev_pki(pki, overwrite=True)
        for stack in STACKS:
            bulk = measure(stack, "bulk", pki, args)
            streams = measure(stack, "streams", pki, args)
            results[stack] = {
                "bulk_mb_per_s": args.size / bulk / 1e6,
                "bulk_seconds": bulk,
                "streams_per_s": args.streams / streams,
                "streams_seconds": streams,
            }
            print(
                f"{stack:8} bulk {results[stack]['bulk_mb_per_s']:8.1f} MB/s   "
                f"streams {results[stack]['streams_per_s']:8.0f} /s"
            )
        if args.slow_reader:
            results["mstls"]["slow_reader_rss_growth_bytes"] = measure("mstls", "slow", pki, args)
    ratios = {
        "bulk": results["mstls"]["bulk_mb_per_s"] / results["aioquic"]["bulk_mb_per_s"],
        "streams": results["mstls"]["streams_per_s"] / results["aioquic"]["streams_per_s"],
    }
    print(f"mstls / aioquic: bulk {ratios['bulk']:.2f}x   streams {ratios['streams']:.2f}x")
    if args.json is not None:
        document = {
            "results": results,
            "ratios": ratios,
            "args": {k: v for k, v in vars(args).items() if k != "json"},
        }
        args.json.write_text(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
