"""TCP bulk upload: mstls QMux (blocking and trio APIs) against OpenSSL, in one run.

Run from the repository root: ``python -m bench.tcp_bulk`` (options: ``--help``;
``bench/README.md`` explains the numbers).

Theory of operation
-------------------
Every run starts a fresh *server process* and a fresh *client process*
(``multiprocessing``, spawn), so each side has its own interpreter and, on a
2-core machine, a core of its own.  The parent only waits on pipes:

* server → parent: ``("ready", port)``, then ``("result", stats)`` once it has
  read the FIN and answered;
* parent → client: ``("go", port)``; client → parent: ``("result", stats)``;
* either child may send ``("error", traceback)`` instead.

After the handshake the client writes ``--size`` bytes in ``--chunk`` pieces
and ends its side (stream FIN; for plain TLS, half-close is not available, so
the server reads exactly ``--size`` bytes); the server reads and discards and
answers ``b"ok"``.  The client's wall time runs from its first write to the end
of that answer; the server's CPU time (``time.process_time``) from its first
byte to the last one.

Stacks (the same certificate, TLS 1.3, AES-128-GCM where the stack lets us pick):

* ``ssl``: Python's :mod:`ssl` on blocking sockets (OpenSSL, C loop);
* ``trio-ssl``: :class:`trio.SSLStream` over :func:`trio.open_tcp_stream`;
* ``mstls``: the blocking API, ``transport="tcp"`` (QMux over our TLS);
* ``mstls-trio``: the trio API, ``transport="tcp"``.

Every run has a deadline; both children are killed at its end whatever
happened.  Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import multiprocessing
import pstats
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import trio

import mstls
import mstls.trio
from mstls.devcerts import DevPKIPaths, write_dev_pki

__all__ = ["STACKS", "BenchError", "Job", "format_report", "main", "run_bench", "run_job"]

MIB = 1 << 20
MB = 1e6
DEFAULT_SIZE = 256 * MIB
DEFAULT_CHUNK = 256 << 10
DEFAULT_RUNS = 3
#: Seconds of one run beyond the transfer at MIN_RATE.
STARTUP_ALLOWANCE = 30.0
MIN_RATE = 20e6
STOP_GRACE = 5.0
#: Seconds between the parent's looks at its children while it waits for results
#: (a child that died without a word ends the run at once, not at the deadline).
COLLECT_POLL = 1.0
ALPN = "bench"
REPLY = b"ok"
#: Every stack's peer: the one the ratios divide by.
REFERENCE = "trio-ssl"


class BenchError(Exception):
    """A run failed (a child's traceback, a deadline, a wrong byte count)."""


@dataclass(frozen=True)
class Job:
    """One run of one stack."""

    stack: str
    size: int
    chunk: int
    timeout: float
    pki: DevPKIPaths
    profile: str | None = None


def _pki(job: Job) -> DevPKIPaths:
    return job.pki


# --- Python ssl, blocking sockets ---------------------------------------------------------


def _ssl_contexts(pki: DevPKIPaths) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = ssl.TLSVersion.TLSv1_3
    server.load_cert_chain(pki.server_cert, pki.server_key)
    server.set_alpn_protocols([ALPN])
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.minimum_version = ssl.TLSVersion.TLSv1_3
    client.load_verify_locations(pki.ca_cert)
    client.set_alpn_protocols([ALPN])
    return server, client


def _ssl_server(job: Job, control: Connection) -> dict[str, Any]:
    server_ctx, _ = _ssl_contexts(_pki(job))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        control.send(("ready", listener.getsockname()[1]))
        raw, _ = listener.accept()
        with server_ctx.wrap_socket(raw, server_side=True) as sock:
            buf = bytearray(job.chunk)
            got = 0
            got += sock.recv_into(buf)
            cpu = time.process_time()
            while got < job.size:
                n = sock.recv_into(buf)
                if not n:
                    break
                got += n
            cpu = time.process_time() - cpu
            sock.sendall(REPLY)
            return {"bytes": got, "cpu": cpu}


def _ssl_client(job: Job, port: int) -> dict[str, Any]:
    _, client_ctx = _ssl_contexts(_pki(job))
    chunk = memoryview(bytes(job.chunk))
    raw = socket.create_connection(("127.0.0.1", port))
    with client_ctx.wrap_socket(raw, server_hostname="localhost") as sock:
        start = time.perf_counter()
        cpu = time.process_time()
        _write_all(job, sock.sendall, chunk)
        reply = sock.recv(16)
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "cpu": time.process_time() - cpu, "reply": reply}


