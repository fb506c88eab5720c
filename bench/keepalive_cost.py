"""The server's cost of one keep-alive PING, sans-I/O on a virtual clock (issue 11).

N idle connections (client keep-alive 5 s, as in the issue) are held by one
:class:`~mstls.quic.endpoint.ServerEndpoint` through :class:`tests.quic.many.Many`
(an in-memory wire, no sockets, no driver).  Over ``--seconds`` of virtual time
the endpoint's three entry points (``receive_datagram``, ``handle_timer``,
``datagrams_to_send``) are timed with ``time.perf_counter`` and their work is
counted, and the result is divided by the PINGs the server received:

* ``us/PING``: server CPU per keep-alive, the thread's CPU time
  (``time.thread_time``) in the endpoint calls only, measured per keep-alive
  interval (5 virtual s, every connection pings once): the best and the median
  interval.  Still noisy on a shared machine (caches, frequency), so also
  given relative to ``unit``, a fixed piece of work timed in the same run
  (:func:`calibrate`: an AES-GCM seal and open of a PING-sized packet and a
  little interpreted bookkeeping): ``PING/unit`` is the figure to compare
  across runs;
* ``conn datagrams_to_send/PING``: server connections asked for output;
* ``timer wake-ups/PING``: server connections served by ``handle_timer``
  (e.g. a delayed ACK, RFC 9000 §13.2.1);
* ``get_timer/PING``: server connections asked for their next deadline;
* ``ACK delay``: virtual time from a PING's arrival to the server's ACK.

::

    .venv/bin/python -m bench.keepalive_cost                 # 1,000 connections, 20 s
    .venv/bin/python -m bench.keepalive_cost --conns 200,1000,3000 --seconds 20
    .venv/bin/python -m bench.keepalive_cost --profile /tmp/ka.prof

The counts are what ``tests/quic/test_keepalive_cost.py`` asserts; the times
are for comparing code versions, not an absolute budget.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import heapq
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mstls.quic.connection import QuicConnection
from mstls.quic.endpoint import ServerEndpoint
from tests.quic.many import Many

#: Client keep-alive (issue 11's measurement: 5 s; do not lengthen it).
KEEPALIVE = 5.0
DEFAULT_CONNS = (1000,)
#: Virtual seconds measured (after a warm-up of one keep-alive interval).
DEFAULT_SECONDS = 20.0
#: Spacing of the connection openings (virtual seconds), so keep-alives spread out.
OPEN_SPACING = 0.002
#: Repetitions of the calibration work, and rounds (the best round counts).
CALIBRATION_REPEAT = 2000
CALIBRATION_ROUNDS = 5


class Meter:
    """Time and counts of the server endpoint's work while installed."""

    def __init__(self, endpoint: ServerEndpoint, profile: cProfile.Profile | None = None) -> None:
        self.endpoint = endpoint
        #: Enabled during the endpoint's calls only (the server's side alone).
        self.profile = profile
        self.seconds = 0.0
        self.datagrams_in = 0
        self.datagrams_out = 0
        self.endpoint_calls = {"receive_datagram": 0, "handle_timer": 0, "datagrams_to_send": 0}
        self.conn_sends = 0
        self.timer_wakeups = 0
        self.timer_reads = 0
        self.ack_delays: list[float] = []
        self._arrivals: dict[int, float] = {}
        self._undo: list[Callable[[], None]] = []

    def _timed(self, call: Callable[..., Any]) -> Any:
        """``call(*args)`` with the thread's CPU time added up (and profiled)."""
        start = time.thread_time()
        profile = self.profile
        if profile is not None:
            profile.enable()
        try:
            return call()
        finally:
            if profile is not None:
                profile.disable()
            self.seconds += time.thread_time() - start

    def install(self) -> None:
        """Wrap the endpoint's entry points and count the calls into server connections."""
        self._install_endpoint()
        self._install_connections()

    def _install_endpoint(self) -> None:
        endpoint, meter = self.endpoint, self
        receive, handle, send = (
            endpoint.receive_datagram,
            endpoint.handle_timer,
            endpoint.datagrams_to_send,
        )

        def timed_receive(data: bytes, addr: Any, now: float, ecn: int = 0) -> None:
            meter.datagrams_in += 1
            meter.endpoint_calls["receive_datagram"] += 1
            meter._arrivals.setdefault(hash(addr), now)
            meter._timed(lambda: receive(data, addr, now, ecn))

        def timed_handle(now: float) -> None:
            meter.endpoint_calls["handle_timer"] += 1
            meter._timed(lambda: handle(now))

        def timed_send(now: float) -> list[tuple[bytes, Any]]:
            meter.endpoint_calls["datagrams_to_send"] += 1
            out: list[tuple[bytes, Any]] = meter._timed(lambda: send(now))
            meter.datagrams_out += len(out)
            for _, addr in out:
                arrived = meter._arrivals.pop(hash(addr), None)
                if arrived is not None:
                    meter.ack_delays.append(now - arrived)
            return out

        endpoint.receive_datagram = timed_receive  # type: ignore[method-assign]
        endpoint.handle_timer = timed_handle  # type: ignore[method-assign]
        endpoint.datagrams_to_send = timed_send  # type: ignore[method-assign]

        def undo() -> None:
            del endpoint.receive_datagram, endpoint.handle_timer, endpoint.datagrams_to_send

        self._undo.append(undo)

    def _install_connections(self) -> None:
        meter = self
        original_send = QuicConnection.datagrams_with_paths
        original_timer = QuicConnection.handle_timer
        original_get_timer = QuicConnection.get_timer

        def counted_send(conn: QuicConnection, now: float) -> Any:
            if not conn.is_client:
                meter.conn_sends += 1
            return original_send(conn, now)

        def counted_timer(conn: QuicConnection, now: float) -> None:
            if not conn.is_client:
                meter.timer_wakeups += 1
            original_timer(conn, now)

        def counted_get_timer(conn: QuicConnection) -> float | None:
            if not conn.is_client:
                meter.timer_reads += 1
            return original_get_timer(conn)

        QuicConnection.datagrams_with_paths = counted_send  # type: ignore[method-assign]
        QuicConnection.handle_timer = counted_timer  # type: ignore[method-assign]
        QuicConnection.get_timer = counted_get_timer  # type: ignore[method-assign]

        def undo() -> None:
            QuicConnection.datagrams_with_paths = original_send  # type: ignore[method-assign]
            QuicConnection.handle_timer = original_timer  # type: ignore[method-assign]
            QuicConnection.get_timer = original_get_timer  # type: ignore[method-assign]

        self._undo.append(undo)

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()


