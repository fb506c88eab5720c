"""The ``mstls-api`` stack of :mod:`bench.quic_bulk`: the public blocking API over QUIC.

Issue 15 asks for its throughput at 1200-byte datagrams through *the public
blocking API*: :func:`mstls.listen` and :func:`mstls.connect` with
``transport="udp"``, their streams' ``read``/``write`` on the application
thread and the assist thread driving the connection, exactly as a user runs
them.  The sans-I/O ``mstls`` stack (:mod:`bench.quic_mstls`) measures the core
under the bench's own loop; this one adds the drivers, the thread hand-offs
and the socket layer of the library.

Both sides get the settings of the ``mstls`` stack through ``extra`` (the
windows; ``pmtu_discovery=False`` at 1200 bytes, or probing up to
``--datagram``).  The server counts datagrams by its connection's
``packets_received`` (one packet per datagram in a bulk upload: the client
coalesces nothing once the handshake is over), and answers the parent's
``report`` requests from a second thread while the main thread reads.
"""

from __future__ import annotations

import contextlib
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

import mstls

from .quic_common import (
    ACK,
    ALPN,
    CONNECTION_WINDOW,
    HOST,
    MIN_DATAGRAM,
    READ_MAX,
    SERVER_NAME,
    STREAM_WINDOW,
    WRITE_CHUNK,
    BenchError,
    Job,
    new_stats,
)

__all__ = ["client", "server"]


def _extra(job: Job) -> dict[str, Any]:
    """The QUIC settings of :func:`bench.quic_mstls._config`, by name."""
    extra: dict[str, Any] = {
        "initial_max_data": CONNECTION_WINDOW,
        "initial_max_stream_data": STREAM_WINDOW,
        "max_data_window": CONNECTION_WINDOW,
        "max_stream_data_window": STREAM_WINDOW,
    }
    if not job.scenario.pmtu:
        if job.datagram == MIN_DATAGRAM:
            extra["pmtu_discovery"] = False
        else:
            extra.update(pmtu_discovery=True, pmtu_max=job.datagram)
    return extra


def server(job: Job, control: Connection) -> None:
    """Accept one connection and one stream, read it to its FIN, answer ``ACK``."""
    if job.scenario.kind != "bulk":
        raise BenchError("the mstls-api stack runs bulk uploads only")
    config = mstls.ServerConfig(job.cert, job.key, alpn=ALPN, extra=_extra(job))
    stats = new_stats(job)
    stopped = threading.Event()
    with mstls.listen(HOST, 0, config, transport="udp") as listener:
        answering = threading.Thread(
            target=_answer, args=(control, stats, stopped), name="bench-control", daemon=True
        )
        control.send(("ready", listener.address[1]))
        answering.start()
        conn = listener.accept(timeout=job.timeout)

        def counts() -> tuple[int, int]:
            snapshot = conn.stats()
            return snapshot.packets_received, snapshot.bytes_received

        stats.counts = counts
        stats.on_handshake(None)  # accept() returns once the handshake completed
        stream = conn.accept_stream(timeout=job.timeout)
        while data := stream.read(READ_MAX, timeout=job.timeout):
            stats.stream_bytes += len(data)
        stats.mark()
        stream.write(ACK, timeout=job.timeout)
        with contextlib.suppress(mstls.Error):  # the client closes once it has the answer
            stream.conclude()
            stream.wait_acknowledged(timeout=job.timeout)
        stopped.wait(job.timeout)


def _answer(control: Connection, stats: Any, stopped: threading.Event) -> None:
    """The parent's ``report`` and ``stop`` requests, while the main thread reads."""
    try:
        while not stopped.is_set():
            message = control.recv()
            if message[0] == "report":
                control.send(("report", stats.report()))
            elif message[0] == "stop":
                stopped.set()
    except (EOFError, OSError):
        stopped.set()


def client(job: Job, port: int) -> dict[str, Any]:
    """Upload ``job.size`` bytes on one stream, wait for the answer."""
    if job.scenario.kind != "bulk":
        raise BenchError("the mstls-api stack runs bulk uploads only")
    config = mstls.ClientConfig(
        alpn=ALPN, cafile=job.ca, server_name=SERVER_NAME, extra=_extra(job)
    )
    chunk = memoryview(WRITE_CHUNK)
    with mstls.connect(HOST, port, config, transport="udp", timeout=job.timeout) as conn:
        before = conn.stats()
        stream = conn.open_stream()
        cpu = time.process_time()
        start = time.perf_counter()
        left = job.size
        while left > 0:
            piece = chunk if left >= len(chunk) else chunk[:left]
            stream.write(piece, timeout=job.timeout)
            left -= len(piece)
        stream.conclude()
        answer = stream.read_exactly(len(ACK), timeout=job.timeout)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        if answer != ACK:
            raise BenchError(f"the server answered {answer!r}")
        after = conn.stats()
        conn.close(0, "done")
    return {
        "seconds": elapsed,
        "client_cpu": cpu,
        "client_datagrams_sent": after.packets_sent - before.packets_sent,
        "client_datagrams_received": after.packets_received - before.packets_received,
    }