def _write_all(job: Job, write: Callable[[memoryview], object], chunk: memoryview) -> None:
    left = job.size
    while left:
        piece = chunk[: min(left, len(chunk))]
        write(piece)
        left -= len(piece)


# --- trio.SSLStream ----------------------------------------------------------------------------


def _trio_ssl_server(job: Job, control: Connection) -> dict[str, Any]:
    server_ctx, _ = _ssl_contexts(_pki(job))

    async def run() -> dict[str, Any]:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        control.send(("ready", listeners[0].socket.getsockname()[1]))
        raw = await listeners[0].accept()
        stream = trio.SSLStream(raw, server_ctx, server_side=True)
        got = len(await stream.receive_some(job.chunk))
        cpu = time.process_time()
        while got < job.size:
            data = await stream.receive_some(job.chunk)
            if not data:
                break
            got += len(data)
        cpu = time.process_time() - cpu
        await stream.send_all(REPLY)
        await stream.aclose()
        return {"bytes": got, "cpu": cpu}

    return trio.run(run)


def _trio_ssl_client(job: Job, port: int) -> dict[str, Any]:
    _, client_ctx = _ssl_contexts(_pki(job))
    chunk = memoryview(bytes(job.chunk))

    async def run() -> dict[str, Any]:
        raw = await trio.open_tcp_stream("127.0.0.1", port)
        stream = trio.SSLStream(raw, client_ctx, server_hostname="localhost")
        await stream.do_handshake()
        start = time.perf_counter()
        cpu = time.process_time()
        left = job.size
        while left:
            piece = chunk[: min(left, len(chunk))]
            await stream.send_all(piece)
            left -= len(piece)
        reply = await stream.receive_some(16)
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.aclose()
        return {"seconds": seconds, "cpu": cpu, "reply": reply}

    return trio.run(run)


# --- mstls, blocking API -----------------------------------------------------------------------


def _mstls_configs(job: Job) -> tuple[mstls.ServerConfig, mstls.ClientConfig]:
    pki = _pki(job)
    server = mstls.ServerConfig(pki.server_cert, pki.server_key, alpn=ALPN)
    client = mstls.ClientConfig(alpn=ALPN, cafile=pki.ca_cert, server_name="localhost")
    return server, client


def _mstls_server(job: Job, control: Connection) -> dict[str, Any]:
    server_config, _ = _mstls_configs(job)
    with mstls.listen("127.0.0.1", 0, server_config, transport="tcp") as listener:
        control.send(("ready", listener.address[1]))
        conn = listener.accept(timeout=job.timeout)
        stream = conn.accept_stream(timeout=job.timeout)
        got = len(stream.read(job.chunk, timeout=job.timeout))
        cpu = time.process_time()
        while data := stream.read(job.chunk, timeout=job.timeout):
            got += len(data)
        cpu = time.process_time() - cpu
        stream.write(REPLY, timeout=job.timeout)
        with contextlib.suppress(mstls.Error):  # the client closes once it has the reply
            stream.conclude()
            stream.wait_acknowledged(timeout=job.timeout)
        return {"bytes": got, "cpu": cpu}


def _mstls_client(job: Job, port: int) -> dict[str, Any]:
    _, client_config = _mstls_configs(job)
    chunk = memoryview(bytes(job.chunk))
    with mstls.connect("127.0.0.1", port, client_config, transport="tcp") as conn:
        stream = conn.open_stream()
        start = time.perf_counter()
        cpu = time.process_time()
        _write_all(job, lambda piece: stream.write(piece, timeout=job.timeout), chunk)
        stream.conclude()
        reply = stream.read_exactly(len(REPLY), timeout=job.timeout)
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
        conn.close(0, "done")
        return {"seconds": seconds, "cpu": cpu, "reply": reply}


# --- mstls, trio API ------------------------------------------------------------------------------


def _mstls_trio_server(job: Job, control: Connection) -> dict[str, Any]:
    server_config, _ = _mstls_configs(job)

    async def run() -> dict[str, Any]:
        listener = await mstls.trio.listen("127.0.0.1", 0, server_config, transport="tcp")
        control.send(("ready", listener.address[1]))
        conn = await listener.accept()
        stream = await conn.accept_stream()
        got = len(await stream.receive_some(job.chunk))
        cpu = time.process_time()
        while data := await stream.receive_some(job.chunk):
            got += len(data)
        cpu = time.process_time() - cpu
        await stream.send_all(REPLY)
        with contextlib.suppress(mstls.Error, trio.BrokenResourceError):  # the client closes
            await stream.send_eof()
            await stream.wait_acknowledged()
            await conn.aclose()
        await listener.aclose()
        return {"bytes": got, "cpu": cpu}

    return trio.run(run)