class GcMeter:
    """Collections per generation and the time they took, while installed."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self._start = 0.0

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.thread_time()
            return
        generation = info["generation"]
        self.counts[generation] += 1
        self.seconds[generation] += time.thread_time() - self._start

    def __enter__(self) -> GcMeter:
        gc.callbacks.append(self._on_gc)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._on_gc)


def calibrate() -> float:
    """Seconds of thread CPU for one unit of fixed work (best of the rounds)."""
    aead = AESGCM(bytes(16))
    nonce, header, payload = bytes(12), bytes(21), bytes(30)
    best = float("inf")
    for _ in range(CALIBRATION_ROUNDS):
        start = time.thread_time()
        for index in range(CALIBRATION_REPEAT):
            sealed = aead.encrypt(nonce, payload, header)
            aead.decrypt(nonce, sealed, header)
            heap: list[tuple[float, int]] = []
            table = {}
            for step in range(8):
                heapq.heappush(heap, (index * 0.5 + step, step))
                table[step] = heap[0]
            heapq.heappop(heap)
        best = min(best, (time.thread_time() - start) / CALIBRATION_REPEAT)
    return best


def hold(conns: int) -> Many:
    """``conns`` established idle connections with the issue's keep-alive."""
    many = Many(client={"keepalive_interval": KEEPALIVE})
    many.connect(conns, spacing=OPEN_SPACING)
    many.run_for(KEEPALIVE)  # handshake leftovers (HANDSHAKE_DONE, NEW_TOKEN...) settle
    many.drain_server_events()
    return many