def _mstls_trio_client(job: Job, port: int) -> dict[str, Any]:
    _, client_config = _mstls_configs(job)
    chunk = memoryview(bytes(job.chunk))

    async def run() -> dict[str, Any]:
        conn = await mstls.trio.connect("127.0.0.1", port, client_config, transport="tcp")
        stream = await conn.open_stream()
        start = time.perf_counter()
        cpu = time.process_time()
        left = job.size
        while left:
            piece = chunk[: min(left, len(chunk))]
            await stream.send_all(piece)
            left -= len(piece)
        await stream.send_eof()
        reply = b""
        while data := await stream.receive_some():
            reply += data
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
        await conn.aclose()
        return {"seconds": seconds, "cpu": cpu, "reply": reply}

    return trio.run(run)


ServerRole = Callable[[Job, Connection], dict[str, Any]]
ClientRole = Callable[[Job, int], dict[str, Any]]
STACKS: dict[str, tuple[str, ServerRole, ClientRole]] = {
    "ssl": ("Python ssl, blocking sockets", _ssl_server, _ssl_client),
    "trio-ssl": ("trio.SSLStream", _trio_ssl_server, _trio_ssl_client),
    "mstls": ("mstls QMux, blocking API", _mstls_server, _mstls_client),
    "mstls-trio": ("mstls QMux, trio API", _mstls_trio_server, _mstls_trio_client),
}


# --- processes -----------------------------------------------------------------------------------


def _play(role: str, job: Job, control: Connection) -> dict[str, Any]:
    _, server, client = STACKS[job.stack]
    if role == "server":
        return server(job, control)
    if not control.poll(job.timeout):
        raise BenchError("no port from the parent")
    return client(job, control.recv()[1])


def _profiled(role: str, job: Job, control: Connection) -> dict[str, Any]:
    """:func:`_play` under cProfile, threads included (the blocking API's assist
    thread does the receiving); one ``DIR/<stack>-<role>.prof`` of all threads."""
    assert job.profile is not None
    profiles: list[cProfile.Profile] = []

    def start_thread_profile(*_: object) -> None:
        sys.setprofile(None)
        thread_profile = cProfile.Profile()
        profiles.append(thread_profile)
        thread_profile.enable()

    threading.setprofile(start_thread_profile)
    main = cProfile.Profile()
    try:
        return main.runcall(_play, role, job, control)
    finally:
        threading.setprofile(None)  # type: ignore[arg-type]
        stats = pstats.Stats(main)
        for thread_profile in profiles:
            with contextlib.suppress(Exception):
                stats.add(thread_profile)
        stats.dump_stats(str(Path(job.profile) / f"{job.stack}-{role}.prof"))


def _child(role: str, job: Job, control: Connection) -> None:
    try:
        if job.profile is None:
            control.send(("result", _play(role, job, control)))
        else:
            control.send(("result", _profiled(role, job, control)))
    except BaseException:
        with contextlib.suppress(OSError):
            control.send(("error", f"{job.stack} {role}: {traceback.format_exc()}"))
    finally:
        control.close()


def _collect(
    ends: dict[str, Connection], processes: dict[str, Any], deadline: float
) -> dict[str, Any]:
    """One ``result`` from each end (in whatever order they come); a child that
    exited without one fails the run."""
    results: dict[str, Any] = {}
    while len(results) < len(ends):
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError(f"no result from {sorted(set(ends) - set(results))} in time")
        for role, end in ends.items():
            if role in results or not end.poll(0):
                continue
            try:
                message = end.recv()
            except EOFError:
                raise BenchError(f"the {role} exited without a result") from None
            if message[0] != "result":
                raise BenchError(message[1] if message[0] == "error" else str(message))
            results[role] = message[1]
        for role, process in processes.items():
            if role not in results and process.exitcode is not None and not ends[role].poll(0):
                raise BenchError(f"the {role} exited ({process.exitcode}) without a result")
        wait([end for role, end in ends.items() if role not in results], min(left, COLLECT_POLL))
    return results


def run_job(job: Job) -> dict[str, Any]:
    """One run: a server and a client process; both sides' numbers."""
    context = multiprocessing.get_context("spawn")
    ends = [context.Pipe() for _ in range(2)]
    processes = [
        context.Process(target=_child, args=(role, job, child), name=f"{job.stack}-{role}")
        for role, (_, child) in zip(("server", "client"), ends, strict=True)
    ]
    server, client = ends[0][0], ends[1][0]
    deadline = time.monotonic() + job.timeout
    try:
        for process in processes:
            process.daemon = True
            process.start()
        for _, child in ends:
            child.close()
        if not server.poll(max(deadline - time.monotonic(), 0)):
            raise BenchError("the server did not start in time")
        ready = server.recv()
        if ready[0] != "ready":
            raise BenchError(ready[1])
        client.send(("go", ready[1]))
        stats = _collect(
            {"server": server, "client": client},
            {"server": processes[0], "client": processes[1]},
            deadline,
        )
        server_stats, client_stats = stats["server"], stats["client"]
        for process in processes:
            process.join(STOP_GRACE)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(STOP_GRACE)
        for parent_end, _ in ends:
            parent_end.close()
    if server_stats["bytes"] != job.size or client_stats["reply"] != REPLY:
        raise BenchError(f"{job.stack}: server read {server_stats['bytes']} of {job.size}")
    return {
        "mb_per_s": job.size / client_stats["seconds"] / MB,
        "server_ms_per_mib": server_stats["cpu"] * 1e3 / (job.size / MIB),
        "client_ms_per_mib": client_stats["cpu"] * 1e3 / (job.size / MIB),
    }


def run_bench(
    stacks: list[str], size: int, chunk: int, runs: int, profile: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """``runs`` runs of every stack, interleaved (so slow phases of a shared machine
    spread over all stacks)."""
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in stacks}
    with tempfile.TemporaryDirectory(prefix="mstls-tcp-bench-") as pki_dir:
        pki = write_dev_pki(Path(pki_dir))
        timeout = STARTUP_ALLOWANCE + size / MIN_RATE
        for run in range(runs):
            for name in stacks:
                result = run_job(Job(name, size, chunk, timeout, pki, profile))
                results[name].append(result)
                print(
                    f"run {run + 1}/{runs} {name}: {result['mb_per_s']:.0f} MB/s",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def format_report(results: dict[str, list[dict[str, Any]]], size: int) -> str:
    """A table (median and best MB/s, server and client CPU per MiB) and the ratios."""
    lines = [
        f"TCP bulk upload, {size / MIB:g} MiB, one stream, 127.0.0.1",
        f"{'stack':<12} {'what':<30} {'MB/s med':>9} {'MB/s best':>9} "
        f"{'srv ms/MiB':>10} {'cli ms/MiB':>10}",
    ]
    for name, runs in results.items():
        lines.append(
            f"{name:<12} {STACKS[name][0]:<30} {_median(runs, 'mb_per_s'):>9.0f} "
            f"{max(r['mb_per_s'] for r in runs):>9.0f} "
            f"{_median(runs, 'server_ms_per_mib'):>10.2f} "
            f"{_median(runs, 'client_ms_per_mib'):>10.2f}"
        )
    if REFERENCE in results:
        reference = _median(results[REFERENCE], "mb_per_s")
        reference_cpu = _median(results[REFERENCE], "server_ms_per_mib")
        lines.append(f"ratios against {REFERENCE} (MB/s: higher is better; CPU: lower is better)")
        for name, runs in results.items():
            if name != REFERENCE:
                lines.append(
                    f"  {name:<12} MB/s {_median(runs, 'mb_per_s') / reference:5.2f}x   "
                    f"server CPU/MiB {_median(runs, 'server_ms_per_mib') / reference_cpu:5.2f}x"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE // MIB, help="MiB (256)")
    parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="bytes per write")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument("--only", default=",".join(STACKS), help="stacks, comma-separated")
    parser.add_argument("--json", help="also write the runs to this file")
    parser.add_argument(
        "--profile", help="run every child under cProfile, writing DIR/<stack>-<role>.prof"
    )
    args = parser.parse_args(argv)
    stacks = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in stacks if name not in STACKS]
    if unknown:
        parser.error(f"unknown stacks {unknown}; known: {', '.join(STACKS)}")
    size = args.size * MIB
    try:
        results = run_bench(stacks, size, args.chunk, args.runs, args.profile)
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    print(format_report(results, size))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