def _run_intervals(many: Many, meter: Meter, seconds: float, intervals: list[float]) -> None:
    """Run ``seconds`` in keep-alive intervals, the server's CPU per PING of each."""
    left = seconds
    try:
        while left > 0:
            cpu, pings = meter.seconds, meter.datagrams_in
            many.run_for(min(KEEPALIVE, left))
            left -= KEEPALIVE
            if meter.datagrams_in > pings:
                intervals.append((meter.seconds - cpu) / (meter.datagrams_in - pings))
    finally:
        meter.uninstall()


def measure(conns: int, seconds: float, profile: cProfile.Profile | None = None) -> dict[str, Any]:
    many = hold(conns)
    meter = Meter(many.endpoint, profile)
    meter.install()
    gc.collect()
    unit_before = calibrate()
    intervals: list[float] = []
    with GcMeter() as gc_meter:
        _run_intervals(many, meter, seconds, intervals)
    unit = min(unit_before, calibrate())
    pings = max(meter.datagrams_in, 1)
    delays = sorted(meter.ack_delays) or [0.0]
    best = min(intervals, default=0.0)
    median = statistics.median(intervals) if intervals else 0.0
    return {
        "conns": conns,
        "pings": meter.datagrams_in,
        "us_per_ping": 1e6 * meter.seconds / pings,
        "us_per_ping_best": 1e6 * best,
        "us_per_ping_median": 1e6 * median,
        "unit_us": 1e6 * unit,
        "ping_per_unit": median / unit,
        "conn_sends_per_ping": meter.conn_sends / pings,
        "timer_wakeups_per_ping": meter.timer_wakeups / pings,
        "get_timer_per_ping": meter.timer_reads / pings,
        "datagrams_out_per_ping": meter.datagrams_out / pings,
        "endpoint_calls": dict(meter.endpoint_calls),
        "ack_delay_ms_p50": 1000 * delays[len(delays) // 2],
        "ack_delay_ms_max": 1000 * delays[-1],
        # The whole process's collections (clients included), per PING.
        "gc_collections": gc_meter.counts,
        "gc_us_per_ping": [1e6 * t / pings for t in gc_meter.seconds],
    }


def _format(row: dict[str, Any]) -> str:
    return (
        f"conns={row['conns']:>6}  pings={row['pings']:>6}"
        f"  us/PING best {row['us_per_ping_best']:6.1f} median {row['us_per_ping_median']:6.1f}"
        f"  unit {row['unit_us']:5.2f} us  PING/unit {row['ping_per_unit']:5.1f}"
        f"  conn datagrams_to_send/PING={row['conn_sends_per_ping']:.2f}"
        f"  timer wake-ups/PING={row['timer_wakeups_per_ping']:.2f}"
        f"  get_timer/PING={row['get_timer_per_ping']:.2f}"
        f"  datagrams out/PING={row['datagrams_out_per_ping']:.2f}"
        f"  ACK delay p50={row['ack_delay_ms_p50']:.1f} ms max={row['ack_delay_ms_max']:.1f} ms"
        f"  gc (whole process) by generation: {row['gc_collections']} collections,"
        f" {', '.join(f'{us:.1f}' for us in row['gc_us_per_ping'])} us/PING"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--conns",
        type=lambda s: [int(x) for x in s.split(",")],
        default=list(DEFAULT_CONNS),
        help="numbers of idle connections, comma-separated (default 1000)",
    )
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="virtual seconds")
    parser.add_argument(
        "--profile", help="cProfile the server endpoint's calls, stats to this path (slower)"
    )
    options = parser.parse_args(argv)
    print(
        f"keep-alive {KEEPALIVE:g} s, {options.seconds:g} virtual s measured,"
        f" load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    profile = cProfile.Profile() if options.profile else None
    for conns in options.conns:
        print(_format(measure(conns, options.seconds, profile)), flush=True)
    if profile is not None:
        profile.dump_stats(options.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
